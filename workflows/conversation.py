"""A customer's conversation: one voice for all of a customer's open cases.

Each case still charges its own invoice, but its reminders are handed to the customer's
conversation, which decides what the customer hears: reminders due close together go out
as one message naming every open invoice, at most `messages_per_week` messages reach the
customer in any 7 days (in-app ones too), and never outside contact hours. Owning the budget
in one place ends the race of cases counting each other's messages.

Pure (no I/O, no Temporal import): `CustomerWorkflow` is its durable driver, and the
offline simulator asks the same rules.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from workflows.contact_hours import ContactHours
from workflows.messaging import CAP_WINDOW, FALLBACK_ORDER, YIELDING_TONES
from workflows.models import Delivery, NotifyRequest, OpenInvoice, PromiseToPay
from workflows.policy import Channel, Tone

MERGE_WINDOW = timedelta(hours=24)
"""The default merge window (a policy's `conversation_window`): reminders due within this long
of a message go out together. A reminder for a case the last message already named (as
firmly) is settled by it, and any other waits this long after the last message, so that
reminders of invoices that failed the same day travel as one."""

OUTCOME_GATHER = timedelta(minutes=2)
"""Receipts of cases that end within this long of each other (or the merge window, if
shorter) go out as one: paying every invoice on the account page brings one receipt, not one
per invoice. Other outcome messages (a hand-off to collections) go one per case, after the
same short wait."""

MERGED_OUTCOMES = frozenset({"recovered"})

TONE_RANK = {Tone.GENTLE: 0, Tone.FIRM: 1, Tone.FINAL: 2}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConversationCase(_Model):
    """An open case as its customer's conversation knows it: ids and amounts only."""

    case_id: str
    invoice_id: str
    workflow_id: str
    amount_due: int
    currency: str
    collections_at: AwareDatetime | None = None


class CaseJoined(_Model):
    """A case opened and joins its customer's conversation."""

    kind: Literal["joined"] = "joined"
    customer_id: str
    case: ConversationCase
    time_zones: list[str] = Field(default_factory=list)
    contact_hours: ContactHours = Field(default_factory=ContactHours)
    messages_per_week: int = Field(default=4, ge=1)
    merge_window: timedelta = MERGE_WINDOW


class ReminderDue(_Model):
    """A case hands one reminder to its customer's conversation."""

    kind: Literal["reminder"] = "reminder"
    customer_id: str
    case: ConversationCase
    step: str
    template: str
    tone: Tone
    channels: list[Channel]
    due_at: AwareDatetime
    deadline: AwareDatetime | None = None
    failed_at: AwareDatetime
    amount_paid: int = 0
    late_fee: int | None = Field(default=None, description="The case's late fee, once added.")
    hour_propensity: float | None = None
    channel_propensity: float | None = None

    @property
    def key(self) -> str:
        return f"{self.case.case_id}:{self.step}"


class OutcomeDue(_Model):
    """A finishing case hands its outcome message (a receipt, the collections notice) to its
    customer's conversation. It never waits for the budget, only for others like it."""

    kind: Literal["outcome"] = "outcome"
    customer_id: str
    case: ConversationCase
    step: str
    template: str
    channels: list[Channel]
    due_at: AwareDatetime
    amount_paid: int = 0
    deadline: AwareDatetime | None = None

    @property
    def key(self) -> str:
        return f"{self.case.case_id}:{self.step}"


class CaseLeft(_Model):
    """A case finished: its invoice leaves the conversation's messages."""

    kind: Literal["left"] = "left"
    customer_id: str
    case_id: str
    outcome: str


class CustomerPromised(_Model):
    """The customer promised to pay on one of their cases: they mean every open invoice."""

    kind: Literal["promised"] = "promised"
    customer_id: str
    case_id: str
    promise: PromiseToPay


ConversationNote = CaseJoined | ReminderDue | OutcomeDue | CaseLeft | CustomerPromised
"""What a case tells its customer's conversation."""


class SentMessage(_Model):
    """A message of the conversation, kept for the weekly budget and for merging."""

    at: AwareDatetime
    tone: Tone | None = None
    case_ids: list[str] = Field(default_factory=list)


class ConversationReply(_Model):
    """The conversation's answer to a case's reminder: the message that carried it (sent,
    or one sent shortly before that already named the invoice), or why none went out."""

    step: str
    template: str
    tone: Tone
    at: AwareDatetime
    deliveries: list[Delivery] = Field(default_factory=list)
    detail: str = ""


class Send(_Model):
    """Send one message for every reminder waiting, naming every open invoice."""

    kind: Literal["send"] = "send"
    lead: ReminderDue
    reminders: list[ReminderDue]
    channels: list[Channel]
    open_invoices: list[OpenInvoice]


class Conclude(_Model):
    """Send one outcome message for the cases that ended together, naming each invoice."""

    kind: Literal["conclude"] = "conclude"
    outcomes: list[OutcomeDue]
    channels: list[Channel]


class Settle(_Model):
    """Answer reminders without sending: a recent message carried them, or the budget is spent."""

    kind: Literal["settle"] = "settle"
    reminders: list[ReminderDue]
    detail: str


class PassOn(_Model):
    """Pass a promise made on one case to the customer's other open cases (each judges it by
    its own policy, as the recovery page's would be)."""

    kind: Literal["pass_on"] = "pass_on"
    promised: CustomerPromised
    workflow_ids: list[str]


class Rest(_Model):
    """Wait until `until` (forever when None) or until a case says something."""

    kind: Literal["rest"] = "rest"
    until: AwareDatetime | None
    reason: str


class Close(_Model):
    """No open case and nothing to say: the conversation ends (a new case starts it again)."""

    kind: Literal["close"] = "close"


ConversationStep = Send | Conclude | Settle | PassOn | Rest | Close


class Conversation(_Model):
    """What `CustomerWorkflow` remembers: open cases, waiting reminders, recent messages."""

    customer_id: str
    messages_per_week: int = 4
    merge_window: timedelta = MERGE_WINDOW
    contact_hours: ContactHours = Field(default_factory=ContactHours)
    time_zones: list[str] = Field(default_factory=list)
    cases: dict[str, ConversationCase] = Field(default_factory=dict)
    waiting: list[ReminderDue] = Field(default_factory=list)
    sent: list[SentMessage] = Field(default_factory=list)
    answered: list[str] = Field(
        default_factory=list, description="Reminder keys answered: a repeated note is ignored."
    )
    closed_cases: list[str] = Field(default_factory=list)
    promises: list[CustomerPromised] = Field(
        default_factory=list, description="Promises still to pass on to the other cases."
    )
    outcomes: list[OutcomeDue] = Field(
        default_factory=list, description="Outcome messages gathering to go out as one."
    )

    def hear(self, note: ConversationNote, now: datetime) -> None:
        """Fold what a case said into the conversation; repeats (a retried activity) are
        ignored, and a finished case never rejoins."""
        match note:
            case CaseJoined():
                self.messages_per_week = note.messages_per_week
                self.merge_window = note.merge_window
                self.contact_hours = note.contact_hours
                if note.time_zones:
                    self.time_zones = note.time_zones
                if note.case.case_id not in self.closed_cases:
                    self.cases[note.case.case_id] = note.case
            case ReminderDue():
                if note.key in self.answered or any(r.key == note.key for r in self.waiting):
                    return
                if note.case.case_id not in self.closed_cases:
                    self.cases[note.case.case_id] = note.case
                self.waiting.append(note)
            case CustomerPromised():
                self.promises.append(note)
            case OutcomeDue():
                fresh = note.key not in self.answered and note not in self.outcomes
                if fresh and note.case.case_id not in self.closed_cases:
                    self.outcomes.append(note)
            case CaseLeft():
                self.cases.pop(note.case_id, None)
                if note.case_id not in self.closed_cases:
                    self.closed_cases.append(note.case_id)
                # A reminder of a finished case is moot; its case no longer listens.
                self.waiting = [r for r in self.waiting if r.case.case_id != note.case_id]
        self._forget_before(now)

    def record_sent(self, step: Send, now: datetime) -> None:
        """The message went out (on some channel): it counts against the budget."""
        self.sent.append(
            SentMessage(at=now, tone=_strongest(step.reminders), case_ids=list(self.cases))
        )
        self._answer(step.reminders)

    def record_settled(self, step: Settle) -> None:
        self._answer(step.reminders)

    def record_concluded(self, step: Conclude) -> None:
        """The outcome message went out (or could not): it is not sent again."""
        keys = {o.key for o in step.outcomes}
        self.outcomes = [o for o in self.outcomes if o.key not in keys]
        self.answered.extend(k for k in keys if k not in self.answered)

    def record_passed_on(self, step: PassOn) -> None:
        self.promises = [p for p in self.promises if p != step.promised]

    def remember_sent(self, moments: list[datetime]) -> None:
        """Messages this customer got before the conversation (re)started, for the budget."""
        self.sent.extend(SentMessage(at=at) for at in moments)

    def sent_in_window(self, now: datetime) -> int:
        return sum(1 for m in self.sent if m.at > now - CAP_WINDOW)

    def open_invoices(self) -> list[OpenInvoice]:
        return [
            OpenInvoice(
                case_id=c.case_id,
                invoice_id=c.invoice_id,
                amount_due=c.amount_due,
                currency=c.currency,
                deadline=c.collections_at,
            )
            for c in sorted(self.cases.values(), key=lambda c: c.case_id)
        ]

    def owed(self) -> dict[str, int]:
        """What the customer owes over their open cases, per currency."""
        totals: dict[str, int] = {}
        for case in self.cases.values():
            totals[case.currency] = totals.get(case.currency, 0) + case.amount_due
        return totals

    def _answer(self, reminders: list[ReminderDue]) -> None:
        keys = {r.key for r in reminders}
        self.waiting = [r for r in self.waiting if r.key not in keys]
        self.answered.extend(k for k in keys if k not in self.answered)

    def _forget_before(self, now: datetime) -> None:
        """Keep the state small: messages older than the budget's and the merge window, and
        keys of cases that have finished."""
        horizon = now - max(CAP_WINDOW, self.merge_window)
        self.sent = [m for m in self.sent if m.at > horizon]
        self.answered = [k for k in self.answered if k.partition(":")[0] not in self.closed_cases]


def decide_conversation(conversation: Conversation, now: datetime) -> ConversationStep:
    """What the conversation does next at `now`."""
    if conversation.promises:
        promised = conversation.promises[0]
        others = [
            c.workflow_id for c in conversation.cases.values() if c.case_id != promised.case_id
        ]
        return PassOn(promised=promised, workflow_ids=sorted(others))
    gathered_at = None
    if conversation.outcomes:
        template = conversation.outcomes[0].template
        alike = [o for o in conversation.outcomes if o.template == template]
        if template not in MERGED_OUTCOMES:
            alike = alike[:1]
        gather = min(OUTCOME_GATHER, conversation.merge_window)
        gathered_at = conversation.contact_hours.next_contact_time(
            min(o.due_at for o in alike) + gather, conversation.time_zones
        )
        if now >= gathered_at:
            channels = {c for o in alike for c in o.channels}
            return Conclude(outcomes=alike, channels=[c for c in FALLBACK_ORDER if c in channels])
        if not conversation.waiting:
            return Rest(until=gathered_at, reason=f"to send one {template} message")
    waiting = conversation.waiting
    if not waiting:
        if not conversation.cases:
            return Close()
        return Rest(until=None, reason="until a case has something to say")

    carried = [r for r in waiting if _carried_by_recent_message(conversation, r)]
    if carried:
        return Settle(reminders=carried, detail="named in a message shortly before")
    full = conversation.sent_in_window(now) >= conversation.messages_per_week
    yielding = [r for r in waiting if r.tone in YIELDING_TONES]
    if full and yielding:
        detail = f"frequency cap: {conversation.messages_per_week} messages in 7 days"
        return Settle(reminders=yielding, detail=detail)

    send_at = next_send_at(conversation, now)
    if send_at > now:
        if gathered_at is not None and gathered_at < send_at:
            return Rest(until=gathered_at, reason="to send one outcome message")
        return Rest(until=send_at, reason=_rest_reason(conversation))
    lead = max(waiting, key=lambda r: (TONE_RANK[r.tone], -r.due_at.timestamp()))
    channels = {c for r in waiting for c in r.channels}
    return Send(
        lead=lead,
        reminders=list(waiting),
        channels=[c for c in FALLBACK_ORDER if c in channels],
        open_invoices=_with_deadlines(conversation, waiting, now),
    )


def message_request(conversation: Conversation, step: Send, now: datetime) -> NotifyRequest:
    """The one message a `Send` makes, under the firmest reminder's step (its key keeps the
    message at most once) and naming every open invoice."""
    lead = step.lead
    named = next((i for i in step.open_invoices if i.case_id == lead.case.case_id), None)
    return NotifyRequest(
        case_id=lead.case.case_id,
        invoice_id=lead.case.invoice_id,
        customer_id=conversation.customer_id,
        step=lead.step,
        template=lead.template,
        tone=lead.tone,
        channels=step.channels,
        amount_due=lead.case.amount_due,
        amount_paid=lead.amount_paid,
        currency=lead.case.currency,
        deadline=named.deadline if named is not None else lead.deadline,
        at=now,
        failed_at=lead.failed_at,
        hour_propensity=lead.hour_propensity,
        channel_propensity=lead.channel_propensity,
        open_invoices=step.open_invoices,
        conversation=True,
        late_fee=lead.late_fee,
    )


def outcome_request(conversation: Conversation, step: Conclude, now: datetime) -> NotifyRequest:
    """The one outcome message a `Conclude` makes, under its first case's step and key, naming
    each invoice with what was paid on it (a receipt) or what is owed (a hand-off)."""
    lead = step.outcomes[0]
    receipt = lead.template == "recovered"
    named = [
        OpenInvoice(
            case_id=o.case.case_id,
            invoice_id=o.case.invoice_id,
            amount_due=o.amount_paid if receipt else o.case.amount_due,
            currency=o.case.currency,
            deadline=None if receipt else o.deadline,
        )
        for o in step.outcomes
    ]
    return NotifyRequest(
        case_id=lead.case.case_id,
        invoice_id=lead.case.invoice_id,
        customer_id=conversation.customer_id,
        step=lead.step,
        template=lead.template,
        channels=step.channels,
        amount_due=lead.case.amount_due,
        amount_paid=lead.amount_paid,
        currency=lead.case.currency,
        deadline=lead.deadline,
        at=now,
        open_invoices=named if len(named) > 1 else [],
        conversation=True,
    )


def replies(
    reminders: list[ReminderDue],
    now: datetime,
    detail: str,
    deliveries: list[Delivery] | None = None,
    lead: ReminderDue | None = None,
) -> list[tuple[str, ConversationReply]]:
    """What each case hears of its reminder, with its workflow id: the lead's case gets the
    message's deliveries (they went out under its step), the others that it carried them."""
    answers = []
    for reminder in reminders:
        own = lead is None or reminder.key == lead.key
        reply = ConversationReply(
            step=reminder.step,
            template=lead.template if lead is not None else reminder.template,
            tone=reminder.tone,
            at=now,
            deliveries=(deliveries or []) if own else [],
            detail=detail if own else f"{detail}, sent as {lead.case.case_id} {lead.step}",
        )
        answers.append((reminder.case.workflow_id, reply))
    return answers


def next_send_at(conversation: Conversation, now: datetime) -> datetime:
    """The first moment from `now` a message may go out: a merge window after the last one,
    with room in the weekly budget (a final notice waits for it; reminders give way), and
    inside contact hours in every zone of the customer."""
    at = now
    if conversation.sent:
        at = max(at, max(m.at for m in conversation.sent) + conversation.merge_window)
    recent = sorted(m.at for m in conversation.sent if m.at > now - CAP_WINDOW)
    if len(recent) >= conversation.messages_per_week:
        at = max(at, recent[len(recent) - conversation.messages_per_week] + CAP_WINDOW)
    return conversation.contact_hours.next_contact_time(at, conversation.time_zones)


def _carried_by_recent_message(conversation: Conversation, reminder: ReminderDue) -> bool:
    """A message at least as firm as `reminder` named its invoice within the merge window
    before it was due: the customer has just heard it."""
    return any(
        reminder.case.case_id in message.case_ids
        and message.tone is not None
        and TONE_RANK[message.tone] >= TONE_RANK[reminder.tone]
        and message.at >= reminder.due_at - conversation.merge_window
        for message in conversation.sent
    )


def _with_deadlines(
    conversation: Conversation, waiting: list[ReminderDue], now: datetime
) -> list[OpenInvoice]:
    """Every open invoice; a final notice sent later than it fell due names a collections
    date as much later, which its case keeps too."""
    deadlines = {
        r.case.case_id: r.deadline + (now - r.due_at)
        for r in waiting
        if r.tone is Tone.FINAL and r.deadline is not None
    }
    return [
        invoice.model_copy(update={"deadline": deadlines.get(invoice.case_id, invoice.deadline)})
        for invoice in conversation.open_invoices()
    ]


def _strongest(reminders: list[ReminderDue]) -> Tone | None:
    return max((r.tone for r in reminders), key=TONE_RANK.__getitem__, default=None)


def _rest_reason(conversation: Conversation) -> str:
    count = len(conversation.waiting)
    what = "a reminder" if count == 1 else f"{count} reminders"
    return f"to send {what} as one message"


class ConversationStart(_Model):
    """`CustomerWorkflow`'s input: the customer, or the conversation a previous run carried."""

    customer_id: str
    carried: Conversation | None = None
    history_limit: int = Field(
        default=2_000,
        ge=10,
        description="Events after which a run hands the conversation to a new one, when the "
        "server has not suggested it sooner (the time-skipping test server never does).",
    )


class ConversationView(_Model):
    """The `summary` query's answer: what support sees with `dunning customer show`."""

    customer_id: str
    open_invoices: list[OpenInvoice]
    owed: dict[str, int] = Field(description="What is still due, per currency.")
    messages_this_week: int
    messages_per_week: int
    waiting_reminders: list[str] = Field(description="Reminders waiting to go out, case:step.")
    next_contact_at: AwareDatetime | None = Field(
        description="When the next message may go out; None: nothing to send."
    )
    next_step: str


def conversation_view(conversation: Conversation, now: datetime) -> ConversationView:
    """Where the customer's conversation stands at `now`."""
    step = decide_conversation(conversation, now)
    next_contact_at = now if isinstance(step, Send | Conclude) else getattr(step, "until", None)
    return ConversationView(
        customer_id=conversation.customer_id,
        open_invoices=conversation.open_invoices(),
        owed=conversation.owed(),
        messages_this_week=conversation.sent_in_window(now),
        messages_per_week=conversation.messages_per_week,
        waiting_reminders=[r.key for r in conversation.waiting],
        next_contact_at=next_contact_at,
        next_step=describe_conversation_step(step),
    )


def describe_conversation_step(step: ConversationStep) -> str:
    """One line for operators, e.g. "waiting until 2026-12-02 09:00 UTC to send 2 reminders"."""
    match step:
        case Send():
            return f"sending {step.lead.template} naming {len(step.open_invoices)} invoice(s)"
        case Settle():
            return f"settling {len(step.reminders)} reminder(s): {step.detail}"
        case Conclude():
            return f"sending {step.outcomes[0].template} naming {len(step.outcomes)} invoice(s)"
        case PassOn():
            return f"passing a promise made on {step.promised.case_id} to the other open cases"
        case Rest():
            if step.until is None:
                return f"waiting {step.reason}"
            return f"waiting until {step.until:%Y-%m-%d %H:%M} UTC {step.reason}"
        case Close():
            return "closed: no open case"
