"""What a retry model learns from, kept with each charge attempt: whether it was a scheduled
retry, the card's brand and country, the chance its time had of being chosen, the case's
retry model, and the planner's facts just before the charge.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("charge_attempts") as table:
        table.add_column(
            sa.Column("scheduled", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        table.add_column(sa.Column("card_brand", sa.String(), nullable=True))
        table.add_column(sa.Column("card_country", sa.String(), nullable=True))
        table.add_column(sa.Column("propensity", sa.Float(), nullable=True))
        table.add_column(sa.Column("model_version", sa.Integer(), nullable=True))
        table.add_column(sa.Column("plan_facts", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("charge_attempts") as table:
        for column in (
            "plan_facts",
            "model_version",
            "propensity",
            "card_country",
            "card_brand",
            "scheduled",
        ):
            table.drop_column(column)
