"""log head keeps the tree's frontier

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 23:00:00

Appending then reads one row instead of the frontier's nodes. The column starts empty; the
first append after the upgrade reads the nodes once and fills it.
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("log_head", schema=None) as batch_op:
        batch_op.add_column(sa.Column("frontier", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("log_head", schema=None) as batch_op:
        batch_op.drop_column("frontier")
