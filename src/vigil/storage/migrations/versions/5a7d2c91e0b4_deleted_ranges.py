"""deleted ranges: recorded time removed by retention, for the integrity view

Revision ID: 5a7d2c91e0b4
Revises: 3016c44c1ac2
Create Date: 2026-11-22 01:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "5a7d2c91e0b4"
down_revision = "3016c44c1ac2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deleted_ranges",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("camera_id", sa.Integer(), nullable=False),
        sa.Column("start_us", sa.BigInteger(), nullable=False),
        sa.Column("end_us", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=8), nullable=False),
        sa.Column("deleted_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("deleted_ranges", schema=None) as batch_op:
        batch_op.create_index("ix_deleted_ranges_camera_end", ["camera_id", "end_us"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("deleted_ranges", schema=None) as batch_op:
        batch_op.drop_index("ix_deleted_ranges_camera_end")
    op.drop_table("deleted_ranges")
