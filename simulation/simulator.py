"""Run dunning policies over many cases offline: the policy core the workflow uses, a
virtual clock instead of Temporal, and a `World` instead of gateways and customers.

Each case goes round the loop `DunningWorkflow.run` goes round: resume an expired pause,
ask `decide` for the next step, carry it out, fold the result in. Requests are built and
results folded by `workflows.steps`, the functions the workflow itself calls, so a simulated
case takes the steps a durable one would, at the same times, given the same answers:

- Charge: the world answers the charge; the answer folds in like the gateway's.
- Notify: every delivery counts as sent; the customer may answer with an action later.
- Wait / AwaitPaymentMethod: the clock moves to the wait's end or to the customer's next
  action, whichever comes first; an action reaches the case as the workflow's signal would.
- Finish: the case concludes (and sends its outcome message, if the policy has one).

A policy with smart retry timing plans its retries once at the start, as the workflow does,
with `workflows.smart_retry.plan_retries` and the retry model given (the one a worker would
read); `compare` trains one on simulated history when none is given.
"""

from __future__ import annotations

import heapq
import itertools
import statistics
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, Field

from simulation.synthetic import generate_cases
from simulation.world import ActionKind, CustomerAction, SentMessage, SimCase, World, load_world
from workflows.case import CaseState
from workflows.decide import AwaitPaymentMethod, Charge, Finish, Notify, Step, Wait, decide
from workflows.dunning import SIGNALS, signal_name
from workflows.models import (
    CancelRequest,
    Delivery,
    DeliveryStatus,
    DisputeOpened,
    DisputeResolved,
    PaymentMethodUpdated,
    PaymentReceived,
)
from workflows.policy import Outcome, Policy
from workflows.smart_retry import AttemptRecord, RetryModel, fit, plan_retries
from workflows.steps import (
    Signal,
    charge_request,
    fold_charge,
    fold_message,
    fold_signal,
    notify_request,
    wait_timeout,
)

DEFAULT_WORLD = "simulation.synthetic:factory"
DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC)
DISPUTE_LOST_AFTER = timedelta(days=10)
TRAINING_WINDOW = timedelta(days=28)
MAX_STEPS = 1000

# The payload each DunningWorkflow signal carries, by the signal's name.
SIGNAL_TYPES = {signal_name(model): model for model in SIGNALS}


class SimulationError(RuntimeError):
    """A case could not be simulated to its end (it would wait forever, or never settle)."""


class StepRecord(BaseModel):
    """One step the policy core took, with the fields that tell two runs apart."""

    kind: Literal["charge", "notify", "wait", "await_payment_method", "finish"]
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
    policies: list[PolicyResult]


def simulate(
    cases: Iterable[SimCase],
    policy: Policy,
    world: World,
    *,
    retry_model: RetryModel | None = None,
    dispute_lost_after: timedelta = DISPUTE_LOST_AFTER,
) -> PolicyResult:
    """Run every case under `policy` in `world` and sum up the outcomes.

    Use a fresh world per call: a world may remember what its customers decided. A
    smart-timed policy plans with `retry_model` (None: the policy's fixed schedule)."""
    runs = [
        run_case(
            case, policy, world, retry_model=retry_model, dispute_lost_after=dispute_lost_after
        )
        for case in cases
    ]
    return summarise(policy, runs)


def run_case(
    case: SimCase,
    policy: Policy,
    world: World,
    *,
    retry_model: RetryModel | None = None,
    dispute_lost_after: timedelta = DISPUTE_LOST_AFTER,
) -> CaseRun:
    """One case from its failure to its outcome, on a virtual clock."""
    return _CaseSimulation(case, policy, world, retry_model, dispute_lost_after).run()


class _CaseSimulation:
    """The durable driver's loop, with a virtual clock and the world's answers."""

    def __init__(
        self,
        case: SimCase,
        policy: Policy,
        world: World,
        retry_model: RetryModel | None,
        dispute_lost_after: timedelta,
    ) -> None:
        self.case = case
        self.world = world
        self.dispute_lost_after = dispute_lost_after
        self.pending: list[tuple[datetime, int, str, Signal]] = []
        self._order = itertools.count()  # actions due at the same moment keep their order
        self.steps: list[StepRecord] = []
        self.events: list[CustomerEvent] = []
        # Opened as `DunningWorkflow.run` opens it: the case, its zones, then any retry plan.
        self.now = case.failed_at
        self.state = CaseState.open(case.case_input(policy), policy, self.now)
        self.state.time_zones = case.time_zones
        if policy.retry_timing == "smart":
            plan = plan_retries(retry_model, self.state.plan_facts(self.now), policy)
            self.state.follow_plan(plan, self.now)

    def run(self) -> CaseRun:
        state = self.state
        for _ in range(MAX_STEPS):
            state.expire_pause(self.now)
            step = decide(state, self.now)
            self.steps.append(StepRecord.of(step, self.now))
            match step:
                case Charge():
                    self._charge(step)
                case Notify():
                    self._notify(step)
                case Wait() | AwaitPaymentMethod():
                    self._wait(step.until)
                case Finish():
                    self._finish(step)
                    return self._result()
        raise SimulationError(f"case {self.case.id}: no outcome after {MAX_STEPS} steps")

    def _charge(self, step: Charge) -> None:
        request = charge_request(self.state, step)
        answer = self.world.charge(self.case, step.attempt, self.now)
        fold_charge(self.state, step, answer.result(request.payment_method), self.now)
        self.steps[-1].approved = answer.approved

    def _notify(self, step: Notify, respond: bool = True) -> None:
        request = notify_request(self.state, step, self.now)
        deliveries = [Delivery(channel=c, status=DeliveryStatus.SENT) for c in request.channels]
        fold_message(self.state, step, deliveries, self.now)
        if respond:
            action = self.world.respond(self.case, SentMessage.of(request), self.now)
            if action is not None:
                self._schedule(action)

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
        self._push(at, action.kind.value, signal)

    def _push(self, at: datetime, action: str, signal: Signal) -> None:
        heapq.heappush(self.pending, (at, next(self._order), action, signal))

    def _apply(self, action: str, signal: Signal) -> None:
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


def attempt_history(
    cases: list[SimCase], runs: list[CaseRun], policy: Policy
) -> list[AttemptRecord]:
    """The scheduled retries of simulated runs, as `dunning model train` reads them from the
    store: with the case's opening decline and the zone billing knows, no card brand."""
    by_id = {case.id: case for case in cases}
    history = []
    for run in runs:
        case = by_id[run.case_id]
        for step in run.steps:
            if step.kind != "charge" or not step.scheduled:
                continue  # a new card's charge says nothing about when to retry the old one
            history.append(
                AttemptRecord(
                    case_id=case.id,
                    at=step.at,
                    approved=bool(step.approved),
                    attempt=step.attempt,
                    failed_at=case.failed_at,
                    decline_code=case.failure.decline_code,
                    decline_class=policy.declines.classify(case.failure),
                    amount=case.amount,
                    currency=case.currency,
                    time_zone=case.time_zone,
                )
            )
    return history


def train_retry_model(
    policy: Policy, world_path: str, n_cases: int, seed: int, start: datetime
) -> RetryModel:
    """A retry model fitted on the attempts of last month's cases (other customers than
    the compared ones) under the fixed-timed `policy`, as a worker's model would be."""
    if policy.retry_timing != "fixed":
        raise ValueError(f"train on a fixed-timed policy, not {policy.label}")
    cases = generate_cases(n_cases, _training_seed(seed), start - TRAINING_WINDOW)
    result = simulate(cases, policy, load_world(world_path, seed))
    return fit(attempt_history(cases, result.runs, policy), version=1, now=start)


def _training_seed(seed: int) -> int:
    # Another seed gives other case ids, so other customers and other luck.
    return seed + 1_000_003


def compare(
    policies: list[Policy],
    world_path: str = DEFAULT_WORLD,
    n_cases: int = 1000,
    seed: int = 1,
    start: datetime = DEFAULT_START,
    cases: list[SimCase] | None = None,
    retry_model: RetryModel | None = None,
) -> SimulationReport:
    """Every policy over the same cases, each in a fresh world from `world_path` and `seed`.

    Cases are the synthetic generator's (`n_cases` from `seed` and `start`) unless given.
    Smart-timed policies plan with `retry_model`; without one, with a model trained on the
    month before under the first fixed-timed policy compared (or none, if all are smart)."""
    if not policies:
        raise ValueError("compare needs at least one policy")
    if cases is None:
        cases = generate_cases(n_cases, seed, start)
    model_note = None
    if any(policy.retry_timing == "smart" for policy in policies):
        if retry_model is None:
            baseline = next((p for p in policies if p.retry_timing == "fixed"), None)
            if baseline is None:
                model_note = "no model (no fixed-timed policy to train on): fixed schedules"
            else:
                retry_model = train_retry_model(baseline, world_path, len(cases), seed, start)
                model_note = f"trained on {retry_model.trained_on} simulated attempts"
                model_note += f" of the 4 weeks before, under {baseline.label}"
        else:
            model_note = f"model v{retry_model.version} ({retry_model.trained_on} attempts)"
    results = [
        simulate(cases, policy, load_world(world_path, seed), retry_model=retry_model)
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
        policies=results,
    )
