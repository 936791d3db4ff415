"""What a case says to its customer's conversation, and what a new conversation counts.

`tell_conversation` is a signal-with-start of the customer's `CustomerWorkflow`: the first
case of a customer starts it, the others find it running, and a note that races its start
is never lost. It names the workflow by its type's name, as the activities layer sits
beneath the workflows.
"""

from __future__ import annotations

from datetime import datetime

from temporalio import activity
from temporalio.common import WorkflowIDConflictPolicy

from activities.store import CaseStore
from workflows.conversation import (
    CaseJoined,
    CaseLeft,
    ConversationNote,
    ConversationReply,
    ConversationStart,
    CustomerPromised,
    OutcomeDue,
    ReminderDue,
)
from workflows.models import RecentMessagesRequest

SIGNALS = {
    CaseJoined: "case_joined",
    ReminderDue: "reminder_due",
    OutcomeDue: "outcome_due",
    CustomerPromised: "customer_promised",
    CaseLeft: "case_left",
}
"""`CustomerWorkflow`'s signal for each note."""


def conversation_id(customer_id: str) -> str:
    """The workflow id of a customer's conversation."""
    return f"customer-{customer_id}"


class ConversationActivities:
    """The activities between cases and their customer's conversation."""

    def __init__(self, store: CaseStore) -> None:
        self.store = store

    def all(self) -> list:
        return [self.tell_conversation, self.hand_over_reminder, self.recent_messages]

    @activity.defn
    async def tell_conversation(self, note: ConversationNote) -> None:
        """Signal the customer's conversation, starting it if it is not running. Retried,
        the note arrives twice; the conversation ignores the repeat."""
        await activity.client().start_workflow(
            "CustomerWorkflow",
            ConversationStart(customer_id=note.customer_id),
            id=conversation_id(note.customer_id),
            task_queue=activity.info().task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            start_signal=SIGNALS[type(note)],
            start_signal_args=[note],
            static_summary=f"Conversation with customer {note.customer_id}",
        )

    @activity.defn
    async def hand_over_reminder(self, note: ReminderDue) -> ConversationReply | None:
        """Hand a reminder to the customer's conversation (started if it is not running) by
        its `hand_over_reminder` update, which answers what became of the reminder when the
        conversation sends or settles it at once: the case then needs no reply signal (an
        action on its history) nor wakes from its wait for one. None when the reminder
        waits (to merge, or for the weekly budget): the reply comes as a signal then.
        Retried, the note is ignored and the answer given again."""
        handle = await activity.client().start_workflow(
            "CustomerWorkflow",
            ConversationStart(customer_id=note.customer_id),
            id=conversation_id(note.customer_id),
            task_queue=activity.info().task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"Conversation with customer {note.customer_id}",
        )
        return await handle.execute_update(
            "hand_over_reminder", note, result_type=ConversationReply | None
        )

    @activity.defn
    def recent_messages(self, request: RecentMessagesRequest) -> list[datetime]:
        """When the customer's messages since `since` went out, one time per message."""
        return self.store.message_times_since(request.customer_id, request.since)
