"""tags and descriptions of registered models and model versions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 14:00:00

One row per (model, version, key); version 0 is the registered model itself, and the
description is the reserved key ``chainproof.description``.
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_tags",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("set_at", sa.String(length=40), nullable=False),
        sa.Column("set_by", sa.String(length=128), nullable=False),
        sa.Column("log_seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"]),
        sa.PrimaryKeyConstraint("model_id", "version", "key"),
    )


def downgrade() -> None:
    op.drop_table("model_tags")
