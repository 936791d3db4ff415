"""CustomerWorkflow: one conversation per customer, over all their open cases.

Cases join it when they open, hand it their reminders and leave it when they finish; it
decides (`workflows.conversation`) what the customer hears and when, sends through the same
notify activity as a case, and tells each case which message carried its reminder. A case
reaches it by signal-with-start, so whichever case comes first starts it.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import timedelta
from typing import NoReturn

from temporalio import workflow
from temporalio.exceptions import ActivityError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.conversation import ConversationActivities
    from activities.dunning import DunningActivities
    from workflows.conversation import (
        CaseJoined,
        CaseLeft,
        Close,
        Conclude,
        Conversation,
        ConversationNote,
        ConversationReply,
        ConversationStart,
        ConversationView,
        CustomerPromised,
        OutcomeDue,
        PassOn,
        ReminderDue,
        Rest,
        Send,
        Settle,
        conversation_view,
        decide_conversation,
        describe_conversation_step,
        message_request,
        outcome_request,
        replies,
    )
    from workflows.messaging import CAP_WINDOW
    from workflows.models import DeliveryStatus, RecentMessagesRequest
    from workflows.search import conversation_search_attributes, upsert_changed

from workflows.dunning import NOTIFY_RETRY, PROVIDER_TIMEOUT, STORE_RETRY, STORE_TIMEOUT


@workflow.defn
class CustomerWorkflow:
    """A customer's conversation. Workflow id: ``customer-<customer id>``."""

    def __init__(self) -> None:
        self._conversation: Conversation | None = None
        self._early: list[ConversationNote] = []
        self._changed = False
        self._published: dict[str, object] = {}
        self._resting = False
        self._asked: set[tuple[str, str]] = set()
        self._answers: dict[tuple[str, str], ConversationReply] = {}

    @workflow.run
    async def run(self, start: ConversationStart) -> ConversationView:
        """Speak for the customer's cases until none is open."""
        if start.carried is not None:
            self._conversation = start.carried
        else:
            self._conversation = await self._open(start.customer_id)
        self._history_limit = start.history_limit
        conversation = self._conversation
        for note in self._early:
            conversation.hear(note, workflow.now())

        while True:
            self._changed = self._resting = False
            step = decide_conversation(conversation, workflow.now())
            self._publish(step)
            match step:
                case Send():
                    await self._send(step)
                case Conclude():
                    await self._conclude(step)
                case PassOn():
                    conversation.record_passed_on(step)
                    await self._pass_on(step)
                case Settle():
                    conversation.record_settled(step)
                    await self._reply(replies(step.reminders, workflow.now(), step.detail))
                case Rest():
                    self._resting = True  # the reminders still waiting are answered later
                    if self._history_is_long():
                        await self._continue_as_new()
                    timeout = None if step.until is None else step.until - workflow.now()
                    with suppress(TimeoutError):
                        await workflow.wait_condition(
                            lambda: self._changed,
                            timeout=None if timeout is None else max(timeout, timedelta(seconds=1)),
                            timeout_summary=f"wait {step.reason}",
                        )
                case Close():
                    self._resting = True
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    return conversation_view(conversation, workflow.now())

    async def _open(self, customer_id: str) -> Conversation:
        """A new conversation, counting what the customer was sent in the last week."""
        recent = await workflow.execute_activity_method(
            ConversationActivities.recent_messages,
            RecentMessagesRequest(customer_id=customer_id, since=workflow.now() - CAP_WINDOW),
            start_to_close_timeout=STORE_TIMEOUT,
            retry_policy=STORE_RETRY,
            summary="count the customer's messages this week",
        )
        conversation = Conversation(customer_id=customer_id)
        conversation.remember_sent(recent)
        return conversation

    async def _send(self, step: Send) -> None:
        """One message for every waiting reminder, under the firmest one's step and key."""
        conversation = self._conversation
        lead = step.lead
        try:
            result = await workflow.execute_activity_method(
                DunningActivities.notify,
                message_request(conversation, step, workflow.now()),
                start_to_close_timeout=PROVIDER_TIMEOUT,
                retry_policy=NOTIFY_RETRY,
                summary=f"send {lead.template} naming {len(step.open_invoices)} invoice(s)",
            )
        except ActivityError as err:
            settle = Settle(reminders=step.reminders, detail=f"message error: {err.cause or err}")
            conversation.record_settled(settle)
            await self._reply(replies(step.reminders, workflow.now(), settle.detail))
            return
        if result.settled is not None:
            # The lead's invoice was settled meanwhile: its case hears it from the biller; the
            # other reminders go out in the next message.
            conversation.record_settled(Settle(reminders=[lead], detail="invoice settled"))
            return
        if any(d.status is DeliveryStatus.SENT for d in result.deliveries):
            conversation.record_sent(step, workflow.now())
        else:
            conversation.record_settled(Settle(reminders=step.reminders, detail="not delivered"))
        detail = f"one message naming {len(step.open_invoices)} open invoice(s)"
        answers = replies(step.reminders, workflow.now(), detail, result.deliveries, lead)
        await self._reply(answers)

    async def _conclude(self, step: Conclude) -> None:
        """One outcome message for the cases that ended together. Their cases have finished,
        so nobody hears back; a failure to send is the store's record."""
        conversation = self._conversation
        request = outcome_request(conversation, step, workflow.now())
        with suppress(ActivityError):
            await workflow.execute_activity_method(
                DunningActivities.notify,
                request,
                start_to_close_timeout=PROVIDER_TIMEOUT,
                retry_policy=NOTIFY_RETRY,
                summary=f"send {request.template} naming {len(step.outcomes)} invoice(s)",
            )
        conversation.record_concluded(step)

    async def _pass_on(self, step: PassOn) -> None:
        """Each other open case hears the promise, and takes it if its policy allows."""
        promise = step.promised.promise.model_copy(update={"shared_from": step.promised.case_id})
        for workflow_id in step.workflow_ids:
            handle = workflow.get_external_workflow_handle(workflow_id)
            with suppress(FailureError):
                await handle.signal("promise_passed_on", promise)

    async def _reply(self, answers: list[tuple[str, ConversationReply]]) -> None:
        """Tell each case what became of its reminder; a case that has finished meanwhile
        no longer listens, and that is no error. A case still handing the reminder over
        (`hand_over_reminder`) takes its answer there, without a signal."""
        for workflow_id, reply in answers:
            if (workflow_id, reply.step) in self._asked:
                self._answers[workflow_id, reply.step] = reply
                continue
            handle = workflow.get_external_workflow_handle(workflow_id)
            with suppress(FailureError):
                await handle.signal("conversation_reply", reply)

    def _history_is_long(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > self._history_limit
        )

    async def _continue_as_new(self) -> NoReturn:
        await workflow.wait_condition(workflow.all_handlers_finished)
        conversation = self._conversation
        workflow.continue_as_new(
            ConversationStart(
                customer_id=conversation.customer_id,
                carried=conversation,
                history_limit=self._history_limit,
            )
        )

    def _publish(self, step) -> None:
        """Current details always; search attributes only when they changed."""
        conversation = self._conversation
        workflow.set_current_details(describe_conversation_step(step))
        if isinstance(step, Send | Settle):
            return
        until = getattr(step, "until", None)
        upsert_changed(self._published, conversation_search_attributes(conversation, until))

    def _hear(self, note: ConversationNote) -> None:
        if self._conversation is None:
            self._early.append(note)
            return
        self._conversation.hear(note, workflow.now())
        self._changed = True
        self._resting = False

    @workflow.signal
    def case_joined(self, note: CaseJoined) -> None:
        """A case of the customer opened."""
        self._hear(note)

    @workflow.signal
    def reminder_due(self, note: ReminderDue) -> None:
        """A case's reminder is due: the conversation sends it, merged or on its own."""
        self._hear(note)

    @workflow.signal
    def outcome_due(self, note: OutcomeDue) -> None:
        """A case ended: its outcome message goes out with those of cases ending with it."""
        self._hear(note)

    @workflow.signal
    def customer_promised(self, note: CustomerPromised) -> None:
        """The customer promised to pay on one case: the others hear of it."""
        self._hear(note)

    @workflow.signal
    def case_left(self, note: CaseLeft) -> None:
        """A case finished: its invoice leaves the messages."""
        self._hear(note)

    @workflow.update
    async def hand_over_reminder(self, note: ReminderDue) -> ConversationReply | None:
        """`reminder_due`, answered with what became of the reminder once the conversation
        has sent or settled it; None if it waits (its case hears by `conversation_reply`
        then). Answers are kept for the run, so a retried hand-over hears the same."""
        self._hear(note)
        key = (note.case.workflow_id, note.step)
        self._asked.add(key)
        await workflow.wait_condition(lambda: key in self._answers or self._resting)
        self._asked.discard(key)
        return self._answers.get(key)

    @workflow.query
    def summary(self) -> ConversationView:
        """The customer's open invoices, what they owe, messages this week, next contact."""
        if self._conversation is None:
            raise ValueError("conversation has not started yet")
        return conversation_view(self._conversation, workflow.now())
