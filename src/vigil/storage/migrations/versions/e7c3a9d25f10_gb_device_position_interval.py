"""gb device position interval

Revision ID: e7c3a9d25f10
Revises: 5b2e7d4a9c61
Create Date: 2026-11-22 02:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "e7c3a9d25f10"
down_revision = "5b2e7d4a9c61"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Null for every existing device: none is subscribed to MobilePosition until an admin asks.
    with op.batch_alter_table("gb_devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("position_interval_s", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gb_devices", schema=None) as batch_op:
        batch_op.drop_column("position_interval_s")
