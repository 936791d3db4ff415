"""What a collections agency is told about a case: when its payment failed, and the late
fee added for the customer's next invoice (both empty for cases recorded before).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as table:
        table.add_column(sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("late_fee", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cases") as table:
        table.drop_column("late_fee")
        table.drop_column("failed_at")
