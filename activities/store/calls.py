"""Call tasks for a person to phone a customer, and every call made: the attempts are what
Regulation F's limit of 7 calls in 7 days per customer counts (`workflows/calls.py`).

The agent's note may name people: it lives here and only here; the case hears the outcome.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from activities.store.engine import Database
from activities.store.tables import CallAttempt, CallTask, CallTaskStatus, utcnow


class CallBook(Database):
    """Call tasks and call attempts."""

    def create_call_task(
        self,
        case_id: str,
        customer_id: str,
        step: str,
        max_attempts: int,
        call_after: datetime,
    ) -> CallTask:
        """The task for a case's call step, stored once per (case, step): a retried activity
        gets the task the first try stored, unchanged."""
        with self.session() as session:
            earlier = self._find_call_task(session, case_id, step)
            if earlier is not None:
                return earlier
            row = CallTask(
                case_id=case_id,
                customer_id=customer_id,
                step=step,
                max_attempts=max_attempts,
                call_after=call_after,
                created_at=utcnow(),
            )
            session.add(row)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()  # stored concurrently by another try
                return self._find_call_task(session, case_id, step)
            return row

    def call_task(self, task_id: int) -> CallTask | None:
        """A task by its id, or None."""
        with self.session() as session:
            return session.get(CallTask, task_id)

    def call_tasks(
        self, customer_id: str | None = None, include_closed: bool = False
    ) -> list[CallTask]:
        """Tasks (open ones unless `include_closed`), the soonest to call first."""
        query = select(CallTask)
        if customer_id is not None:
            query = query.where(CallTask.customer_id == customer_id)
        if not include_closed:
            query = query.where(CallTask.status == CallTaskStatus.OPEN)
        with self.session() as session:
            return list(session.exec(query.order_by(CallTask.call_after, CallTask.id)))

    def calls_to_customer_since(self, customer_id: str, since: datetime) -> list[datetime]:
        """When the customer was called after `since`, across all their cases, oldest first."""
        with self.session() as session:
            return list(
                session.exec(
                    select(CallAttempt.at)
                    .where(CallAttempt.customer_id == customer_id, CallAttempt.at > since)
                    .order_by(CallAttempt.at)
                )
            )

    def record_call(
        self,
        task_id: int,
        at: datetime,
        outcome: str,
        actor: str,
        note: str,
        stays_open: bool,
        call_after: datetime,
    ) -> CallTask:
        """Store a call made on a task and what became of the task (still open, to be called
        from `call_after`, or done), in one transaction. A task cancelled meanwhile (the call
        itself may have finished the case: a payment) still takes the call, and is done when
        the call closed it. `ValueError` when the task is unknown or already done."""
        with self.session() as session:
            task = session.get(CallTask, task_id, with_for_update=True)
            if task is None:
                raise ValueError(f"no call task {task_id}")
            if task.status == CallTaskStatus.DONE:
                raise ValueError(f"call task {task_id} is already done")
            session.add(
                CallAttempt(
                    task_id=task_id,
                    customer_id=task.customer_id,
                    at=at,
                    outcome=outcome,
                    actor=actor,
                )
            )
            task.attempts += 1
            task.last_outcome = outcome
            task.actor = actor
            task.note = note
            if not stays_open:
                task.status = CallTaskStatus.DONE
            elif task.status == CallTaskStatus.OPEN:
                task.call_after = call_after
            session.add(task)
            session.commit()
            return task

    def cancel_call_tasks(self, case_id: str) -> int:
        """Close a finished case's open tasks (cancelled): how many there were."""
        with self.session() as session:
            done = session.exec(
                update(CallTask)
                .where(CallTask.case_id == case_id, CallTask.status == CallTaskStatus.OPEN)
                .values(status=CallTaskStatus.CANCELLED)
            )
            session.commit()
            return done.rowcount

    @staticmethod
    def _find_call_task(session: Session, case_id: str, step: str) -> CallTask | None:
        return session.exec(
            select(CallTask).where(CallTask.case_id == case_id, CallTask.step == step)
        ).first()
