"""Indexes for every lookup a case step or a billing event makes: the weekly message cap
was a full scan of the outbox, and so were the settlement and sweeper queries.

The single-column indexes on webhook_events.invoice_id and .status are dropped: the new
indexes start with those columns and answer the same lookups.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_messages_customer_id_channel_status_step_at",
        "messages",
        ["customer_id", "channel", "status", "step_at"],
    )
    op.create_index(
        "ix_webhook_events_invoice_id_type_occurred_at",
        "webhook_events",
        ["invoice_id", "type", "occurred_at"],
    )
    op.create_index(
        "ix_webhook_events_status_claimed_until", "webhook_events", ["status", "claimed_until"]
    )
    op.create_index("ix_charge_attempts_reference", "charge_attempts", ["reference"])
    op.drop_index("ix_webhook_events_invoice_id", table_name="webhook_events")
    op.drop_index("ix_webhook_events_status", table_name="webhook_events")


def downgrade() -> None:
    op.create_index("ix_webhook_events_status", "webhook_events", ["status"])
    op.create_index("ix_webhook_events_invoice_id", "webhook_events", ["invoice_id"])
    op.drop_index("ix_charge_attempts_reference", table_name="charge_attempts")
    op.drop_index("ix_webhook_events_status_claimed_until", table_name="webhook_events")
    op.drop_index("ix_webhook_events_invoice_id_type_occurred_at", table_name="webhook_events")
    op.drop_index("ix_messages_customer_id_channel_status_step_at", table_name="messages")
