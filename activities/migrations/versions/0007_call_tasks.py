"""Agent call tasks (issue 14): tasks for a person to call a customer about a case, one per
case and call step, and each call attempt, which Regulation F's 7 calls in 7 days counts.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "call_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.String(), nullable=False),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("step", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("call_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_outcome", sa.String(), nullable=True),
        sa.Column("actor", sa.String(), nullable=True),
        sa.Column("note", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id", "step"),
    )
    op.create_index("ix_call_tasks_case_id", "call_tasks", ["case_id"])
    op.create_index("ix_call_tasks_customer_id", "call_tasks", ["customer_id"])
    op.create_index("ix_call_tasks_status", "call_tasks", ["status"])
    op.create_table(
        "call_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_call_attempts_task_id", "call_attempts", ["task_id"])
    op.create_index("ix_call_attempts_customer_id_at", "call_attempts", ["customer_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_call_attempts_customer_id_at", table_name="call_attempts")
    op.drop_index("ix_call_attempts_task_id", table_name="call_attempts")
    op.drop_table("call_attempts")
    op.drop_index("ix_call_tasks_status", table_name="call_tasks")
    op.drop_index("ix_call_tasks_customer_id", table_name="call_tasks")
    op.drop_index("ix_call_tasks_case_id", table_name="call_tasks")
    op.drop_table("call_tasks")
