"""Pre-dunning (issue 14): the simulated gateway's cards with their expiries and its
subscriptions with their renewal dates, which the daily pre-dunning scan reads. The notices
themselves are message rows, keyed by notice id, step and channel.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "simulated_cards",
        sa.Column("payment_method", sa.String(), nullable=False),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("brand", sa.String(), nullable=True),
        sa.Column("last4", sa.String(), nullable=True),
        sa.Column("exp_month", sa.Integer(), nullable=False),
        sa.Column("exp_year", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("payment_method"),
    )
    op.create_index("ix_simulated_cards_customer_id", "simulated_cards", ["customer_id"])
    op.create_table(
        "simulated_subscriptions",
        sa.Column("subscription_id", sa.String(), nullable=False),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("interval", sa.String(), nullable=False),
        sa.Column("renews_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("subscription_id"),
    )
    op.create_index(
        "ix_simulated_subscriptions_customer_id", "simulated_subscriptions", ["customer_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_simulated_subscriptions_customer_id", "simulated_subscriptions")
    op.drop_table("simulated_subscriptions")
    op.drop_index("ix_simulated_cards_customer_id", "simulated_cards")
    op.drop_table("simulated_cards")
