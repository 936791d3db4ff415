"""DunningWorkflow: one failed invoice, driven durably from failure to outcome.

It reads top to bottom like the process: load the pinned policy, then loop — ask the policy
core for the next step, carry it out through an activity or a signal-interruptible wait,
fold the result into the case — until the core says the case is finished.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from datetime import datetime, timedelta
from typing import NoReturn

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.conversation import ConversationActivities
    from activities.dunning import DunningActivities
    from workflows.case import CaseRun, CaseState
    from workflows.case_events import PublishEvent, case_event, due_event
    from workflows.conversation import ConversationNote, ConversationReply
    from workflows.decide import (
        AddLateFee,
        AwaitPaymentMethod,
        Call,
        Charge,
        Finish,
        Notify,
        Step,
        Wait,
        case_step,
        decide,
    )
    from workflows.models import (
        CallNoted,
        CancelRequest,
        CaseInput,
        CaseRecord,
        CaseResult,
        CaseUpdate,
        CaseView,
        DisputeOpened,
        DisputeResolved,
        FeedbackGiven,
        MessagePlanRequest,
        PauseRequest,
        PaymentFailed,
        PaymentMethodUpdated,
        PaymentReceived,
        PayNow,
        PlanChosen,
        PlanRequest,
        PolicyRef,
        PromiseToPay,
        ResumeRequest,
        RetryRequest,
        WriteBackRequest,
    )
    from workflows.policy import Policy, WriteBackAction
    from workflows.policy_versions import POLICY_VERSIONS
    from workflows.search import case_search_attributes, upsert_changed, upsert_status
    from workflows.steps import (
        CloseCaseRequest,
        OpenCaseRequest,
        call_task_request,
        case_update,
        charge_request,
        fold_call_task,
        fold_charge,
        fold_closing,
        fold_late_fee,
        fold_message,
        fold_reply,
        fold_settlement,
        fold_signal,
        joined_note,
        late_fee_request,
        left_note,
        notify_request,
        outcome_note,
        promised_note,
        reminder_note,
        wait_timeout,
    )

# Gateway errors retrying cannot fix: the case waits for an operator (`dunning retry`).
OPERATOR_ERRORS = ("GatewayConfigError", "IdempotencyConflict")
# Charges retry transient gateway trouble for a long time: the idempotency key of the attempt
# makes every retry safe, and giving up would only delay the customer's recovery.
CHARGE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    maximum_interval=timedelta(minutes=30),
    maximum_attempts=20,
    non_retryable_error_types=list(OPERATOR_ERRORS),
)
NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    maximum_attempts=10,
    non_retryable_error_types=["NotifierConfigError"],
)
STORE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)
)
# Patch ids of replay-safe changes; see README, "Changing workflow code while cases run".
HOLD_FOR_OPERATOR = "hold-for-operator-on-gateway-config-error"
QUIET_UNLESS_MESSAGED = "no-outcome-message-to-a-customer-never-written-to"
REPLAN_AFTER_DECLINE = "replan-after-decline"
MESSAGE_PLAN = "message-plan"
CUSTOMER_CONVERSATION = "customer-conversation"
LATE_FEE = "late-fee"
CALL_TASKS = "call-tasks"
OUTBOUND_EVENTS = "outbound-events"
POLICY_BY_HASH = "policy-by-hash"
LEAN_CASE = "lean-case"
LEAN_CONVERSATION = "lean-conversation"
# Short timeouts: when a worker dies mid-activity, another retries it after this long.
STORE_TIMEOUT = timedelta(seconds=10)
PROVIDER_TIMEOUT = timedelta(seconds=30)


@workflow.defn
class DunningWorkflow:
    """A dunning case. Workflow id: ``dunning-<invoice id>``. Result: `CaseResult`."""

    def __init__(self) -> None:
        self._state: CaseState | None = None
        self._changed = False
        self._recorded = 0
        self._stored: tuple[object, ...] | None = None
        self._published: dict[str, object] = {}
        self._early: list[object] = []
        self._lean_conversation = False

    @workflow.run
    async def run(self, case: CaseRun) -> CaseResult:
        """Dun the case until it is recovered, cancelled or sent to collections. A run that
        continues a long payment plan starts from the state the previous run carried over."""
        if case.carried is None:
            await self._open(CaseInput.model_validate(case.model_dump(exclude={"carried"})))
        else:
            self._state = case.carried
            self._recorded = len(case.carried.timeline)
            self._stored = self._row()
            if self._state.lean:
                self._published = current_search_attributes()
            if self._state.lean and self._state.conversation:
                self._lean_conversation = workflow.patched(LEAN_CONVERSATION)
        for signal in self._early:
            self._apply(signal)
        installments_paid = self._installments_paid()

        while True:
            self._state.expire_pause(workflow.now())
            if self._state.promise_to_share is not None:
                # The customer means every invoice they owe: the conversation passes it on.
                await self._tell(promised_note(self._state))
            # The step sees every signal so far; one arriving from here on wakes the next wait.
            self._changed = False
            step = decide(self._state, workflow.now())
            if self._state.lean and isinstance(step, PublishEvent):
                # A lean case's closing activity publishes its outcome event.
                own = case_step(self._state, workflow.now())
                step = own if isinstance(own, Finish) else step
            self._publish(step)
            match step:
                case Charge():
                    await self._charge(step)
                case Notify():
                    await self._notify(step)
                case PublishEvent():
                    await self._publish_event(step)
                case Wait() | AwaitPaymentMethod():
                    rolled = self._installments_paid() > installments_paid
                    renew = rolled or workflow.info().is_continue_as_new_suggested()
                    # A lean case's lines go with its next step, unless a reader of the
                    # case row would see a stale amount in the meantime.
                    if not self._state.lean or renew or self._stored != self._row():
                        await self._record()
                    if renew:
                        await self._continue_as_new()
                    await self._wait(step.until, step.reason)
                case Finish():
                    return await self._finish(step)
                case AddLateFee():
                    await self._add_late_fee(step)
                case Call():
                    await self._call(step)

    # Steps ---------------------------------------------------------------------------------

    async def _open(self, case: CaseInput) -> None:
        """Load the pinned policy and the customer's time zones, and open the case."""
        # A case pinned by hash reads its policy from the worker's registry of versions (an
        # unknown one fails the task until the worker has it), so no policy body enters its
        # history; cases opened before, or by a starter that pins no hash, load it.
        if case.policy_hash is not None and workflow.patched(POLICY_BY_HASH):
            policy = POLICY_VERSIONS.get(
                PolicyRef(name=case.policy_name, version=case.policy_version, hash=case.policy_hash)
            )
        else:
            policy = await workflow.execute_activity_method(
                DunningActivities.load_policy,
                PolicyRef(name=case.policy_name, version=case.policy_version),
                start_to_close_timeout=STORE_TIMEOUT,
                retry_policy=STORE_RETRY,
                summary=f"load policy {case.policy_name} v{case.policy_version}",
            )
        # Cases started before the lean case keep their bookkeeping activities, for life.
        if workflow.patched(LEAN_CASE):
            await self._open_case(case, policy)
            return
        contact = await workflow.execute_activity_method(
            DunningActivities.contact_facts,
            case.customer_id,
            start_to_close_timeout=STORE_TIMEOUT,
            retry_policy=STORE_RETRY,
            summary="look up the customer's time zones",
        )
        self._state = CaseState.open(case, policy, workflow.now())
        self._state.time_zones = contact.time_zones
        # Replay-safe change (README, "Changing workflow code"): cases started before this
        # rule still send an outcome message to a customer they never wrote to.
        self._state.quiet_unless_messaged = workflow.patched(QUIET_UNLESS_MESSAGED)
        # Cases started before the customer's conversation existed send their own reminders.
        if policy.conversation and workflow.patched(CUSTOMER_CONVERSATION):
            self._state.conversation = True
            await self._tell(joined_note(self._state, workflow.info().workflow_id))
        # Cases started before outbound events tell the product nothing, for life.
        self._state.publishes_events = workflow.patched(OUTBOUND_EVENTS)
        # Cases started before learned message timing was wired send reminders as written.
        if policy.message_timing == "learned" and workflow.patched(MESSAGE_PLAN):
            await self._plan_messages()
        if policy.retry_timing == "smart":
            await self._plan_retries()

    async def _open_case(self, case: CaseInput, policy: Policy) -> None:
        """Open a lean case with one activity (`OpenCaseRequest`): every rule the patches
        before it brought holds from the start."""
        now = workflow.now()
        state = self._state = CaseState.open(case, policy, now)
        state.lean = state.publishes_events = True
        self._published = current_search_attributes()
        opened = due_event(state, now)
        request = OpenCaseRequest(
            customer_id=case.customer_id,
            record=state.record(state.timeline),
            opened=None if opened is None else case_event(state, opened, now),
        )
        if policy.message_timing == "learned":
            request.message_plan = self._message_plan_request()
        if policy.retry_timing == "smart":
            request.retry_plan = self._plan_request()
        if policy.conversation:
            state.conversation = True
            # Cases opened before the lean conversation join it with an activity of their own.
            self._lean_conversation = workflow.patched(LEAN_CONVERSATION)
            if self._lean_conversation:
                request.joined = joined_note(state, workflow.info().workflow_id)
        result = await workflow.execute_activity_method(
            DunningActivities.open_case,
            request,
            start_to_close_timeout=STORE_TIMEOUT,
            retry_policy=STORE_RETRY,
            summary="open the case",
        )
        self._written(request.record)  # not the state now: a signal may have come meanwhile
        if opened is not None:
            state.mark_published(opened.event_id)
        state.time_zones = result.time_zones
        if result.message_plan is not None:
            state.follow_message_plan(result.message_plan, now)
        if result.retry_plan is not None:
            state.follow_plan(result.retry_plan, now)
        if policy.conversation and not self._lean_conversation:
            await self._tell(joined_note(state, workflow.info().workflow_id))

    def _installments_paid(self) -> int:
        return sum(installment.paid for installment in self._state.plan)

    async def _continue_as_new(self) -> NoReturn:
        """Begin a new run with the case as it stands (its audit lines already recorded), so
        a plan of many months keeps each history as small as one installment's."""
        await workflow.wait_condition(workflow.all_handlers_finished)
        state = self._state
        workflow.continue_as_new(CaseRun(**state.case.model_dump(), carried=state))

    async def _plan_retries(self) -> None:
        """Smart timing: ask when to make the retries still to come; the plan lives in the
        case's history, so a replay follows it even after a newer model is trained."""
        plan = await workflow.execute_activity_method(
            DunningActivities.plan_retries,
            self._plan_request(),
            start_to_close_timeout=STORE_TIMEOUT,
            retry_policy=STORE_RETRY,
            summary="plan the retry times",
        )
        self._state.follow_plan(plan, workflow.now())

    def _plan_request(self) -> PlanRequest:
        state = self._state
        return PlanRequest(
            **state.plan_facts(workflow.now()).model_dump(),
            invoice_id=state.case.invoice_id,
            customer_id=state.case.customer_id,
            policy_name=state.policy.name,
            policy_version=state.policy.version,
        )

    async def _plan_messages(self) -> None:
        """Learned message timing: ask how the reminders go out, once; the plan lives in the
        case's state, so it holds for the case's life, across continue-as-new."""
        plan = await workflow.execute_activity_method(
            DunningActivities.plan_messages,
            self._message_plan_request(),
            start_to_close_timeout=STORE_TIMEOUT,
            retry_policy=STORE_RETRY,
            summary="plan the reminders' hour and channels",
        )
        self._state.follow_message_plan(plan, workflow.now())

    def _message_plan_request(self) -> MessagePlanRequest:
        state = self._state
        return MessagePlanRequest(
            customer_id=state.case.customer_id,
            policy_name=state.policy.name,
            policy_version=state.policy.version,
        )

    async def _charge(self, step: Charge) -> None:
        state = self._state
        request = charge_request(state, step, workflow.now())
        request.record = self._unwritten()
        if self._may_replan(step):
            request.replan = self._plan_request()
        try:
            result = await workflow.execute_activity_method(
                DunningActivities.charge,
                request,
                start_to_close_timeout=PROVIDER_TIMEOUT,
                retry_policy=CHARGE_RETRY,
                summary=f"charge attempt {step.attempt}: {step.label}",
            )
        except ActivityError as err:
            cause = err.cause
            needs_operator = isinstance(cause, ApplicationError) and cause.type in OPERATOR_ERRORS
            # Cases that met such an error before this rule retried it on their schedule.
            if needs_operator and workflow.patched(HOLD_FOR_OPERATOR):
                state.block(f"charge attempt {step.attempt}: {cause.message}", workflow.now())
            else:
                state.record_charge_error(step.attempt, str(cause or err), workflow.now())
            return
        self._written(request.record)
        if result.settled is not None:
            fold_settlement(state, result.settled, workflow.now())
            return
        fold_charge(state, step, result, workflow.now())
        # Smart timing: a declined retry taught the planner something; plan the rest again.
        # Cases started before this rule keep their first plan.
        if state.plan_outdated and workflow.patched(REPLAN_AFTER_DECLINE):
            if result.retry_plan is not None:  # the charge planned the rest itself
                state.follow_plan(result.retry_plan, workflow.now())
            else:
                await self._plan_retries()

    def _may_replan(self, step: Charge) -> bool:
        """Whether a soft decline of this charge would plan the retries still to come (smart
        timing, retries left after it; `CaseState._replans_after`): if so, the charge
        activity plans them, saving an activity. A history recorded before replays as it
        ran: its results carry no plan, so the case asks `plan_retries`."""
        state = self._state
        if state.policy.retry_timing != "smart" or state.planned_retries is None:
            return False
        if step.requested or step.installment is not None or step.promised:
            return False
        return state.scheduled_retries_done + step.scheduled < len(state.policy.retries)

    async def _add_late_fee(self, step: AddLateFee) -> None:
        """Add the policy's late fee through the biller, once: the request's idempotency key
        is the case's, and the case remembers the fee (or why it could not be added)."""
        state = self._state
        request = late_fee_request(state, step)
        # Only a policy with a late fee gets here; the patch keeps any history recorded
        # before the step existed replaying as it ran (without the fee).
        if request is None or not workflow.patched(LATE_FEE):
            fold_late_fee(state, step, None, workflow.now())
            return
        try:
            result = await workflow.execute_activity_method(
                DunningActivities.add_late_fee,
                request,
                start_to_close_timeout=PROVIDER_TIMEOUT,
                retry_policy=CHARGE_RETRY,
                summary=f"add {step.label}",
            )
        except ActivityError as err:
            fold_late_fee(state, step, None, workflow.now(), f"{err.cause or err}")
            return
        fold_late_fee(state, step, result.reference, workflow.now())

    async def _notify(self, step: Notify) -> None:
        state = self._state
        if state.conversation and step.tone is not None:
            # A reminder: the customer's conversation sends it, with their other cases'.
            note = reminder_note(state, step, workflow.info().workflow_id, workflow.now())
            if not self._lean_conversation:
                await self._tell(note)
                state.hand_over(step.step, step.covers, step.tone, workflow.now())
                return
            # The hand-over answers what became of the reminder when it went out at once,
            # so the case needs no reply signal for it.
            reply = await workflow.execute_activity_method(
                ConversationActivities.hand_over_reminder,
                note,
                start_to_close_timeout=PROVIDER_TIMEOUT,
                retry_policy=STORE_RETRY,
                summary=f"hand {step.step} to the customer's conversation",
            )
            state.hand_over(step.step, step.covers, step.tone, workflow.now())
            if reply is not None:
                fold_signal(state, reply, workflow.now())
            return
        request = notify_request(state, step, workflow.now())
        request.record = self._unwritten()
        try:
            result = await workflow.execute_activity_method(
                DunningActivities.notify,
                request,
                start_to_close_timeout=PROVIDER_TIMEOUT,
                retry_policy=NOTIFY_RETRY,
                summary=f"send {step.template} ({', '.join(step.channels)})",
            )
            self._written(request.record)
            if result.settled is not None:
                fold_settlement(state, result.settled, workflow.now())
                return
            deliveries = result.deliveries
        except ActivityError as err:
            state.note(workflow.now(), "message_error", detail=f"{step.step}: {err.cause or err}")
            deliveries = []
        fold_message(state, step, deliveries, workflow.now())

    async def _call(self, step: Call) -> None:
        """Create the task for a person to call the customer (the activity finds the best
        time from the customer's zones and recent calls: none of it enters the history)."""
        state = self._state
        task = None
        # Only a policy with call steps reaches here; patched all the same, for old cases.
        if workflow.patched(CALL_TASKS):
            task = await workflow.execute_activity_method(
                DunningActivities.create_call_task,
                call_task_request(state, step, workflow.now()),
                start_to_close_timeout=STORE_TIMEOUT,
                retry_policy=STORE_RETRY,
                summary=f"create call task {step.step}",
            )
        fold_call_task(state, step, task, workflow.now())

    async def _publish_event(self, step: PublishEvent) -> None:
        """Tell the product (one activity); the activity stores the event and never waits
        for the receiver, so the case goes on whether or not it is up."""
        state = self._state
        await workflow.execute_activity_method(
            DunningActivities.publish_event,
            case_event(state, step, workflow.now()),
            start_to_close_timeout=PROVIDER_TIMEOUT,
            retry_policy=STORE_RETRY,
            summary=f"publish {step.event}",
        )
        state.mark_published(step.event_id)

    async def _wait(self, until: datetime | None, reason: str) -> None:
        """Sleep until `until` or until a signal changed the case since the step was decided."""
        timeout = wait_timeout(until, workflow.now())
        # A timeout is no error: the time came, and the loop decides what it brings.
        with suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: self._changed, timeout=timeout, timeout_summary=f"wait {reason}"
            )

    async def _finish(self, step: Finish) -> CaseResult:
        state = self._state
        state.conclude(step.outcome, step.reason, workflow.now())
        if state.lean and await self._close(step):
            return state.result(workflow.now())
        if (event := due_event(state, workflow.now())) is not None:
            await self._publish_event(event)  # collections: the outcome was reached just now
        self._publish(step)
        if step.message is not None and state.conversation:
            # The conversation sends it, as one with others ending now (one receipt for all).
            wid = workflow.info().workflow_id
            await self._tell(outcome_note(state, step.message, wid, workflow.now()))
        elif step.message is not None:
            await self._notify(step.message)
        for action in step.write_back:
            await self._write_back(action)
        if state.conversation:
            await self._tell(left_note(state))
        await self._record()
        return state.result(workflow.now())

    async def _close(self, step: Finish) -> bool:
        """Close a lean case with one activity (`CloseCaseRequest`); the customer's
        conversation, when it has one, hears the outcome and the goodbye on either side.
        False when closing failed for good: the case then closes step by step, as before
        (every part is idempotent)."""
        state, now, wid = self._state, workflow.now(), workflow.info().workflow_id
        event = due_event(state, now)
        self._publish(step)
        message, outcome, left = step.message, None, None
        if message is not None and state.conversation:
            outcome = outcome_note(state, message, wid, now)
            message = None
        if self._lean_conversation:  # the closing activity tells the conversation
            left = left_note(state)
        elif outcome is not None:
            await self._tell(outcome)
            outcome = None
        entries = state.timeline[self._recorded :]
        request = CloseCaseRequest(
            record=case_update(state, entries),
            next_seq=len(state.timeline) + 1,
            at=now,
            event=None if event is None else case_event(state, event, now),
            message=None if message is None else notify_request(state, message, now),
            write_backs=[self._write_back_request(action) for action in step.write_back],
            outcome=outcome,
            left=left,
        )
        try:
            closed = await workflow.execute_activity_method(
                DunningActivities.close_case,
                request,
                start_to_close_timeout=PROVIDER_TIMEOUT,
                retry_policy=CHARGE_RETRY,
                summary=f"close the case: {step.outcome}",
            )
        except ActivityError as err:
            state.note(now, "close_error", detail=f"{err.cause or err}")
            return False
        if event is not None:
            state.mark_published(event.event_id)
        fold_closing(state, message, closed, now)
        self._recorded = len(state.timeline)
        if state.conversation and left is None:
            await self._tell(left_note(state))
        return True

    async def _tell(self, note: ConversationNote) -> None:
        """Tell the customer's conversation (signal-with-start: the first case starts it)."""
        await workflow.execute_activity_method(
            ConversationActivities.tell_conversation,
            note,
            start_to_close_timeout=STORE_TIMEOUT,
            retry_policy=STORE_RETRY,
            summary=f"tell the customer's conversation: {note.kind}",
        )

    async def _write_back(self, action: WriteBackAction) -> None:
        """Tell the biller how the case ended; a failure is recorded, the outcome stands."""
        state = self._state
        try:
            result = await workflow.execute_activity_method(
                DunningActivities.write_back,
                self._write_back_request(action),
                start_to_close_timeout=PROVIDER_TIMEOUT,
                retry_policy=CHARGE_RETRY,
                summary=f"write back: {action}",
            )
        except ActivityError as err:
            state.note(workflow.now(), "write_back_failed", detail=f"{action}: {err.cause or err}")
            return
        done = "done" if result.done else "nothing to do"
        state.note(workflow.now(), "write_back", detail=f"{action}: {done} {result.detail}".strip())

    def _write_back_request(self, action: WriteBackAction) -> WriteBackRequest:
        case = self._state.case
        return WriteBackRequest(
            case_id=case.case_id,
            invoice_id=case.invoice_id,
            subscription_id=case.subscription_id,
            action=action,
        )

    def _unwritten(self) -> CaseUpdate | None:
        """A lean case's row changes and audit lines not yet written, for the next step."""
        state = self._state
        if not state.lean or len(state.timeline) == self._recorded:
            return None
        return case_update(state, state.timeline[self._recorded :])

    def _written(self, record: CaseRecord | CaseUpdate | None) -> None:
        """The activity that carried `record` wrote it."""
        if record is not None:
            self._recorded += len(record.entries)
            self._stored = (record.amount_due, record.closed_at)

    def _row(self) -> tuple[object, ...]:
        """What readers of the case row act on: the amount due and whether the case closed.
        An open case's status is its workflow's to answer (the status query, `DunningStatus`):
        the row catches up with it at the next step."""
        state = self._state
        return (state.amount_due, state.closed_at)

    async def _record(self) -> None:
        """Write the case row and the audit lines not yet written (one activity, idempotent)."""
        state = self._state
        entries = state.timeline[self._recorded :]
        # A lean case's opening wrote the whole row: from then on, only what changes.
        record = case_update(state, entries) if state.lean else state.record(entries)
        await workflow.execute_activity_method(
            DunningActivities.record,
            record,
            start_to_close_timeout=STORE_TIMEOUT,
            retry_policy=STORE_RETRY,
            summary=f"record case ({state.status}, {len(entries)} audit lines)",
        )
        self._written(record)

    def _publish(self, step: Step) -> None:
        """Keep the Temporal UI current: details always, search attributes once the case
        settles into a wait or an outcome, and only those that changed (each upsert is an
        action on Temporal Cloud)."""
        plan = self._state.latest_retry_plan
        details = describe(step) if plan is None else f"{describe(step)}\nretry plan: {plan}"
        workflow.set_current_details(details)
        if isinstance(step, Charge | Notify | AddLateFee | Call | PublishEvent):
            return
        if self._state.lean:
            upsert_status(self._published, self._state)
            return
        until = getattr(step, "until", None)
        upsert_changed(self._published, case_search_attributes(self._state, until))

    # Signals, update and query -------------------------------------------------------------

    def _apply(self, signal: object) -> None:
        """Fold a signal into the case (or keep it until the case has started)."""
        if self._state is None:
            self._early.append(signal)
            return
        if self._lean_conversation and isinstance(signal, ConversationReply):
            # News for the status view and the audit trail, rarely for the next step: the
            # wait goes on unless it did (waking only to start the same timer costs one).
            self._changed |= fold_reply(self._state, signal, workflow.now())
            return
        fold_signal(self._state, signal, workflow.now())
        self._changed = True

    @workflow.signal
    def payment_received(self, payment: PaymentReceived) -> None:
        """Money arrived elsewhere; the full amount recovers the case."""
        self._apply(payment)

    @workflow.signal
    def payment_failed(self, failure: PaymentFailed) -> None:
        """Another failed payment on the invoice; a hard decline stops the retries."""
        self._apply(failure)

    @workflow.signal
    def payment_method_updated(self, update: PaymentMethodUpdated) -> None:
        """A new payment method: charge it soon."""
        self._apply(update)

    @workflow.signal
    def dispute_opened(self, dispute: DisputeOpened) -> None:
        """Stop charging and messaging until the dispute is resolved."""
        self._apply(dispute)

    @workflow.signal
    def dispute_resolved(self, resolution: DisputeResolved) -> None:
        """Won resumes the case, lost cancels it."""
        self._apply(resolution)

    @workflow.signal
    def conversation_reply(self, reply: ConversationReply) -> None:
        """The customer's conversation sent a reminder this case handed it, or says why not."""
        self._apply(reply)

    @workflow.signal
    def promise_passed_on(self, promise: PromiseToPay) -> None:
        """The customer promised to pay on another of their invoices: take it for this one
        too, if this case's policy allows such a promise now (ignored and recorded if not)."""
        self._apply(promise)

    @workflow.signal
    def pause(self, request: PauseRequest) -> None:
        """Hold the case; ignored (and recorded) when it is finished or already paused."""
        self._apply(request)

    @workflow.signal
    def resume(self, request: ResumeRequest) -> None:
        """Release a paused case; ignored (and recorded) when it is not paused."""
        self._apply(request)

    @workflow.signal
    def cancel(self, request: CancelRequest) -> None:
        """Stop dunning for good."""
        self._apply(request)

    @workflow.update
    def pause_case(self, request: PauseRequest) -> CaseView:
        """Pause and answer with the case's status; refused when a pause makes no sense."""
        self._apply(request)
        return self.status()

    @pause_case.validator
    def _validate_pause(self, request: PauseRequest) -> None:
        self._refuse(CaseState.refuse_pause)
        if request.until is not None and request.until <= workflow.now():
            raise ValueError("`until` is in the past")

    @workflow.update
    def resume_case(self, request: ResumeRequest) -> CaseView:
        """Resume and answer with the case's status; refused when the case is not paused."""
        self._apply(request)
        return self.status()

    @resume_case.validator
    def _validate_resume(self, request: ResumeRequest) -> None:
        self._refuse(CaseState.refuse_resume)

    # Support's actions as updates: the caller hears "refused: ..." where the signal of the
    # same name would be ignored (the signals stay for billers, who need no answer).

    @workflow.update
    def record_payment(self, payment: PaymentReceived) -> CaseView:
        """`payment_received`, answered with the case's status; refused once it finished."""
        self._apply(payment)
        return self.status()

    @record_payment.validator
    def _validate_payment(self, payment: PaymentReceived) -> None:
        self._refuse(CaseState.refuse_when_finished)

    @workflow.update
    def record_payment_method(self, update: PaymentMethodUpdated) -> CaseView:
        """`payment_method_updated`, answered with the case's status; refused once it finished."""
        self._apply(update)
        return self.status()

    @record_payment_method.validator
    def _validate_payment_method(self, update: PaymentMethodUpdated) -> None:
        self._refuse(CaseState.refuse_when_finished)

    @workflow.update
    def open_dispute(self, dispute: DisputeOpened) -> CaseView:
        """`dispute_opened`, answered with the case's status; refused when one is open."""
        self._apply(dispute)
        return self.status()

    @open_dispute.validator
    def _validate_dispute(self, dispute: DisputeOpened) -> None:
        self._refuse(CaseState.refuse_dispute)

    @workflow.update
    def resolve_dispute(self, resolution: DisputeResolved) -> CaseView:
        """`dispute_resolved`, answered with the case's status; refused when none is open."""
        self._apply(resolution)
        return self.status()

    @resolve_dispute.validator
    def _validate_resolution(self, resolution: DisputeResolved) -> None:
        self._refuse(CaseState.refuse_dispute_resolution)

    @workflow.update
    def cancel_case(self, request: CancelRequest) -> CaseView:
        """`cancel`, answered with the case's status; refused once it finished."""
        self._apply(request)
        return self.status()

    @cancel_case.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        self._refuse(CaseState.refuse_when_finished)

    @workflow.update
    def retry_case(self, request: RetryRequest) -> CaseView:
        """An operator fixed what blocked the case: charge again now; refused unless
        blocked."""
        self._apply(request)
        return self.status()

    @retry_case.validator
    def _validate_retry(self, request: RetryRequest) -> None:
        self._refuse(CaseState.refuse_retry)

    # The customer's choices on the recovery page: updates, so the page can show the answer.

    @workflow.update
    async def pay_now(self, request: PayNow) -> CaseView:
        """Charge what is due at once and answer once the gateway has: recovered, or the
        decline. Refused when the case is finished or on hold."""
        self._apply(request)
        state = self._state
        await workflow.wait_condition(lambda: state.payment_requested_at is None or state.finished)
        return self.status()

    @pay_now.validator
    def _validate_pay_now(self, request: PayNow) -> None:
        self._refuse(CaseState.refuse_pay_now)

    @workflow.update
    def choose_plan(self, chosen: PlanChosen) -> CaseView:
        """Start one of the policy's payment plans; refused when it is not offered now."""
        self._apply(chosen)
        return self.status()

    @choose_plan.validator
    def _validate_plan(self, chosen: PlanChosen) -> None:
        self._refuse(lambda state: state.refuse_plan(chosen, workflow.now()))

    @workflow.update
    def promise_payment(self, promise: PromiseToPay) -> CaseView:
        """Hold reminders until the promised date, then charge; refused outside the policy's
        window."""
        self._apply(promise)
        return self.status()

    @promise_payment.validator
    def _validate_promise(self, promise: PromiseToPay) -> None:
        self._refuse(lambda state: state.refuse_promise(promise, workflow.now()))

    @workflow.update
    def give_feedback(self, feedback: FeedbackGiven) -> CaseView:
        """Record why the customer has not paid (the reason; their words stay in the store)."""
        self._apply(feedback)
        return self.status()

    @give_feedback.validator
    def _validate_feedback(self, feedback: FeedbackGiven) -> None:
        self._refuse(lambda state: None)

    @workflow.update
    def note_call(self, noted: CallNoted) -> CaseView:
        """An agent's call and how it went, in the case's timeline; refused once it finished."""
        self._apply(noted)
        return self.status()

    @note_call.validator
    def _validate_call(self, noted: CallNoted) -> None:
        self._refuse(CaseState.refuse_when_finished)

    def _refuse(self, rule: Callable[[CaseState], str | None]) -> None:
        """Reject an update (before anything is written) when `rule` gives a reason."""
        refusal = "case has not started yet" if self._state is None else rule(self._state)
        if refusal is not None:
            raise ValueError(refusal)

    @workflow.query
    def status(self) -> CaseView:
        """Where the case stands, what it will do next and when, and what it has done."""
        state = self._state
        if state is None:
            raise ValueError("case has not started yet")
        now = workflow.now()
        step = case_step(state, now)  # an event being published is no step an operator waits on
        return state.view(step.kind, getattr(step, "until", None), describe(step), now)


def current_search_attributes() -> dict[str, object]:
    """The search attributes the run started with, by name (a continued run inherits them)."""
    return {pair.key.name: pair.value for pair in workflow.info().typed_search_attributes}


def describe(step: Step) -> str:
    """One line for operators, e.g. "waiting until 2026-11-25 09:00 UTC before retry 2 of 4"."""
    match step:
        case Charge():
            return f"charging: {step.label}"
        case Notify():
            return f"sending {step.template} by {', '.join(step.channels)}"
        case Wait() | AwaitPaymentMethod():
            prefix = (
                "awaiting a new payment method; " if isinstance(step, AwaitPaymentMethod) else ""
            )
            if step.until is None:
                return f"{prefix}waiting {step.reason}"
            return f"{prefix}waiting until {step.until:%Y-%m-%d %H:%M} UTC {step.reason}"
        case Finish():
            return f"{step.outcome}: {step.reason}"
        case AddLateFee():
            return f"adding {step.label}"
        case Call():
            return f"creating the call task {step.step}"
        case PublishEvent():
            return f"publishing {step.event}"


SIGNALS = {
    PaymentReceived: DunningWorkflow.payment_received,
    PaymentFailed: DunningWorkflow.payment_failed,
    PaymentMethodUpdated: DunningWorkflow.payment_method_updated,
    DisputeOpened: DunningWorkflow.dispute_opened,
    DisputeResolved: DunningWorkflow.dispute_resolved,
    PauseRequest: DunningWorkflow.pause,
    ResumeRequest: DunningWorkflow.resume,
    CancelRequest: DunningWorkflow.cancel,
    PromiseToPay: DunningWorkflow.promise_passed_on,
}
"""The signal that carries each payload. Billers, the starter and the simulator send by
payload type, so a signal's name is written once: as its handler's."""


def signal_name(payload_type: type) -> str:
    """The name of the signal that carries `payload_type`, e.g. ``payment_received``."""
    return SIGNALS[payload_type].__name__
