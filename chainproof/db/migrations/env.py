"""Alembic environment: chainproof always passes its own engine in ``config.attributes``."""

from alembic import context

from chainproof.db.tables import Base

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=True, compare_type=True)
    context.run_migrations()
