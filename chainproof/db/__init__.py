"""Metadata database: tables, engine, migrations."""

from chainproof.db.engine import check_schema, head_revision, open_engine, upgrade

__all__ = ["check_schema", "head_revision", "open_engine", "upgrade"]
