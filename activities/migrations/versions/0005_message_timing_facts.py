"""What the message-timing learner needs: the customer's country (their segment), and the
chance each reminder's hour and channels had of being chosen (rows before it mean 1.0).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customers") as table:
        table.add_column(sa.Column("country", sa.String(), nullable=True))
    with op.batch_alter_table("messages") as table:
        table.add_column(sa.Column("hour_propensity", sa.Float(), nullable=True))
        table.add_column(sa.Column("channel_propensity", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as table:
        table.drop_column("channel_propensity")
        table.drop_column("hour_propensity")
    with op.batch_alter_table("customers") as table:
        table.drop_column("country")
