"""Run dunning policies over many cases offline: the policy core the workflow uses, a
virtual clock instead of Temporal, and a `World` instead of gateways and customers.

Each case goes round the loop `DunningWorkflow.run` goes round: resume an expired pause,
ask `decide` for the next step, carry it out, fold the result in. Requests are built and
results folded by `workflows.steps`, the functions the workflow itself calls, so a simulated
case takes the steps a durable one would, at the same times, given the same answers:

- Charge: the world answers the charge; the answer folds in like the gateway's.
- Notify: the messaging rules the notify activity applies (`workflows.messaging`: the weekly
  cap per customer, channels the customer stopped, the fallback channel) decide what is
  delivered; the customer may answer with an action later, an opt-out included.
- Wait / AwaitPaymentMethod: the clock moves to the wait's end or to the customer's next
  action, whichever comes first; an action reaches the case as the workflow's signal would.
- Finish: the case concludes (and sends its outcome message, if the policy has one).

A policy with smart retry timing plans its retries when the case opens and again after every
declined retry, as the workflow does, with the retry model given (the one a worker would
read); `compare` trains one on the world's history when none is given. Cases run side by
side and their plans are rated in one batch per round, so a model costs one call per round,
not one per case. A policy with learned message timing pins its case's message plan when the
case opens, from the message model given (fitted on the same history by `compare`), and the
reminders then go out through the same `Outbox`: the plan never moves past the cap, an
opt-out or contact hours.
"""

from __future__ import annotations

import heapq
import itertools
import statistics
from collections import Counter
from collections.abc import Generator, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, Field

from simulation.synthetic import generate_cases
from simulation.world import (
    ActionKind,
    CustomerAction,
    PopulatedWorld,
    SentMessage,
    SimCase,
    World,
    load_world,
)
from workflows.case import CaseState
from workflows.conversation import (
    Conclude,
    Conversation,
    ConversationNote,
    ConversationReply,
    PassOn,
    Rest,
    Send,
    Settle,
    decide_conversation,
    message_request,
    outcome_request,
    replies,
)
from workflows.decide import (
    AddLateFee,
    AwaitPaymentMethod,
    Call,
    Charge,
    Finish,
    Notify,
    Step,
    Wait,
    decide,
)
from workflows.dunning import SIGNALS, signal_name
from workflows.message_timing import (
    OUTCOME_WINDOW,
    MessageModel,
    MessageOutcome,
    fit_messages,
    plan_messages,
    segment_of,
)
from workflows.messaging import (
    CAP_WINDOW,
    CAPPED_CHANNELS,
    fallback_channels,
    gives_way_to_cap,
    needs_fallback,
)
from workflows.models import (
    CancelRequest,
    Delivery,
    DeliveryStatus,
    DisputeOpened,
    DisputeResolved,
    NotifyRequest,
    PaymentMethodUpdated,
    PaymentReceived,
)
from workflows.policy import Channel, Outcome, Policy
from workflows.retry_model import RetryModel, fit
from workflows.retry_planner import candidate_slots, choose_retries, feature_block
from workflows.smart_retry import AttemptRecord, PlanFacts, RetryPlan, RetryScorer, usable
from workflows.steps import (
    Signal,
    charge_request,
    fold_call_task,
    fold_charge,
    fold_late_fee,
    fold_message,
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

DEFAULT_WORLD = "simulation.synthetic:factory"
DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC)
DISPUTE_LOST_AFTER = timedelta(days=10)
TRAINING_WINDOW = timedelta(days=28)
MAX_STEPS = 1000
MESSAGES_PER_WEEK = 4
"""The weekly cap the notify activity applies by default (`MESSAGES_PER_WEEK` setting)."""
LIVE, HISTORY = "live", "history"
ACTED = frozenset({ActionKind.UPDATE_CARD.value, ActionKind.PAY.value})
LOST = frozenset({ActionKind.CANCEL.value, ActionKind.DISPUTE.value, ActionKind.OPT_OUT.value})
"""What a customer's action after a reminder says of it (`MessageOutcome.acted`, `.lost`)."""

# The payload each DunningWorkflow signal carries, by the signal's name.
SIGNAL_TYPES = {signal_name(model): model for model in SIGNALS}


class SimulationError(RuntimeError):
    """A case could not be simulated to its end (it would wait forever, or never settle)."""


class StepRecord(BaseModel):
    """One step the policy core took, with the fields that tell two runs apart."""

    kind: Literal["charge", "notify", "wait", "await_payment_method", "finish", "late_fee", "call"]
    at: AwareDatetime
    attempt: int | None = None
    scheduled: bool | None = None
    approved: bool | None = None
    step: str | None = None
    template: str | None = None
    until: AwareDatetime | None = None
    outcome: Outcome | None = None

    @classmethod
    def of(cls, step: Step, at: datetime) -> StepRecord:
        """The record of `step`, decided at `at`."""
        match step:
            case Charge():
                return cls(kind="charge", at=at, attempt=step.attempt, scheduled=step.scheduled)
            case Notify():
                return cls(kind="notify", at=at, step=step.step, template=step.template)
            case Wait() | AwaitPaymentMethod():
                return cls(kind=step.kind, at=at, until=step.until)
            case Finish():
                return cls(kind="finish", at=at, outcome=step.outcome)
            case AddLateFee():
                return cls(kind="late_fee", at=at)
            case Call():
                return cls(kind="call", at=at, step=step.step)
        raise TypeError(f"not a step: {step!r}")


class CustomerEvent(BaseModel):
    """A customer's action (or its consequence, a lost dispute) as it reached the case: the
    workflow signal that carries it, and that signal's payload."""

    at: AwareDatetime
    action: str = Field(description="update_card, pay, dispute, cancel or dispute_lost")
    signal: str = Field(description="The DunningWorkflow signal, e.g. payment_method_updated")
    payload: dict[str, Any]

    def signal_payload(self) -> Signal:
        """The payload as the signal's model (to send it to a real workflow)."""
        return SIGNAL_TYPES[self.signal].model_validate(self.payload)


class CaseRun(BaseModel):
    """How one case went under one policy."""

    case_id: str
    outcome: Outcome
    reason: str
    currency: str
    amount: int
    recovered: int
    charges: int
    messages_sent: int
    failed_at: AwareDatetime
    closed_at: AwareDatetime
    days_to_recover: float | None = Field(
        default=None, description="From the failure to recovery; None when not recovered."
    )
    steps: list[StepRecord] = Field(default_factory=list)
    events: list[CustomerEvent] = Field(default_factory=list)
    attempts: list[AttemptRecord] = Field(
        default_factory=list, description="Scheduled retries as training records, if kept."
    )
    message_outcomes: list[MessageOutcome] = Field(
        default_factory=list, description="Reminders sent as training records, if kept."
    )


class PolicyResult(BaseModel):
    """One policy's figures over a set of cases; `runs` holds each case's story."""

    policy: str
    cases: int
    recovered_cases: int
    recovery_rate: float = Field(description="Recovered cases / cases.")
    amount_due: dict[str, int] = Field(description="Per currency, minor units.")
    recovered_revenue: dict[str, int] = Field(description="Per currency, minor units.")
    revenue_ratio: float | None = Field(
        default=None,
        description="Recovered revenue / the first policy's (one currency only), in a report.",
    )
    charges_attempted: int
    messages_sent: int
    median_days_to_recover: float | None
    customers_lost: int = Field(description="Cases cancelled (by the customer or a dispute).")
    collections: int
    runs: list[CaseRun] = Field(default_factory=list)


class SimulationReport(BaseModel):
    """Policies compared on the same cases in the same world."""

    world: str
    seed: int
    cases: int
    start: AwareDatetime
    retry_model: str | None = Field(
        default=None, description="The model smart-timed policies planned with, if any."
    )
    message_model: str | None = Field(
        default=None, description="The model learned message timing planned with, if any."
    )
    policies: list[PolicyResult]


def simulate(
    cases: Iterable[SimCase],
    policy: Policy,
    world: World,
    *,
    retry_model: RetryScorer | None = None,
    dispute_lost_after: timedelta = DISPUTE_LOST_AFTER,
    messages_per_week: int = MESSAGES_PER_WEEK,
    keep_attempts: bool = False,
    message_model: MessageModel | None = None,
    keep_messages: bool = False,
) -> PolicyResult:
    """Run every case under `policy` in `world` and sum up the outcomes.

    Use a fresh world per call: a world may remember what its customers decided. A
    smart-timed policy plans with `retry_model` (None: the policy's fixed schedule), learned
    message timing with `message_model` (None: reminders as written, still explored).
    `keep_attempts` keeps each run's retries as training records (`CaseRun.attempts`),
    `keep_messages` its reminders (`CaseRun.message_outcomes`)."""
    outbox = Outbox(messages_per_week)
    simulations = [
        _CaseSimulation(
            case,
            policy,
            world,
            outbox,
            dispute_lost_after,
            keep_attempts,
            message_model,
            keep_messages,
        )
        for case in cases
    ]
    if policy.conversation:
        return summarise(policy, _drive_conversations(simulations, policy, retry_model, world))
    return summarise(policy, _drive(simulations, policy, retry_model))


def run_case(
    case: SimCase,
    policy: Policy,
    world: World,
    *,
    retry_model: RetryScorer | None = None,
    dispute_lost_after: timedelta = DISPUTE_LOST_AFTER,
    message_model: MessageModel | None = None,
) -> CaseRun:
    """One case from its failure to its outcome, on a virtual clock."""
    simulation = _CaseSimulation(
        case, policy, world, Outbox(MESSAGES_PER_WEEK), dispute_lost_after, False, message_model
    )
    if policy.conversation:
        return _drive_conversations([simulation], policy, retry_model, world)[0]
    return _drive([simulation], policy, retry_model)[0]


def _drive(
    simulations: list[_CaseSimulation], policy: Policy, scorer: RetryScorer | None
) -> list[CaseRun]:
    """Run the cases side by side: each runs until it needs a retry plan or ends; the plans
    asked for are made in one batch, and the cases that asked go on."""
    runs: list[CaseRun | None] = [None] * len(simulations)
    journeys = [simulation.run() for simulation in simulations]
    asking: dict[int, PlanFacts] = {}

    def advance(index: int, plan: RetryPlan | None) -> None:
        try:
            journey = journeys[index]
            asking[index] = next(journey) if plan is None else journey.send(plan)
        except StopIteration as finished:
            runs[index] = finished.value

    for index in range(len(journeys)):
        advance(index, None)
    while asking:
        batch, asking = asking, {}
        plans = plan_batch(list(batch.values()), policy, scorer)
        for index, plan in zip(batch, plans, strict=True):
            advance(index, plan)
    return [run for run in runs if run is not None]


def plan_batch(
    facts: list[PlanFacts], policy: Policy, scorer: RetryScorer | None
) -> list[RetryPlan]:
    """`plan_retries` for many cases, with one call of the model for all of their slots."""
    slots = [candidate_slots(f, policy) for f in facts]
    if not usable(scorer):
        return [
            choose_retries(scorer, s, None, f, policy) for f, s in zip(facts, slots, strict=True)
        ]
    blocks = [feature_block(s, f) for f, s in zip(facts, slots, strict=True)]
    chances = iter(scorer.success_chances(blocks))
    return [
        choose_retries(scorer, s, list(itertools.islice(chances, len(s))), f, policy)
        for f, s in zip(facts, slots, strict=True)
    ]


class _CustomerDesk:
    """A customer's conversation as `CustomerWorkflow` keeps it, over simulated cases: the
    cases hand it their reminders, and it sends through the `Outbox` at its own times."""

    def __init__(self, customer_id: str, outbox: Outbox, world: World) -> None:
        self.conversation = Conversation(
            customer_id=customer_id, messages_per_week=outbox.messages_per_week
        )
        self.outbox = outbox
        self.world = world
        self.cases: dict[str, _CaseSimulation] = {}
        self.concluded: dict[str, int] = {}
        """Deliveries of outcome messages sent after their (lead) case finished, by case."""

    def hear(self, note: ConversationNote, now: datetime) -> None:
        self.conversation.hear(note, now)

    def next_at(self, now: datetime) -> datetime | None:
        """When the conversation acts next, from `now` (None: it waits for a case)."""
        step = decide_conversation(self.conversation, now)
        if isinstance(step, Send | Conclude | Settle | PassOn):
            return now
        return step.until if isinstance(step, Rest) else None

    def act(self, now: datetime) -> None:
        """Send or settle what is due at `now`; each case hears of its reminder, and the
        customer may answer the message: paying or a new card reaches every open case."""
        conversation = self.conversation
        step = decide_conversation(conversation, now)
        if isinstance(step, Conclude):
            request = outcome_request(conversation, step, now)
            deliveries = self.outbox.deliver(conversation.customer_id, request, now)
            sent = sum(d.status is DeliveryStatus.SENT for d in deliveries)
            lead = step.outcomes[0].case.case_id
            self.concluded[lead] = self.concluded.get(lead, 0) + sent
            conversation.record_concluded(step)
            return
        if isinstance(step, PassOn):
            conversation.record_passed_on(step)
            promise = step.promised.promise.model_copy(
                update={"shared_from": step.promised.case_id}
            )
            for simulation in self.cases.values():
                if simulation.case.id in step.workflow_ids and not simulation.state.finished:
                    simulation._push(now, "promise_passed_on", promise)
            return
        if isinstance(step, Settle):
            conversation.record_settled(step)
            self._reply(replies(step.reminders, now, step.detail), now)
            return
        if not isinstance(step, Send):
            return
        request = message_request(conversation, step, now)
        deliveries = self.outbox.deliver(conversation.customer_id, request, now)
        sent = [d.channel for d in deliveries if d.status is DeliveryStatus.SENT]
        if sent:
            conversation.record_sent(step, now)
        else:
            conversation.record_settled(Settle(reminders=step.reminders, detail="not delivered"))
        detail = f"one message naming {len(step.open_invoices)} open invoice(s)"
        self._reply(replies(step.reminders, now, detail, deliveries, step.lead), now)
        lead = self.cases.get(step.lead.case.case_id)
        if not sent or lead is None:
            return
        message = SentMessage.of(request).model_copy(update={"channels": sent})
        action = self.world.respond(lead.case, message, now)
        if action is None:
            return
        everyone = action.kind in (ActionKind.PAY, ActionKind.UPDATE_CARD)
        for simulation in self.cases.values() if everyone else [lead]:
            if not simulation.state.finished:
                simulation._schedule(action)

    def _reply(self, answers: list[tuple[str, ConversationReply]], now: datetime) -> None:
        for case_id, reply in answers:
            simulation = self.cases.get(case_id)
            if simulation is not None and not simulation.state.finished:
                simulation._push(now, "conversation_reply", reply)


def _drive_conversations(
    simulations: list[_CaseSimulation], policy: Policy, scorer: RetryScorer | None, world: World
) -> list[CaseRun]:
    """Run the cases in time order, as a customer's cases and their conversation meet in
    production: each case runs until it waits, then the case or conversation due first goes
    on. Plans are made one at a time (no batching: cases do not wait for each other here)."""
    desks: dict[str, _CustomerDesk] = {}
    for simulation in simulations:
        desk = desks.get(simulation.case.customer_id)
        if desk is None:
            desk = _CustomerDesk(simulation.case.customer_id, simulation.outbox, world)
            desks[simulation.case.customer_id] = desk
        desk.cases[simulation.case.id] = simulation
        simulation.desk = desk
    position = {id(simulation): index for index, simulation in enumerate(simulations)}
    runs: list[CaseRun | None] = [None] * len(simulations)
    journeys: list[Generator | None] = [None] * len(simulations)
    queue: list[tuple[datetime, int, int | str]] = []
    order = itertools.count()
    for index, simulation in enumerate(simulations):
        heapq.heappush(queue, (simulation.now, next(order), index))
    due: dict[int | str, datetime] = {}

    def wake(who: int | str, at: datetime | None) -> None:
        if at is not None and (who not in due or at < due[who]):
            due[who] = at
            heapq.heappush(queue, (at, next(order), who))

    def resume(index: int) -> None:
        simulation = simulations[index]
        try:
            journey = journeys[index]
            if journey is None:
                journey = journeys[index] = simulation.run()
                asked = next(journey)
            else:
                asked = journey.send(None)
            while isinstance(asked, PlanFacts):
                asked = journey.send(plan_batch([asked], policy, scorer)[0])
            wake(index, asked)
        except StopIteration as finished:
            runs[index] = finished.value
        desk = simulation.desk
        wake(desk.conversation.customer_id, desk.next_at(simulation.now))
        for other in desk.cases.values():  # a reply or an answer may wake a case sooner
            if other is not simulation and other.pending:
                wake(position[id(other)], other.pending[0][0])

    while queue:
        at, _, who = heapq.heappop(queue)
        if due.get(who) != at and not (isinstance(who, int) and journeys[who] is None):
            continue  # a stale entry: the participant was woken for another time since
        due.pop(who, None)
        if isinstance(who, int):
            if runs[who] is None:
                resume(who)
            continue
        desk = desks[who]
        desk.act(at)
        wake(who, desk.next_at(at))
        for simulation in desk.cases.values():
            index = position[id(simulation)]
            if simulation.pending and runs[index] is None:
                wake(index, simulation.pending[0][0])
    # An outcome message goes out after its case finished: it counts for the case that led it.
    concluded = {case: sent for desk in desks.values() for case, sent in desk.concluded.items()}
    return [
        run.model_copy(update={"messages_sent": run.messages_sent + concluded.get(run.case_id, 0)})
        for run in runs
        if run is not None
    ]


class Outbox:
    """The notify activity's rules over simulated customers: the weekly cap across a
    customer's cases, the channels they stopped, the fallback when none of a step's own
    channels reaches them. Every channel not stopped reaches the customer."""

    def __init__(self, messages_per_week: int) -> None:
        self.messages_per_week = messages_per_week
        self.sent: dict[str, list[datetime]] = {}
        self.stopped: dict[str, set[Channel]] = {}

    def deliver(self, customer_id: str, request: NotifyRequest, at: datetime) -> list[Delivery]:
        """What the step's deliveries are, as the notify activity would report them."""
        sent = self.sent.setdefault(customer_id, [])

        def in_window() -> int:
            return sum(at - when < CAP_WINDOW for when in sent)

        capped = not request.conversation  # a conversation kept its own budget
        if capped and gives_way_to_cap(request.tone, in_window, self.messages_per_week):
            return [Delivery(channel=c, status=DeliveryStatus.SKIPPED) for c in request.channels]
        stopped = self.stopped.get(customer_id, set())
        deliveries = [self._one(c, stopped) for c in request.channels]
        reached = {d.channel for d in deliveries if d.status is DeliveryStatus.SENT}
        if needs_fallback(request.channels, reached):
            fallback = [c for c in fallback_channels(request.channels) if c not in stopped]
            if fallback:
                deliveries.append(self._one(fallback[0], stopped))
        sent += [at for d in deliveries if d.status is DeliveryStatus.SENT and _capped(d)]
        return deliveries

    def stop(self, customer_id: str, channel: Channel) -> None:
        """The customer opted out of `channel`."""
        self.stopped.setdefault(customer_id, set()).add(channel)

    @staticmethod
    def _one(channel: Channel, stopped: set[Channel]) -> Delivery:
        if channel in stopped:
            return Delivery(channel=channel, status=DeliveryStatus.SKIPPED, detail="opted out")
        return Delivery(channel=channel, status=DeliveryStatus.SENT)


def _capped(delivery: Delivery) -> bool:
    return delivery.channel in CAPPED_CHANNELS


class _CaseSimulation:
    """The durable driver's loop, with a virtual clock and the world's answers."""

    def __init__(
        self,
        case: SimCase,
        policy: Policy,
        world: World,
        outbox: Outbox,
        dispute_lost_after: timedelta,
        keep_attempts: bool,
        message_model: MessageModel | None = None,
        keep_messages: bool = False,
    ) -> None:
        self.case = case
        self.world = world
        self.outbox = outbox
        self.dispute_lost_after = dispute_lost_after
        self.keep_attempts = keep_attempts
        self.keep_messages = keep_messages
        self.pending: list[tuple[datetime, int, str, Signal | Channel]] = []
        self._order = itertools.count()  # actions due at the same moment keep their order
        self.steps: list[StepRecord] = []
        self.events: list[CustomerEvent] = []
        self.attempts: list[AttemptRecord] = []
        self.reminders: list[tuple[datetime, MessageOutcome]] = []  # answers filled in at the end
        # Opened as `DunningWorkflow.run` opens it: the case, its zones, then any retry plan.
        self.now = case.failed_at
        self.state = CaseState.open(case.case_input(policy), policy, self.now)
        self.state.time_zones = case.time_zones
        self.state.plan_outdated = policy.retry_timing == "smart"
        self.state.conversation = policy.conversation
        self.desk: _CustomerDesk | None = None  # the customer's conversation, if the policy has one
        if policy.message_timing == "learned":
            self.state.follow_message_plan(plan_messages(message_model, case.country), self.now)

    def run(self) -> Generator[PlanFacts | datetime | None, RetryPlan | None, CaseRun]:
        """The case's steps; yields when it needs a retry plan, and is sent the plan. With a
        conversation, it also yields before each wait when it wakes next (None: at a signal),
        so that the cases of a customer and their conversation go on in time order."""
        state = self.state
        if self.desk is not None:
            self.desk.hear(joined_note(state, self.case.id), self.now)
        for _ in range(MAX_STEPS):
            if state.plan_outdated:
                plan = yield self._plan_facts()
                state.follow_plan(plan, self.now)
            state.expire_pause(self.now)
            if self.desk is not None and state.promise_to_share is not None:
                self.desk.hear(promised_note(state), self.now)
            step = decide(state, self.now)
            self.steps.append(StepRecord.of(step, self.now))
            match step:
                case Charge():
                    self._charge(step)
                case Notify():
                    self._notify(step)
                case Wait() | AwaitPaymentMethod():
                    if self.desk is not None:
                        yield self._wakes_at(step.until)
                    self._wait(step.until)
                case Finish():
                    self._finish(step)
                    if self.desk is not None:
                        self.desk.hear(left_note(state), self.now)
                    return self._result()
                case AddLateFee():
                    # The simulated biller takes every fee: only the messages after it change.
                    added = late_fee_request(state, step) is not None
                    fold_late_fee(state, step, "simulated" if added else None, self.now)
                case Call():
                    # Nobody phones a simulated customer: the step is settled, no task made.
                    fold_call_task(state, step, None, self.now)
        raise SimulationError(f"case {self.case.id}: no outcome after {MAX_STEPS} steps")

    def _plan_facts(self, facts: PlanFacts | None = None) -> PlanFacts:
        """The case's planning facts with what the store would add: the customer's history."""
        facts = facts or self.state.plan_facts(self.now)
        return facts.model_copy(update={"paid_history": self.case.paid_history})

    def _charge(self, step: Charge) -> None:
        request = charge_request(self.state, step, self.now)
        answer = self.world.charge(self.case, step.attempt, self.now)
        if self.keep_attempts and request.plan_facts is not None:
            # What the charge activity stores with a scheduled retry, for training.
            self.attempts.append(
                AttemptRecord(
                    facts=self._plan_facts(request.plan_facts),
                    at=self.now,
                    approved=answer.approved,
                    propensity=request.propensity or 1.0,
                )
            )
        fold_charge(self.state, step, answer.result(request.payment_method), self.now)
        self.steps[-1].approved = answer.approved

    def _notify(self, step: Notify, respond: bool = True) -> None:
        if self.desk is not None and step.tone is not None:
            # A reminder: the customer's conversation sends it, as CustomerWorkflow does.
            self.desk.hear(reminder_note(self.state, step, self.case.id, self.now), self.now)
            self.state.hand_over(step.step, step.covers, step.tone, self.now)
            return
        request = notify_request(self.state, step, self.now)
        deliveries = self.outbox.deliver(self.case.customer_id, request, self.now)
        fold_message(self.state, step, deliveries, self.now)
        sent = [d.channel for d in deliveries if d.status is DeliveryStatus.SENT]
        if self.keep_messages and sent and step.tone is not None:
            self._keep_reminder(step)
        if respond and sent:
            message = SentMessage.of(request).model_copy(update={"channels": sent})
            action = self.world.respond(self.case, message, self.now)
            if action is not None:
                self._schedule(action)

    def _keep_reminder(self, step: Notify) -> None:
        """A reminder that reached the customer, as the learner will see it (the customer's
        answer is filled in from the events at the end)."""
        zone = self.case.time_zone
        outcome = MessageOutcome(
            segment=segment_of(self.case.country),
            hour=self.now.astimezone(ZoneInfo(zone)).hour if zone else None,
            tone=step.tone,
            channels=step.channels,
            acted=False,
            lost=False,
            hour_propensity=step.hour_propensity or 1.0,
            channel_propensity=step.channel_propensity or 1.0,
        )
        self.reminders.append((self.now, outcome))

    def _message_outcomes(self) -> list[MessageOutcome]:
        """Each kept reminder with what the customer did within `OUTCOME_WINDOW` of it."""
        outcomes = []
        for sent_at, outcome in self.reminders:
            answers = {e.action for e in self.events if sent_at < e.at <= sent_at + OUTCOME_WINDOW}
            update = {"acted": bool(answers & ACTED), "lost": bool(answers & LOST)}
            outcomes.append(outcome.model_copy(update=update))
        return outcomes

    def _wakes_at(self, until: datetime | None) -> datetime | None:
        """When a wait for `until` ends: at its timeout or the next action, if sooner."""
        timeout = wait_timeout(until, self.now)
        times = [self.now + timeout] if timeout is not None else []
        times += [self.pending[0][0]] if self.pending else []
        return max(min(times), self.now) if times else None

    def _wait(self, until: datetime | None) -> None:
        """Sleep like `DunningWorkflow._wait`: until the timeout, or the next signal."""
        timeout = wait_timeout(until, self.now)
        wake = None if timeout is None else self.now + timeout
        if self.pending and (wake is None or self.pending[0][0] < wake):
            at, _, action, signal = heapq.heappop(self.pending)
            self.now = max(self.now, at)
            self._apply(action, signal)
        elif wake is not None:
            self.now = wake
        else:
            raise SimulationError(
                f"case {self.case.id}: waits for a signal no customer will send "
                f"({self.state.status} since {self.now:%Y-%m-%d %H:%M} UTC)"
            )

    def _finish(self, step: Finish) -> None:
        self.state.conclude(step.outcome, step.reason, self.now)
        if step.message is not None:
            self.steps.append(StepRecord.of(step.message, self.now))
            if self.desk is not None:  # the conversation sends it, with others ending now
                note = outcome_note(self.state, step.message, self.case.id, self.now)
                self.desk.hear(note, self.now)
            else:
                self._notify(step.message, respond=False)

    def _schedule(self, action: CustomerAction) -> None:
        at = max(action.at, self.now)
        match action.kind:
            case ActionKind.UPDATE_CARD:
                token = f"pm_new_{self.case.id}"
                signal = PaymentMethodUpdated(payment_method=token, actor="customer")
            case ActionKind.PAY:
                # The amount is what is due when the customer pays: filled in then.
                signal = PaymentReceived(
                    amount=1, reference="invoice page", actor="customer", paid_at_biller=True
                )
            case ActionKind.DISPUTE:
                signal = DisputeOpened(reason="the customer disputed the charge", actor="customer")
                lost = DisputeResolved(won=False, actor="issuer")
                self._push(at + self.dispute_lost_after, "dispute_lost", lost)
            case ActionKind.CANCEL:
                signal = CancelRequest(reason="the customer cancelled", actor="customer")
            case ActionKind.OPT_OUT:
                signal = action.channel  # a suppression in the store, not a signal to the case
        self._push(at, action.kind.value, signal)

    def _push(self, at: datetime, action: str, signal: Signal | Channel) -> None:
        heapq.heappush(self.pending, (at, next(self._order), action, signal))

    def _apply(self, action: str, signal: Signal | Channel) -> None:
        if isinstance(signal, ConversationReply):  # the conversation, not the customer
            fold_signal(self.state, signal, self.now)
            return
        if isinstance(signal, Channel):
            self.outbox.stop(self.case.customer_id, signal)
            self.events.append(
                CustomerEvent(at=self.now, action=action, signal="", payload={"channel": signal})
            )
            return
        if isinstance(signal, PaymentReceived):
            signal = signal.model_copy(update={"amount": max(self.state.amount_due, 1)})
        self.events.append(
            CustomerEvent(
                at=self.now,
                action=action,
                signal=signal_name(type(signal)),
                payload=signal.model_dump(mode="json"),
            )
        )
        fold_signal(self.state, signal, self.now)

    def _result(self) -> CaseRun:
        state = self.state
        closed_at = state.closed_at or self.now
        recovered = state.outcome is Outcome.RECOVERED
        return CaseRun(
            case_id=self.case.id,
            outcome=state.outcome,
            reason=state.outcome_reason,
            currency=self.case.currency,
            amount=self.case.amount,
            recovered=state.amount_recovered,
            charges=len(state.attempts),
            messages_sent=state.messages_sent,
            failed_at=self.case.failed_at,
            closed_at=closed_at,
            days_to_recover=(
                (closed_at - self.case.failed_at) / timedelta(days=1) if recovered else None
            ),
            steps=self.steps,
            events=self.events,
            attempts=self.attempts,
            message_outcomes=self._message_outcomes(),
        )


def summarise(policy: Policy, runs: list[CaseRun]) -> PolicyResult:
    """A policy's figures over its case runs."""
    due: Counter[str] = Counter()
    recovered: Counter[str] = Counter()
    for run in runs:
        due[run.currency] += run.amount
        recovered[run.currency] += run.recovered
    outcomes = Counter(run.outcome for run in runs)
    days = [run.days_to_recover for run in runs if run.days_to_recover is not None]
    return PolicyResult(
        policy=policy.label,
        cases=len(runs),
        recovered_cases=outcomes[Outcome.RECOVERED],
        recovery_rate=outcomes[Outcome.RECOVERED] / len(runs) if runs else 0.0,
        amount_due=dict(sorted(due.items())),
        recovered_revenue={currency: recovered[currency] for currency in sorted(due)},
        charges_attempted=sum(run.charges for run in runs),
        messages_sent=sum(run.messages_sent for run in runs),
        median_days_to_recover=round(statistics.median(days), 2) if days else None,
        customers_lost=outcomes[Outcome.CANCELLED],
        collections=outcomes[Outcome.COLLECTIONS],
        runs=runs,
    )


def population(world: World, n: int, seed: int, start: datetime, cohort: str) -> list[SimCase]:
    """The world's own cases when it brings them, else the synthetic generator's (the
    history cohort from another seed, so other customers and other luck)."""
    if isinstance(world, PopulatedWorld):
        return world.population(n, start, cohort)
    return generate_cases(n, seed if cohort == LIVE else seed + 1_000_003, start)


def training_history(
    policy: Policy, world_path: str, n_cases: int, seed: int, start: datetime
) -> list[CaseRun]:
    """The month before `start`, as a new install running `policy` without models would have
    logged it: the fixed schedule and the reminders as written, explored as the policy says;
    each run keeps its retries and reminders as training records."""
    world = load_world(world_path, seed)
    cases = population(world, n_cases, seed, start - TRAINING_WINDOW, HISTORY)
    result = simulate(cases, policy, world, keep_attempts=True, keep_messages=True)
    return result.runs


def train_models(
    policy: Policy, world_path: str, n_cases: int, seed: int, start: datetime
) -> tuple[RetryModel, MessageModel]:
    """A retry model and a message model fitted on the world's history under `policy` (see
    `training_history`)."""
    runs = training_history(policy, world_path, n_cases, seed, start)
    attempts = [record for run in runs for record in run.attempts]
    reminders = [outcome for run in runs for outcome in run.message_outcomes]
    return fit(attempts, version=1, now=start), fit_messages(reminders, version=1, now=start)


def train_retry_model(
    policy: Policy, world_path: str, n_cases: int, seed: int, start: datetime
) -> RetryModel:
    """A retry model fitted on the world's history under `policy` (see `training_history`)."""
    return train_models(policy, world_path, n_cases, seed, start)[0]


def compare(
    policies: list[Policy],
    world_path: str = DEFAULT_WORLD,
    n_cases: int = 1000,
    seed: int = 1,
    start: datetime = DEFAULT_START,
    cases: list[SimCase] | None = None,
    retry_model: RetryScorer | None = None,
    message_model: MessageModel | None = None,
) -> SimulationReport:
    """Every policy over the same cases, each in a fresh world from `world_path` and `seed`.

    Cases are the world's own (`n_cases` from `start`), else the synthetic generator's,
    unless given. Smart-timed policies plan with `retry_model` and learned message timing
    with `message_model`; without a retry model, both are trained on the month before under
    the first policy compared that learns either."""
    if not policies:
        raise ValueError("compare needs at least one policy")
    if cases is None:
        cases = population(load_world(world_path, seed), n_cases, seed, start, LIVE)
    model_note = message_note = None
    learner = next((p for p in policies if _learns(p)), None)
    trained = learner is not None and retry_model is None
    if trained:
        retry_model, message_model = train_models(learner, world_path, len(cases), seed, start)
    if retry_model is not None and any(p.retry_timing == "smart" for p in policies):
        model_note = f"model v{retry_model.version} ({retry_model.trained_on} attempts)"
        if trained:
            model_note = f"trained on {retry_model.trained_on} simulated attempts"
            model_note += f" of the 4 weeks before, under {learner.label} without a model"
    if message_model is not None and any(p.message_timing == "learned" for p in policies):
        message_note = f"model v{message_model.version} ({message_model.trained_on} reminders)"
        if trained:
            message_note = f"trained on {message_model.trained_on} simulated reminders"
            message_note += " of the same 4 weeks"
    results = [
        simulate(
            cases,
            policy,
            load_world(world_path, seed),
            retry_model=retry_model,
            message_model=message_model,
        )
        for policy in policies
    ]
    first = results[0].recovered_revenue
    for result in results:
        if len(first) == 1 and result.recovered_revenue.keys() == first.keys():
            (currency,) = first
            base = first[currency]
            result.revenue_ratio = result.recovered_revenue[currency] / base if base else None
    return SimulationReport(
        world=world_path,
        seed=seed,
        cases=len(cases),
        start=start,
        retry_model=model_note,
        message_model=message_note,
        policies=results,
    )


def _learns(policy: Policy) -> bool:
    return policy.retry_timing == "smart" or policy.message_timing == "learned"
