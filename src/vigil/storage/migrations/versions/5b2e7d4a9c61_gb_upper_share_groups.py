"""gb upper share groups

Revision ID: 5b2e7d4a9c61
Revises: 5a7d2c91e0b4
Create Date: 2026-11-22 01:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "5b2e7d4a9c61"
down_revision = "5a7d2c91e0b4"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gb_upper_shares", schema=None) as batch_op:
        batch_op.add_column(sa.Column("group_id", sa.String(length=20), nullable=True))
        batch_op.create_index("ux_gb_upper_shares_group", ["upper_id", "group_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("gb_upper_shares", schema=None) as batch_op:
        batch_op.drop_index("ux_gb_upper_shares_group")
        batch_op.drop_column("group_id")
