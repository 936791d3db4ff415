"""Signed outbound webhooks (issue 14): the case events to deliver to the product (an outbox,
once per event id) and each delivery attempt (the delivery log).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbound_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("case_id", sa.String(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index("ix_outbound_events_case_id", "outbound_events", ["case_id"])
    op.create_index(
        "ix_outbound_events_status_next_attempt_at",
        "outbound_events",
        ["status", "next_attempt_at"],
    )
    op.create_table(
        "outbound_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_outbound_deliveries_event_id", "outbound_deliveries", ["event_id"])


def downgrade() -> None:
    op.drop_index("ix_outbound_deliveries_event_id", table_name="outbound_deliveries")
    op.drop_table("outbound_deliveries")
    op.drop_index("ix_outbound_events_status_next_attempt_at", table_name="outbound_events")
    op.drop_index("ix_outbound_events_case_id", table_name="outbound_events")
    op.drop_table("outbound_events")
