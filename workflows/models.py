"""Typed payloads crossing the workflow boundary: inputs, signals, activity calls, results.

Only ids, amounts and codes travel here: names, email addresses and phone numbers stay in
the store and are looked up by activities, so no workflow history ever holds them.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from workflows.contact_hours import ContactHours
from workflows.policy import (
    Channel,
    DeclineClass,
    DeclineCodes,
    NetworkRules,
    Outcome,
    Tone,
    WriteBackAction,
)
from workflows.smart_retry import PlanFacts, RetryPlan
from workflows.values import MinorAmount

ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,100}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CaseStatus(StrEnum):
    """Where a case stands; finished cases carry their outcome as status."""

    ACTIVE = "active"
    AWAITING_PAYMENT_METHOD = "awaiting_payment_method"
    AWAITING_CUSTOMER_ACTION = "awaiting_customer_action"
    PAUSED = "paused"
    DISPUTED = "disputed"
    BLOCKED = "blocked"
    """Held for an operator: the gateway refused for a reason retrying cannot fix."""
    RECOVERED = "recovered"
    CANCELLED = "cancelled"
    COLLECTIONS = "collections"


class Failure(DeclineCodes):
    """The failed payment that opened the case."""

    failed_at: AwareDatetime


class CaseInput(_Model):
    """Everything a case needs to start. Fields may be added; never removed or renamed."""

    case_id: str = Field(pattern=ID_PATTERN)
    invoice_id: str = Field(pattern=ID_PATTERN)
    customer_id: str = Field(pattern=ID_PATTERN)
    amount_due: int = Field(gt=0, description="In the currency's minor units (cents, yen).")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO-4217 code.")
    failure: Failure
    schedule_from: AwareDatetime | None = Field(
        default=None,
        description="Where the schedule starts: when the case opened, or the failure if later. "
        "Unset in cases started before it existed: their schedule starts at the failure.",
    )
    policy_name: str = "standard"
    policy_version: int = Field(ge=1)
    policy_hash: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="The pinned version's content hash; unset in cases opened before "
        "policies were pinned by hash (they loaded their policy into their history).",
    )
    payment_method: str | None = Field(default=None, pattern=ID_PATTERN)
    subscription_id: str | None = Field(default=None, pattern=ID_PATTERN)
    segment: str | None = Field(default=None, description="The segment that chose the policy.")
    variant: str | None = Field(default=None, description="The A/B variant, in an experiment.")

    @field_validator("currency", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class PolicyRef(_Model):
    """Which policy a case runs on, pinned for its life: by name and version, and (cases
    opened since policies are content-addressed) by the sha256 of the policy's canonical JSON,
    which the worker's registry of policy versions resolves (`workflows.policy_versions`)."""

    name: str
    version: int | None = None
    hash: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


# Signals -----------------------------------------------------------------------------------


class PaymentReceived(_Model):
    """Money arrived outside our charges (bank transfer, phone payment, the invoice page)."""

    amount: MinorAmount
    reference: str = Field(default="", max_length=200)
    actor: str = "system"
    paid_at_biller: bool = Field(
        default=False,
        description="The biller already shows it paid (its own webhook); else we tell it.",
    )


class PaymentFailed(DeclineCodes):
    """Another failed payment on the invoice (the customer's own try, the biller's retry)."""

    actor: str = "system"


class PaymentMethodUpdated(_Model):
    """The customer gave a new payment method: retry soon, even after a hard decline."""

    payment_method: str | None = Field(default=None, pattern=ID_PATTERN)
    actor: str = "system"


class DisputeOpened(_Model):
    """A chargeback or dispute: stop charging and messaging until it is resolved."""

    reason: str = Field(default="", max_length=500)
    actor: str = "system"


class DisputeResolved(_Model):
    """Won resumes the case; lost cancels it."""

    won: bool
    actor: str = "system"


class FeedbackReason(StrEnum):
    """Why the customer has not paid, as they tell it on the recovery page."""

    CANNOT_AFFORD = "cannot_afford"
    CARD_CHANGED = "card_changed"
    DISPUTING = "disputing"
    WANT_TO_CANCEL = "want_to_cancel"
    OTHER = "other"


class FeedbackGiven(_Model):
    """The customer's reason; their own words stay in the store, never in the history."""

    reason: FeedbackReason
    actor: str = "customer"


class PromiseToPay(_Model):
    """The customer will pay by `pay_on`: reminders pause until then, and the case charges
    that day and resumes dunning if it is still unpaid."""

    pay_on: AwareDatetime
    actor: str = "customer"
    shared_from: str | None = Field(
        default=None,
        description="Passed on by the customer's conversation: the case it was made on. Such "
        "a promise is not confirmed again, nor passed on again.",
    )


class PlanChosen(_Model):
    """The customer accepts one of the policy's payment plans (by its number of installments)."""

    installments: int = Field(ge=2, le=12)
    actor: str = "customer"


class PayNow(_Model):
    """The customer pays on the recovery page: the case charges what is due at once, through
    its own charge step and attempt key, so no other charge can race it."""

    actor: str = "customer"


class Installment(_Model):
    """One part of a payment plan: how much, when, and whether it is paid."""

    number: int = Field(ge=1)
    amount: int = Field(ge=1)
    due_at: AwareDatetime
    paid: bool = False


class PlanQuote(_Model):
    """A plan the case can offer now, with the installments it would charge."""

    installments: list[Installment]


class PauseRequest(_Model):
    """Support holds the case (a ticket, a negotiation); `until` lets it resume by itself."""

    reason: str = Field(min_length=1, max_length=500)
    actor: str = Field(min_length=1, max_length=100)
    until: AwareDatetime | None = None


class ResumeRequest(_Model):
    """Support releases a paused case."""

    actor: str = Field(min_length=1, max_length=100)


class RetryRequest(_Model):
    """An operator fixed what blocked the case (the gateway's configuration): charge again."""

    actor: str = Field(min_length=1, max_length=100)


class CancelRequest(_Model):
    """Stop dunning for good (subscription cancelled, invoice voided, written off)."""

    reason: str = Field(min_length=1, max_length=500)
    actor: str = Field(min_length=1, max_length=100)


class CallOutcome(StrEnum):
    """How a call to the customer went, as the agent logs it (`dunning tasks complete`)."""

    NO_ANSWER = "no_answer"
    VOICEMAIL = "voicemail"
    WRONG_NUMBER = "wrong_number"
    PROMISE = "promise"
    PLAN = "plan"
    PAID = "paid"
    REFUSED = "refused"


class CallNoted(_Model):
    """An agent's call about the case and how it went; their note stays in the store."""

    step: str = Field(max_length=50, description="The case's call step, e.g. call-1.")
    outcome: CallOutcome
    attempt: int = Field(ge=1, description="The task's call attempt, from 1.")
    actor: str = Field(min_length=1, max_length=100)


# Activities --------------------------------------------------------------------------------


class InvoiceSettled(_Model):
    """The biller shows the invoice settled (paid, voided or written off): a charge or a
    message for it must not go out. Found by the check before every charge and message."""

    kind: Literal["paid", "voided", "written_off"]
    source: str = Field(description="What says so: a stored event, or the gateway.")


class ChargeRequest(_Model):
    """One charge attempt; `idempotency_key` makes a retried activity charge at most once."""

    case_id: str
    invoice_id: str
    customer_id: str
    attempt: int = Field(ge=1)
    amount: int = Field(gt=0)
    currency: str
    payment_method: str | None = None
    failed_at: AwareDatetime | None = Field(
        default=None, description="Settlements from about this time on stop the charge."
    )
    scheduled: bool = Field(default=False, description="A retry of the case's schedule.")
    plan_facts: PlanFacts | None = Field(
        default=None,
        description="A scheduled retry's planning facts just before the charge: stored with "
        "the attempt, they are what a retry model learns from.",
    )
    propensity: float | None = Field(
        default=None, gt=0, le=1, description="The chance the retry's time had of being chosen."
    )
    retry_model_version: int | None = Field(default=None, description="The case's retry model.")
    network_rules: NetworkRules | None = Field(
        default=None,
        description="The card network's reattempt cap, which the activity checks over all of "
        "the customer's cases' charges of the card before charging.",
    )
    record: CaseRecord | CaseUpdate | None = Field(
        default=None,
        description="The case row's changes and the audit lines not yet written, which the "
        "activity writes first (lean cases: no activity of its own for them).",
    )
    replan: PlanRequest | None = Field(
        default=None,
        description="Smart timing: the case's planning facts before the charge. A soft "
        "decline plans the retries still to come from them (`replan_facts`), in the result.",
    )

    @property
    def idempotency_key(self) -> str:
        """``dunning:<case>:attempt:<n>``: the same attempt always carries the same key."""
        return f"dunning:{self.case_id}:attempt:{self.attempt}"


class ChargeResult(DeclineCodes):
    """What the gateway answered for one attempt, with every code the networks gave."""

    approved: bool
    payment_method: str | None = Field(default=None, description="The method charged.")
    reference: str | None = Field(default=None, description="Gateway's charge or intent id.")
    message: str = ""
    settled: InvoiceSettled | None = Field(
        default=None, description="Not charged: the invoice was already settled."
    )
    held_until: AwareDatetime | None = Field(
        default=None,
        description="Not charged: the card's network allows no reattempt before this, counted "
        "over all of the customer's cases.",
    )
    retry_plan: RetryPlan | None = Field(
        default=None, description="The retries still to come, planned after a soft decline."
    )


class WriteBackRequest(_Model):
    """Write a case's outcome back to the biller; idempotent per case and action."""

    case_id: str
    invoice_id: str
    subscription_id: str | None = None
    action: WriteBackAction

    @property
    def idempotency_key(self) -> str:
        """``dunning:<case>:outcome:<action>``."""
        return f"dunning:{self.case_id}:outcome:{self.action}"


class LateFeeRequest(_Model):
    """Add a case's late fee to the customer's next invoice; idempotent per case."""

    case_id: str
    invoice_id: str
    customer_id: str
    amount: int = Field(gt=0, description="Minor units of `currency`.")
    currency: str

    @property
    def idempotency_key(self) -> str:
        """``dunning:<case>:late-fee``: one fee per case, however often it is asked for."""
        return f"dunning:{self.case_id}:late-fee"


class LateFeeResult(_Model):
    """The biller's record of the fee (e.g. Stripe's invoice item id)."""

    reference: str


class WriteBackResult(_Model):
    """What the biller did; `done` is False when there was nothing to do (and why)."""

    done: bool
    detail: str = ""


class OpenInvoice(_Model):
    """One of the customer's open invoices, as a merged message lists it."""

    case_id: str
    invoice_id: str
    amount_due: int
    currency: str
    deadline: AwareDatetime | None = Field(
        default=None, description="When its case goes to collections, once a final notice set it."
    )


class NotifyRequest(_Model):
    """One step's message to the customer, on one or more channels."""

    case_id: str
    invoice_id: str
    customer_id: str
    step: str = Field(description="Unique within the case, e.g. reminder-2 or outcome.")
    template: str
    tone: Tone | None = None
    channels: list[Channel]
    amount_due: int
    amount_paid: int = Field(
        default=0, description="Paid so far on the invoice: what a receipt thanks the customer for."
    )
    currency: str
    deadline: datetime | None = None
    installments: list[Installment] = Field(
        default_factory=list, description="The payment plan, for its confirmation."
    )
    promised_for: AwareDatetime | None = Field(
        default=None, description="The promised date, for its confirmation."
    )
    at: AwareDatetime | None = Field(
        default=None, description="The case's clock when the step was taken (weekly cap)."
    )
    failed_at: AwareDatetime | None = Field(
        default=None,
        description="Settlements from about this time on stop the message; unset, the message "
        "goes out whatever the invoice's state (an outcome message).",
    )
    hour_propensity: float | None = Field(
        default=None, description="Learned timing: the chance the reminder's hour had."
    )
    channel_propensity: float | None = Field(
        default=None, description="Learned timing: the chance the reminder's channels had."
    )
    late_fee: int | None = Field(
        default=None, description="The case's late fee (minor units), named by the message."
    )
    open_invoices: list[OpenInvoice] = Field(
        default_factory=list,
        description="A message of the customer's conversation: every open invoice it names "
        "(more than one: its link is the account page, which pays them all). Empty: the "
        "case's own invoice alone.",
    )
    record: CaseRecord | CaseUpdate | None = Field(
        default=None,
        description="The case row's changes and the audit lines not yet written, which the "
        "activity writes first (lean cases: no activity of its own for them).",
    )
    conversation: bool = Field(
        default=False,
        description="Sent by the customer's conversation, which has already kept it within "
        "the weekly budget: the activity does not count again.",
    )


class RecentMessagesRequest(_Model):
    """Which of a customer's messages a new conversation counts against its weekly budget."""

    customer_id: str
    since: AwareDatetime


class DeliveryStatus(StrEnum):
    """What happened to a message on one channel."""

    SENT = "sent"
    SKIPPED = "skipped"
    FAILED = "failed"


class Delivery(_Model):
    """One channel's result; `detail` never holds an address or a phone number."""

    channel: Channel
    status: DeliveryStatus
    detail: str = ""


class NotifyResult(_Model):
    """The result of one step across its channels."""

    deliveries: list[Delivery]
    settled: InvoiceSettled | None = Field(
        default=None, description="Nothing sent: the invoice was already settled."
    )


class TimelineEntry(_Model):
    """One line of a case's audit trail: what happened, who did it and why."""

    seq: int
    at: AwareDatetime
    kind: str
    actor: str = "dunning"
    detail: str = ""


class ContactFacts(_Model):
    """What the workflow may know of how to reach a customer: never the addresses."""

    time_zones: list[str] = Field(
        default_factory=list,
        description="The customer's zone, or every zone their number may be in.",
    )


class PlanRequest(PlanFacts):
    """Ask for a case's retry times under smart timing; answered with a `RetryPlan`."""

    invoice_id: str
    customer_id: str
    policy_name: str
    policy_version: int = Field(ge=1)


class MessagePlanRequest(_Model):
    """Ask how a new case's reminders go out under learned message timing; answered with a
    `MessagePlan`."""

    customer_id: str
    policy_name: str
    policy_version: int = Field(ge=1)
    model_version: int | None = Field(default=None, description="None: the newest model.")


class CallTaskRequest(_Model):
    """Create the task for a case's call step; idempotent per (case, step). The activity
    looks up the customer's zones and their recent calls, so the history holds neither."""

    case_id: str
    invoice_id: str
    customer_id: str
    step: str
    max_attempts: int = Field(ge=1)
    contact_hours: ContactHours
    at: AwareDatetime = Field(description="The case's clock when the step was taken.")


class CallTaskCreated(_Model):
    """The stored task: its id, and the best time to call (UTC)."""

    task_id: int
    call_after: AwareDatetime


class CaseFigures(_Model):
    """What every picture of a case starts with: which invoice, and how much is owed and paid."""

    case_id: str
    invoice_id: str
    amount_due: int
    amount_recovered: int
    currency: str


class CaseRecord(CaseFigures):
    """The case row as the store keeps it, with the audit lines not yet written."""

    customer_id: str
    subscription_id: str | None = None
    segment: str | None = None
    variant: str | None = None
    decline_code: str | None = None
    decline_class: DeclineClass | None = None
    status: CaseStatus
    policy: str
    policy_version: int
    opened_at: AwareDatetime
    closed_at: AwareDatetime | None = None
    entries: list[TimelineEntry] = Field(default_factory=list)
    failed_at: AwareDatetime | None = Field(default=None, description="When the payment failed.")
    late_fee: int | None = Field(default=None, description="The late fee added (minor units).")


class CaseUpdate(_Model):
    """What a step changes of a case row its opening wrote: where the case stands and the
    audit lines not yet written. The row's ids and dates stay out of every step's history."""

    case_id: str
    currency: str = Field(description="Counts what a finished case recovered (metrics).")
    status: CaseStatus
    amount_due: int
    amount_recovered: int
    closed_at: AwareDatetime | None = None
    late_fee: int | None = None
    entries: list[TimelineEntry] = Field(default_factory=list)


# Status and outcome ------------------------------------------------------------------------


class AttemptView(DeclineCodes):
    """A charge attempt as shown to operators."""

    attempt: int
    at: AwareDatetime
    approved: bool
    payment_method: str | None = None
    decline_class: DeclineClass | None = None
    reference: str | None = Field(
        default=None, description="The gateway's id of the payment (a PaymentIntent's)."
    )


class MessageView(_Model):
    """A message step as shown to operators."""

    step: str
    at: AwareDatetime
    template: str
    deliveries: list[Delivery]


class CaseView(CaseFigures):
    """The `status` query's answer: where the case stands and what it will do next."""

    customer_id: str
    status: CaseStatus
    policy: str
    next_step: str
    next_action_at: AwareDatetime | None = None
    details: str
    attempts: list[AttemptView]
    messages: list[MessageView]
    paused_by: str | None = None
    pause_reason: str | None = None
    paused_until: AwareDatetime | None = None
    dispute_reason: str | None = None
    blocked_reason: str | None = None
    plan_offers: list[PlanQuote] = Field(
        default_factory=list, description="Plans the customer may choose now."
    )
    promise_by: AwareDatetime | None = Field(
        default=None, description="The latest date the customer may promise; None: no promise."
    )
    promised_for: AwareDatetime | None = None
    plan: list[Installment] = Field(default_factory=list, description="The chosen plan.")
    retry_model_version: int | None = Field(
        default=None, description="Smart timing: the retry model the case is pinned to."
    )
    retry_plan: str | None = Field(
        default=None, description="Smart timing: who chose the retry times, and why."
    )
    message_plan: str | None = Field(
        default=None, description="Learned message timing: how reminders go out, and why."
    )
    timeline: list[TimelineEntry]


class CaseResult(CaseFigures):
    """The workflow's result: how the case ended, with its figures and a short timeline."""

    outcome: Outcome
    reason: str
    charge_attempts: int
    messages_sent: int
    opened_at: AwareDatetime
    closed_at: AwareDatetime
    timeline: list[TimelineEntry]
