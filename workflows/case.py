"""The state of one dunning case and the pure rules that fold events into it.

Every change takes `now` from the caller (the workflow passes `workflow.now()`), so the same
events replay to the same state. An event that makes no sense in the current state (resume
when not paused, a payment after the case ended) is written to the timeline as ignored and
changes nothing else: a confused caller never crashes a case.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import AwareDatetime, BaseModel, Field, field_serializer, field_validator

from workflows.arrangements import quote
from workflows.conversation import ConversationReply
from workflows.message_timing import MessagePlan
from workflows.models import (
    AttemptView,
    CallNoted,
    CallTaskCreated,
    CancelRequest,
    CaseInput,
    CaseRecord,
    CaseResult,
    CaseStatus,
    CaseView,
    ChargeResult,
    Delivery,
    DeliveryStatus,
    DisputeOpened,
    DisputeResolved,
    FeedbackGiven,
    Installment,
    MessageView,
    PauseRequest,
    PaymentFailed,
    PaymentMethodUpdated,
    PaymentReceived,
    PayNow,
    PlanChosen,
    PlanQuote,
    PolicyRef,
    PromiseToPay,
    ResumeRequest,
    RetryRequest,
    TimelineEntry,
)
from workflows.policy import DeclineClass, DeclineCodes, Outcome, PlanOffer, Policy, Tone
from workflows.policy_versions import POLICY_VERSIONS
from workflows.smart_retry import PlanFacts, RetryPlan

DECLINE_FIELDS = frozenset(DeclineCodes.model_fields)
"""The codes a decline carries, looked up once (pydantic builds `model_fields` per access)."""


class CaseState(BaseModel):
    """What the workflow remembers about a case: ids, amounts and facts, never contact data."""

    case: CaseInput
    policy: Policy
    opened_at: AwareDatetime
    amount_due: int
    amount_recovered: int = 0
    paid_outside_biller: bool = False
    payment_method: str | None = None
    time_zones: list[str] = Field(
        default_factory=list, description="Where the customer may be; contact hours hold in all."
    )
    attempts: list[AttemptView] = Field(default_factory=list)
    planned_retries: list[timedelta] | None = Field(
        default=None,
        description="This case's own retry offsets from the failure (smart timing); None "
        "follows the policy's. Added to the schedule origin, so holding moves them too.",
    )
    scheduled_retries_done: int = 0
    retry_model_version: int | None = Field(
        default=None, description="The retry model that first planned the case: kept for life."
    )
    next_retry_propensity: float | None = Field(
        default=None, description="The chance the next planned retry's time had of being chosen."
    )
    plan_outdated: bool = Field(
        default=False,
        description="Smart timing: a scheduled retry was declined since the last plan, so the "
        "rest of the retries are planned again with what the decline taught.",
    )
    last_charge_at: AwareDatetime | None = None
    network_hold_until: AwareDatetime | None = Field(
        default=None,
        description="The card's network cap, reached over all of the customer's cases, allows "
        "no charge of it before this.",
    )
    awaiting: DeclineClass | None = None
    method_updated_at: AwareDatetime | None = None
    reminders_done: list[int] = Field(default_factory=list)
    message_plan: MessagePlan | None = Field(
        default=None,
        description="Learned message timing: the send hour and channels the case's reminders "
        "follow, chosen when it opened and kept for life; None sends them as written.",
    )
    conversation: bool = Field(
        default=False,
        description="The case hands its reminders to its customer's conversation.",
    )
    promise_to_share: PromiseToPay | None = Field(
        default=None,
        description="A promise made on this case, for the conversation to pass on to the "
        "customer's other open cases.",
    )
    final_notice_offset: timedelta | None = Field(
        default=None, description="How far into the schedule the final notice went out."
    )
    messages: list[MessageView] = Field(default_factory=list)
    pause: PauseRequest | None = None
    dispute_reason: str | None = None
    blocked: str | None = Field(
        default=None, description="Why the case waits for an operator (a gateway config error)."
    )
    quiet_unless_messaged: bool = Field(
        default=True,
        description="No outcome message to a customer dunning never wrote to (cases started "
        "before this rule keep sending one).",
    )
    promise: PromiseToPay | None = Field(
        default=None, description="The customer's promise to pay on a date; holds the clock."
    )
    plan: list[Installment] = Field(
        default_factory=list, description="The payment plan the customer chose; holds the clock."
    )
    plan_offer: PlanOffer | None = None
    installment_declines: int = Field(default=0, description="Of the installment due now.")
    payment_references: list[str] = Field(
        default_factory=list,
        description="References of payments received: the biller's report of one of our own "
        "charges (an installment) must not count twice, whichever arrives first.",
    )
    payment_requested_at: AwareDatetime | None = Field(
        default=None, description="The customer asked to pay now on the recovery page."
    )
    confirmation: str | None = Field(
        default=None,
        description="The step of a plan's or promise's confirmation message not yet sent.",
    )
    calls_made: list[int] = Field(
        default_factory=list,
        description="The policy's call steps whose task was created: a replay never makes two.",
    )
    held_since: AwareDatetime | None = None
    time_held: timedelta = timedelta(0)
    outcome: Outcome | None = None
    outcome_reason: str = ""
    closed_at: AwareDatetime | None = None
    timeline: list[TimelineEntry] = Field(default_factory=list)
    late_fee: int | None = Field(
        default=None,
        description="The late fee added for the customer's next invoice (minor units).",
    )
    late_fee_done: bool = Field(
        default=False, description="The policy's late fee was added, or could not be: never again."
    )
    publishes_events: bool = Field(
        default=False,
        description="Tells the product of its events (outbound webhooks); cases started before "
        "them publish none.",
    )
    events_published: list[str] = Field(
        default_factory=list,
        description="Ids of the outbound events already published: none goes out twice.",
    )

    @field_serializer("policy")
    def _pin_policy(self, policy: Policy) -> dict:
        """A case pinned by hash carries only its `PolicyRef` into a continued run; one opened
        before pinning carries its policy, as it always did."""
        case = self.case
        if case.policy_hash is None:
            return policy.model_dump(mode="json")
        return {"name": case.policy_name, "version": case.policy_version, "hash": case.policy_hash}

    @field_validator("policy", mode="before")
    @classmethod
    def _resolve_policy(cls, value: object) -> object:
        """A `PolicyRef` (what `_pin_policy` wrote) reads its version from the registry."""
        if isinstance(value, dict) and value.get("hash") is not None:
            return POLICY_VERSIONS.get(PolicyRef.model_validate(value))
        return value

    @classmethod
    def open(cls, case: CaseInput, policy: Policy, now: datetime) -> CaseState:
        """A new case; a hard decline at the start means no retry until a new card arrives."""
        state = cls(
            case=case,
            policy=policy,
            opened_at=now,
            amount_due=case.amount_due,
            payment_method=case.payment_method,
        )
        state.note(
            now, "opened", detail=f"{policy.label}; payment failed: {_describe(case.failure)}"
        )
        state._classify(case.failure, now)
        return state

    # Derived facts -------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """True once the case has an outcome; no charge or reminder follows."""
        return self.outcome is not None

    @property
    def status(self) -> CaseStatus:
        """The one word operators filter on (search attribute `DunningStatus`)."""
        if self.outcome is not None:
            return CaseStatus(self.outcome.value)
        if self.blocked is not None:
            return CaseStatus.BLOCKED
        if self.dispute_reason is not None:
            return CaseStatus.DISPUTED
        if self.pause is not None:
            return CaseStatus.PAUSED
        if self.awaiting is DeclineClass.NEVER_RETRY:
            return CaseStatus.AWAITING_PAYMENT_METHOD
        if self.awaiting is DeclineClass.NEEDS_CUSTOMER_ACTION:
            return CaseStatus.AWAITING_CUSTOMER_ACTION
        return CaseStatus.ACTIVE

    def figures(self) -> dict:
        """The fields every projection of the case shares (`CaseFigures`)."""
        return {
            "case_id": self.case.case_id,
            "invoice_id": self.case.invoice_id,
            "amount_due": self.amount_due,
            "amount_recovered": self.amount_recovered,
            "currency": self.case.currency,
        }

    def record(self, entries: list[TimelineEntry]) -> CaseRecord:
        """The case row for the store, with `entries` as the audit lines to add."""
        case = self.case
        return CaseRecord(
            **self.figures(),
            customer_id=case.customer_id,
            subscription_id=case.subscription_id,
            segment=case.segment,
            variant=case.variant,
            decline_code=case.failure.decline_code,
            decline_class=self.policy.declines.classify(case.failure),
            status=self.status,
            policy=self.policy.name,
            policy_version=self.policy.version,
            opened_at=self.opened_at,
            closed_at=self.closed_at,
            entries=entries,
            failed_at=case.failure.failed_at,
            late_fee=self.late_fee,
        )

    def view(
        self, next_step: str, next_action_at: datetime | None, details: str, now: datetime
    ) -> CaseView:
        """Where the case stands for operators and the recovery page, with what `decide`
        says comes next and what the customer may arrange at `now`."""
        pause = self.pause
        return CaseView(
            **self.figures(),
            customer_id=self.case.customer_id,
            status=self.status,
            policy=self.policy.label,
            next_step=next_step,
            next_action_at=next_action_at,
            details=details,
            attempts=self.attempts,
            messages=self.messages,
            paused_by=pause.actor if pause else None,
            pause_reason=pause.reason if pause else None,
            paused_until=pause.until if pause else None,
            dispute_reason=self.dispute_reason,
            blocked_reason=self.blocked,
            plan_offers=self.plan_quotes(now),
            promise_by=self.promise_by(now),
            promised_for=self.promise.pay_on if self.promise else None,
            plan=self.plan,
            timeline=self.timeline,
            retry_model_version=self.retry_model_version,
            retry_plan=self.latest_retry_plan,
            message_plan=self.message_plan.reason if self.message_plan else None,
        )

    @property
    def latest_retry_plan(self) -> str | None:
        """Who chose the case's retry times and why (its latest `retry_plan` line); None for
        a case on the fixed schedule."""
        return next((e.detail for e in reversed(self.timeline) if e.kind == "retry_plan"), None)

    def result(self, now: datetime) -> CaseResult:
        """How a concluded case ended: its figures and the last 50 timeline lines."""
        if self.outcome is None:
            raise ValueError("the case has not concluded")
        return CaseResult(
            **self.figures(),
            outcome=self.outcome,
            reason=self.outcome_reason,
            charge_attempts=len(self.attempts),
            messages_sent=self.messages_sent,
            opened_at=self.opened_at,
            closed_at=self.closed_at or now,
            timeline=self.timeline[-50:],
        )

    @property
    def schedule_origin(self) -> datetime:
        """Where the schedule starts, moved on by the time the case was held: holding stops
        the clock."""
        return (self.case.schedule_from or self.case.failure.failed_at) + self.time_held

    @property
    def card_brand(self) -> str | None:
        """The brand of the card the case charges: as its charges of it said, else as the
        failure said of the card the case opened with."""
        on_card = [a for a in self.attempts if a.payment_method == self.payment_method]
        same_card = self.payment_method == self.case.payment_method
        opened_with = self.case.failure.card_brand if same_card else None
        return next((a.card_brand for a in reversed(on_card) if a.card_brand), opened_with)

    @property
    def messages_sent(self) -> int:
        """Deliveries that actually went out, across steps and channels."""
        return sum(d.status is DeliveryStatus.SENT for m in self.messages for d in m.deliveries)

    @property
    def retry_offsets(self) -> list[timedelta]:
        """The scheduled retries as offsets from the failure: the case's plan, else the
        policy's fixed schedule."""
        if self.planned_retries is not None:
            return self.planned_retries
        return self.policy.retries

    def plan_facts(self, now: datetime) -> PlanFacts:
        """What smart retry timing plans the case's remaining retries from (no contact data):
        the latest decline of the case's card, and how many charges and declines so far."""
        failure = self.case.failure
        card_charges = [a for a in self.attempts if a.payment_method == self.payment_method]
        latest: DeclineCodes = card_charges[-1] if card_charges else failure
        codes = latest.model_dump(include=DECLINE_FIELDS)
        codes["card_brand"] = codes["card_brand"] or failure.card_brand
        pinned = self.retry_model_version
        return PlanFacts(
            **codes,
            decline_class=self.policy.declines.classify(latest),
            case_id=self.case.case_id,
            # Plan offsets are added to the schedule's origin, so they are planned from it.
            failed_at=self.schedule_origin,
            amount=self.amount_due,
            currency=self.case.currency,
            time_zones=self.time_zones,
            opened_at=self.opened_at,
            planned_at=now,
            attempt=self.scheduled_retries_done + 1,
            declines=1 + sum(not a.approved for a in card_charges),
            last_charge_at=self.last_charge_at,
            retries_done=self.scheduled_retries_done,
            model_version=pinned,
        )

    # Charges and messages ------------------------------------------------------------------

    def follow_plan(self, plan: RetryPlan, now: datetime) -> None:
        """Retry at the plan's times from now on (the retries already made stay as they
        were), pin the model that chose them, and say in the timeline who chose them."""
        done = self.retry_offsets[: self.scheduled_retries_done]
        self.planned_retries = [*done, *plan.offsets]
        if self.retry_model_version is None:
            self.retry_model_version = plan.model_version
        self.next_retry_propensity = plan.propensity
        self.plan_outdated = False
        times = ", ".join(f"{self.schedule_origin + o:%Y-%m-%d %H:%M}" for o in plan.offsets)
        detail = f"{plan.reason}; retries at {times} UTC" if times else plan.reason
        self.note(now, "retry_plan", detail=detail)

    def record_late_fee(self, amount: int | None, detail: str, now: datetime) -> None:
        """The policy's late fee was added (`amount`), or could not be (None, `detail` says
        why): either way the case never tries again."""
        self.late_fee_done = True
        if amount is None:
            self.note(now, "late_fee_failed", detail=detail)
            return
        self.late_fee = amount
        self.note(now, "late_fee", detail=f"{amount} {self.case.currency}: {detail}".rstrip(": "))

    def follow_message_plan(self, plan: MessagePlan, now: datetime) -> None:
        """Send the reminders as `plan` says from now on, and say in the timeline why."""
        self.message_plan = plan
        self.note(now, "message_plan", detail=plan.reason)

    def record_attempt(
        self,
        attempt: int,
        scheduled: bool,
        result: ChargeResult,
        now: datetime,
        method_updated_at: datetime | None = None,
    ) -> None:
        """Fold one charge result in: approved recovers the case, a decline is classified.

        A charge of a new payment method answers the update made at `method_updated_at`; a
        newer update that arrived while it ran still gets its own charge."""
        self._append_attempt(attempt, result, now)
        if scheduled:
            self.scheduled_retries_done += 1
        elif self.method_updated_at == method_updated_at:
            self.method_updated_at = None
        self.plan_outdated = self.plan_outdated or self._replans_after(result)
        if self._recovered_by(attempt, result, now, f"charge attempt {attempt} approved"):
            return
        self.note(now, "charge_declined", detail=f"attempt {attempt}: {_describe(result)}")
        self._classify(result, now)

    def record_installment(
        self, attempt: int, number: int, result: ChargeResult, now: datetime
    ) -> None:
        """Fold an installment's charge in: paid lowers what is due (the last one recovers the
        case); a hard decline, or a soft one past the plan's retries, ends the plan and dunning
        resumes for what is left."""
        self._append_attempt(attempt, result, now)
        self.method_updated_at = None
        if self.finished:
            self.note(now, "charge_after_outcome", detail=f"installment {number} ({attempt})")
            return
        installment = self.plan[number - 1]
        label = f"installment {number} of {len(self.plan)}"
        if result.approved:
            # The biller may have reported this very payment already (it counted then).
            counted = result.reference is not None and result.reference in self.payment_references
            paid = min(self.installment_amount(installment), self.amount_due)
            installment.paid = True
            self.installment_declines = 0
            if not counted:
                self.amount_due -= paid
                self.amount_recovered += paid
            reported = " (the biller reported it first)" if counted else ""
            self.note(now, "installment_paid", detail=f"{label}: {paid}{reported}")
            if self.amount_due == 0:
                self._finish(Outcome.RECOVERED, f"payment plan complete ({label})", now)
            return
        self.installment_declines += 1
        self.note(now, "installment_declined", detail=f"{label}: {_describe(result)}")
        retries = self.plan_offer.retries if self.plan_offer else []
        soft = self.policy.declines.classify(result) is DeclineClass.RETRY_LATER
        if not soft or self.installment_declines > len(retries):
            self._end_arrangement(now, "plan_ended", f"{label} could not be charged")
            self._classify(result, now)

    def record_promised_charge(self, attempt: int, result: ChargeResult, now: datetime) -> None:
        """Fold the charge on the promised date in: approved recovers the case, a decline
        ends the promise and dunning resumes where it stopped."""
        self._append_attempt(attempt, result, now)
        if self._recovered_by(attempt, result, now, "paid on the promised date") or self.finished:
            return
        self._end_arrangement(now, "promise_broken", f"attempt {attempt}: {_describe(result)}")
        self._classify(result, now)

    def hold_for_network(self, until: datetime, reason: str, now: datetime) -> None:
        """The charge was not made: the card's network cap is reached across the customer's
        cases. The attempt is not spent; the case charges once the network allows."""
        self.network_hold_until = until
        self.payment_requested_at = None  # the customer's "pay now" is answered: not now
        self.note(now, "network_hold", detail=f"until {until:%Y-%m-%d %H:%M} UTC: {reason}")

    def record_charge_error(self, attempt: int, message: str, now: datetime) -> None:
        """The gateway could not be reached for good: try the same attempt (same key) later.
        A customer's request to pay now has had its answer (they may ask again)."""
        self.last_charge_at = now
        self.payment_requested_at = None
        self.note(now, "charge_error", detail=f"attempt {attempt}: {message}"[:300])

    def block(self, reason: str, now: datetime) -> None:
        """The gateway refused for a reason retrying cannot fix (a bad key, an unknown
        invoice, a wrong API base): hold the case, clock stopped, until an operator retries.
        Never a reason to go on to collections."""
        if self.finished:
            return
        self.blocked = reason[:300]
        self.payment_requested_at = None
        self._hold(now)
        self.note(now, "blocked", detail=self.blocked)

    def retry(self, request: RetryRequest, now: datetime) -> None:
        """An operator fixed the configuration: the held attempt is charged again now."""
        refusal = self.refuse_retry()
        if refusal is not None:
            self.note(now, "ignored", request.actor, f"retry: {refusal}")
            return
        self.blocked = None
        self._release(now)
        self.note(now, "retry", request.actor)

    def record_message(
        self, step: str, template: str, deliveries: list[Delivery], now: datetime
    ) -> None:
        """Remember a message step so it is never sent again."""
        self.messages.append(
            MessageView(step=step, at=now, template=template, deliveries=deliveries)
        )
        if step == self.confirmation:
            self.confirmation = None
        summary = ", ".join(f"{d.channel}: {d.status}" for d in deliveries)
        self.note(now, "message", detail=f"{step} ({template}) {summary}")

    def mark_reminders_done(self, indexes: list[int], tone: Tone | None, now: datetime) -> None:
        """Reminders sent or passed over; the final notice's time moves the collections date."""
        self.reminders_done.extend(i for i in indexes if i not in self.reminders_done)
        if tone is Tone.FINAL and self.final_notice_offset is None:
            # Schedule time, not wall time: a later pause must still move collections on.
            self.final_notice_offset = now - self.schedule_origin

    def hand_over(self, step: str, covers: list[int], tone: Tone, now: datetime) -> None:
        """A reminder went to the customer's conversation, which sends it (merged with the
        customer's other cases' reminders) or says why not; the case does not send it again."""
        self.mark_reminders_done(covers, tone, now)
        self.note(now, "reminder_handed_over", detail=f"{step} to the customer's conversation")

    def hear_conversation(self, reply: ConversationReply, now: datetime) -> None:
        """What became of a reminder handed over. A final notice sent later than handed over
        (the budget was spent) moves the collections date on by as much."""
        self.messages.append(
            MessageView(
                step=reply.step, at=reply.at, template=reply.template, deliveries=reply.deliveries
            )
        )
        summary = ", ".join(f"{d.channel}: {d.status}" for d in reply.deliveries)
        detail = "; ".join(part for part in (summary, reply.detail) if part)
        self.note(now, "message", detail=f"{reply.step} ({reply.template}) {detail}".strip())
        sent_late = reply.at - self.schedule_origin
        if reply.tone is Tone.FINAL and self.final_notice_offset is not None and reply.deliveries:
            self.final_notice_offset = max(self.final_notice_offset, sent_late)

    def _replans_after(self, result: ChargeResult) -> bool:
        """Smart timing plans the rest again after a soft decline, of the old card or a new
        one, while retries are left in the budget. A hard decline keeps the plan: the case
        waits for a new card, and retries only if that card too declines softly."""
        smart = self.policy.retry_timing == "smart" and self.planned_retries is not None
        soft = self.policy.declines.classify(result) is DeclineClass.RETRY_LATER
        left = self.scheduled_retries_done < len(self.policy.retries)
        return smart and not result.approved and soft and left

    def _classify(self, codes: DeclineCodes, now: datetime) -> None:
        decline_class = self.policy.declines.classify(codes)
        awaiting = None if decline_class is DeclineClass.RETRY_LATER else decline_class
        if awaiting is not None and awaiting is not self.awaiting:
            self.note(now, "awaiting_customer", detail=f"{_describe(codes)}: {decline_class}")
        self.awaiting = awaiting

    # Signals -------------------------------------------------------------------------------

    def receive_payment(self, payment: PaymentReceived, now: datetime) -> None:
        """A payment made elsewhere; a partial one lowers what is due and the case goes on."""
        if self._ignored_when_finished("payment_received", payment.actor, now):
            return
        if payment.reference and payment.reference in self._charged_references():
            self.note(now, "ignored", payment.actor, f"payment {payment.reference}: our own charge")
            return
        if payment.reference:
            self.payment_references.append(payment.reference)
        paid = min(payment.amount, self.amount_due)
        self.amount_due -= paid
        self.amount_recovered += paid
        ref = f" ref {payment.reference}" if payment.reference else ""
        self.note(now, "payment_received", payment.actor, f"{payment.amount}{ref}")
        if self.amount_due == 0:
            self.paid_outside_biller = not payment.paid_at_biller
            self._finish(Outcome.RECOVERED, f"payment received{ref}", now)

    def record_failure(self, failure: PaymentFailed, now: datetime) -> None:
        """Another failed payment reported by the biller: a hard one stops the retries."""
        if self._ignored_when_finished("payment_failed", failure.actor, now):
            return
        codes = DECLINE_FIELDS
        if not self.attempts and failure.model_dump(include=codes) == self.case.failure.model_dump(
            include=codes
        ):
            return  # the failure that opened the case, delivered with its start
        self.note(now, "payment_failed", failure.actor, _describe(failure))
        self._classify(failure, now)

    def update_payment_method(self, update: PaymentMethodUpdated, now: datetime) -> None:
        """A new payment method: charge it soon, even after a hard decline."""
        if self._ignored_when_finished("payment_method_updated", update.actor, now):
            return
        if update.payment_method:
            self.payment_method = update.payment_method
        self.method_updated_at = now
        self.note(now, "payment_method_updated", update.actor, update.payment_method or "")

    # The customer's choices on the recovery page ---------------------------------------------

    def plan_quotes(self, now: datetime) -> list[PlanQuote]:
        """The payment plans the customer may choose now (none once one runs or the case is
        held or finished)."""
        if self.refuse_arrangement() is not None:
            return []
        quotes = (quote(offer, self.amount_due, now) for offer in self.policy.payment_plans)
        return [q for q in quotes if q is not None]

    def promise_by(self, now: datetime) -> datetime | None:
        """The latest moment the customer may promise to pay, or None when they may not."""
        if self.policy.promise_within is None or self.refuse_arrangement() is not None:
            return None
        return now + self.policy.promise_within

    def refuse_arrangement(self) -> str | None:
        """Why the customer cannot arrange a plan or a promise now, or None."""
        if self.finished:
            return self.refuse_when_finished()
        if self.plan:
            return "a payment plan is already running"
        if self.promise is not None:
            return f"a payment is already promised for {self.promise.pay_on:%Y-%m-%d}"
        if self.dispute_reason is not None or self.blocked is not None:
            return "the case is on hold; please contact support"
        return None

    def refuse_plan(self, chosen: PlanChosen, now: datetime) -> str | None:
        """Why this plan cannot start now, or None."""
        offered = [len(q.installments) for q in self.plan_quotes(now)]
        if chosen.installments not in offered:
            return self.refuse_arrangement() or (
                f"no plan of {chosen.installments} installments is offered for this invoice"
            )
        return None

    def refuse_promise(self, promise: PromiseToPay, now: datetime) -> str | None:
        """Why this promise cannot be taken, or None."""
        latest = self.promise_by(now)
        if latest is None:
            return self.refuse_arrangement() or "this invoice offers no promise to pay"
        if not now < promise.pay_on <= latest:
            return f"the date must be after today and no later than {latest:%Y-%m-%d}"
        return None

    def choose_plan(self, chosen: PlanChosen, now: datetime) -> None:
        """Start a payment plan: reminders and retries stop while it runs (the clock is held),
        and each installment is charged on its date."""
        refusal = self.refuse_plan(chosen, now)
        if refusal is not None:
            self.note(now, "ignored", chosen.actor, f"plan: {refusal}")
            return
        offer = next(o for o in self.policy.payment_plans if o.installments == chosen.installments)
        self.plan = quote(offer, self.amount_due, now).installments
        self.plan_offer = offer
        self.installment_declines = 0
        self._hold(now)
        amounts = ", ".join(str(i.amount) for i in self.plan)
        self.note(now, "plan_chosen", chosen.actor, f"{len(self.plan)} installments: {amounts}")
        self.confirmation = f"plan-{len(self.timeline)}"

    def make_promise(self, promise: PromiseToPay, now: datetime) -> None:
        """The customer will pay on a date: nothing is sent or charged until then."""
        refusal = self.refuse_promise(promise, now)
        if refusal is not None:
            self.note(now, "ignored", promise.actor, f"promise: {refusal}")
            return
        self.promise = promise
        self._hold(now)
        made_on = f" (made on {promise.shared_from})" if promise.shared_from else ""
        detail = f"pay on {promise.pay_on:%Y-%m-%d %H:%M} UTC{made_on}"
        self.note(now, "promise_made", promise.actor, detail)
        if promise.shared_from is None:
            self.confirmation = f"promise-{len(self.timeline)}"
            if self.conversation:  # the customer means every open invoice of theirs
                self.promise_to_share = promise

    def refuse_pay_now(self) -> str | None:
        """Why the case cannot charge the customer now at their request, or None."""
        if self.finished:
            return self.refuse_when_finished()
        if self.dispute_reason is not None or self.blocked is not None:
            return "the case is on hold; please contact support"
        return None

    def request_payment(self, request: PayNow, now: datetime) -> None:
        """The customer pays now: the next step charges all that is due, whatever the case
        was waiting for (a pause, a plan's next installment, a promised date)."""
        refusal = self.refuse_pay_now()
        if refusal is not None:
            self.note(now, "ignored", request.actor, f"pay now: {refusal}")
            return
        self.payment_requested_at = now
        self.note(now, "pay_now", request.actor)

    def record_requested_charge(self, attempt: int, result: ChargeResult, now: datetime) -> None:
        """Fold the charge the customer asked for in: approved recovers the case, a decline
        is classified and the case goes on as it was."""
        self.payment_requested_at = None
        self._append_attempt(attempt, result, now)
        reason = "paid by the customer on the recovery page"
        if self._recovered_by(attempt, result, now, reason) or self.finished:
            return
        self.note(now, "charge_declined", detail=f"attempt {attempt}: {_describe(result)}")
        self._classify(result, now)

    def record_call_task(
        self, step: str, covers: list[int], task: CallTaskCreated | None, now: datetime
    ) -> None:
        """The task for call step `step` exists (None: none was made, in a case from before
        call tasks or a simulation): the call steps it covers are settled."""
        self.calls_made.extend(covers)
        if task is None:
            self.note(now, "call_task", detail=f"{step}: no task made")
            return
        when = f"{task.call_after:%Y-%m-%d %H:%M} UTC"
        self.note(now, "call_task", detail=f"{step}: task {task.task_id}, best time {when}")

    def note_call(self, noted: CallNoted, now: datetime) -> None:
        """An agent's call and how it went (its note stays in the store)."""
        if self._ignored_when_finished("call", noted.actor, now):
            return
        detail = f"{noted.step} attempt {noted.attempt}: {noted.outcome}"
        self.note(now, "call", noted.actor, detail)

    def record_feedback(self, feedback: FeedbackGiven, now: datetime) -> None:
        """Why the customer has not paid (the reason only; their words stay in the store)."""
        self.note(now, "feedback", feedback.actor, feedback.reason.value)

    def next_installment(self) -> Installment | None:
        """The plan's first unpaid installment."""
        return next((i for i in self.plan if not i.paid), None)

    def installment_amount(self, installment: Installment) -> int:
        """What an installment charges: its share, or all that is left for the last one
        (a partial payment from elsewhere makes the last ones smaller)."""
        last = installment.number == len(self.plan)
        return self.amount_due if last else min(installment.amount, self.amount_due)

    def open_dispute(self, dispute: DisputeOpened, now: datetime) -> None:
        """Stop charging and messaging while the customer disputes a charge."""
        if self._ignored_when_finished("dispute_opened", dispute.actor, now):
            return
        if self.dispute_reason is not None:
            self.note(now, "ignored", dispute.actor, "dispute_opened: a dispute is already open")
            return
        self.dispute_reason = dispute.reason or "dispute opened"
        self._hold(now)
        self.note(now, "dispute_opened", dispute.actor, dispute.reason)

    def resolve_dispute(self, resolution: DisputeResolved, now: datetime) -> None:
        """Won: the case goes on where it stopped. Lost: the case is cancelled."""
        if self._ignored_when_finished("dispute_resolved", resolution.actor, now):
            return
        if self.dispute_reason is None:
            self.note(now, "ignored", resolution.actor, "dispute_resolved: no dispute is open")
            return
        self.dispute_reason = None
        self._release(now)
        verdict = "won" if resolution.won else "lost"
        self.note(now, "dispute_resolved", resolution.actor, verdict)
        if not resolution.won:
            self._finish(Outcome.CANCELLED, "dispute lost", now)

    def refuse_pause(self) -> str | None:
        """Why a pause makes no sense now, or None when it does."""
        if self.finished:
            return self.refuse_when_finished()
        if self.pause is not None:
            return f"case {self.case.case_id} is already paused by {self.pause.actor}"
        return None

    def refuse_resume(self) -> str | None:
        """Why a resume makes no sense now, or None when it does."""
        if self.finished:
            return self.refuse_when_finished()
        if self.pause is None:
            return f"case {self.case.case_id} is not paused"
        return None

    def refuse_retry(self) -> str | None:
        """Why an operator's retry makes no sense now, or None when the case is blocked."""
        if self.finished:
            return self.refuse_when_finished()
        if self.blocked is None:
            return f"case {self.case.case_id} is not blocked"
        return None

    def refuse_when_finished(self) -> str | None:
        """Why nothing more can happen to the case (it has finished), or None while it runs.
        The refusal of a payment, a new payment method and a cancel: the cases in which
        `receive_payment`, `update_payment_method` and `cancel` ignore them."""
        if self.finished:
            return f"case {self.case.case_id} is already {self.status}"
        return None

    def refuse_dispute(self) -> str | None:
        """Why opening a dispute makes no sense now (`open_dispute` would ignore it), or None."""
        if self.finished:
            return self.refuse_when_finished()
        if self.dispute_reason is not None:
            return f"case {self.case.case_id} is already disputed"
        return None

    def refuse_dispute_resolution(self) -> str | None:
        """Why resolving a dispute makes no sense now (`resolve_dispute` would ignore it), or
        None."""
        if self.finished:
            return self.refuse_when_finished()
        if self.dispute_reason is None:
            return f"case {self.case.case_id} has no open dispute"
        return None

    def hold(self, request: PauseRequest, now: datetime) -> None:
        """Pause: no charge and no message until resumed or until `request.until`."""
        refusal = self.refuse_pause()
        if refusal is not None:
            self.note(now, "ignored", request.actor, f"pause: {refusal}")
            return
        if request.until is not None and request.until <= now:
            self.note(now, "ignored", request.actor, "pause: `until` is already past")
            return
        self.pause = request
        self._hold(now)
        until = f" until {request.until:%Y-%m-%d %H:%M} UTC" if request.until else ""
        self.note(now, "paused", request.actor, f"{request.reason}{until}")

    def release(self, request: ResumeRequest, now: datetime) -> None:
        """Resume a paused case; the schedule moves on by the time it was paused."""
        refusal = self.refuse_resume()
        if refusal is not None:
            self.note(now, "ignored", request.actor, f"resume: {refusal}")
            return
        self.pause = None
        self._release(now)
        self.note(now, "resumed", request.actor)

    def expire_pause(self, now: datetime) -> None:
        """Resume by itself once a pause's `until` has come."""
        if self.pause is not None and self.pause.until is not None and self.pause.until <= now:
            self.release(ResumeRequest(actor="dunning"), now)

    def cancel(self, request: CancelRequest, now: datetime) -> None:
        """Stop dunning for good."""
        if self._ignored_when_finished("cancel", request.actor, now):
            return
        self.note(now, "cancel", request.actor, request.reason)
        self._finish(Outcome.CANCELLED, request.reason, now)

    def conclude(self, outcome: Outcome, reason: str, now: datetime) -> None:
        """End the case with an outcome the schedule reached (e.g. collections)."""
        if not self.finished:
            self._finish(outcome, reason, now)

    def mark_published(self, event_id: str) -> None:
        """Remember an outbound event as published, so it is never published again."""
        if event_id not in self.events_published:
            self.events_published.append(event_id)

    # Helpers -------------------------------------------------------------------------------

    def note(self, now: datetime, kind: str, actor: str = "dunning", detail: str = "") -> None:
        """Append one line to the audit timeline."""
        self.timeline.append(
            TimelineEntry(seq=len(self.timeline) + 1, at=now, kind=kind, actor=actor, detail=detail)
        )

    def _ignored_when_finished(self, kind: str, actor: str, now: datetime) -> bool:
        if self.finished:
            self.note(now, "ignored", actor, f"{kind}: case is already {self.status}")
        return self.finished

    def _hold(self, now: datetime) -> None:
        if self.held_since is None:
            self.held_since = now

    def _recovered_by(self, attempt: int, result: ChargeResult, now: datetime, reason: str) -> bool:
        """An approved charge of all that is due recovers the case; one that ran while the case
        ended (paid on the invoice page) is kept as a fact. True when the charge was approved."""
        if not result.approved:
            return False
        if self.finished:
            self.note(now, "charge_after_outcome", detail=f"attempt {attempt} approved")
            return True
        self.amount_recovered += self.amount_due
        self.amount_due = 0
        self._finish(Outcome.RECOVERED, reason, now)
        return True

    def _charged_references(self) -> set[str]:
        return {a.reference for a in self.attempts if a.approved and a.reference}

    def _append_attempt(self, attempt: int, result: ChargeResult, now: datetime) -> None:
        decline_class = None if result.approved else self.policy.declines.classify(result)
        self.attempts.append(
            AttemptView(
                attempt=attempt,
                at=now,
                approved=result.approved,
                payment_method=result.payment_method or self.payment_method,
                decline_class=decline_class,
                reference=result.reference,
                **result.model_dump(include=DECLINE_FIELDS),
            )
        )
        self.last_charge_at = now

    def _end_arrangement(self, now: datetime, kind: str, detail: str) -> None:
        """A plan or promise that did not pay: dunning resumes for what is left."""
        self.plan, self.plan_offer, self.promise, self.confirmation = [], None, None, None
        self.installment_declines = 0
        self._release(now)
        self.note(now, kind, detail=detail)

    def _release(self, now: datetime) -> None:
        held = self.pause or self.dispute_reason or self.blocked or self.plan or self.promise
        if self.held_since is not None and not held:
            self.time_held += now - self.held_since
            self.held_since = None

    def _finish(self, outcome: Outcome, reason: str, now: datetime) -> None:
        self.outcome = outcome
        self.outcome_reason = reason
        self.closed_at = now
        self.note(now, outcome.value, detail=reason)


def _describe(codes: DeclineCodes) -> str:
    """The decline code, with the network's codes when there are any: ``do_not_honor
    (visa 05)``."""
    network = " ".join(
        c for c in (codes.network_decline_code, codes.network_advice_code) if c is not None
    )
    brand = f"{codes.card_brand} " if codes.card_brand else ""
    suffix = f" ({brand}{network})" if network else ""
    advice = f", advice {codes.advice_code}" if codes.advice_code else ""
    return f"{codes.decline_code or 'unknown'}{advice}{suffix}"


class CaseRun(CaseInput):
    """What one run of a case starts from: the case, and, when a long payment plan continued
    as new, the state the previous run left. A first run's input is a plain `CaseInput`, so
    every history recorded before this type existed still decodes."""

    carried: CaseState | None = None
