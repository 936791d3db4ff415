"""The offline simulator: it takes the steps the workflow takes, and its figures hold still.

The first tests run the same case twice, through the simulator and through the real
DunningWorkflow on the time-skipping server, with the same world behind both: the
workflow's charges reach the world through a `Processor` that asks it, and the
customer's actions the simulator applied reach the workflow as signals at the same virtual
times. Both runs must take the same steps (charges, messages, waits) at the same times.
The rest check the synthetic world's model, determinism, policy comparison and the CLI.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from temporalio import activity
from temporalio.client import WorkflowHandle

from activities.retry_training import write_model
from activities.store import CustomerProfile
from config.policies import find_policy, load_policies
from simulation.cli import main
from simulation.simulator import (
    DEFAULT_START,
    DEFAULT_WORLD,
    CaseRun,
    SimulationReport,
    StepRecord,
    compare,
    run_case,
    simulate,
    train_retry_model,
)
from simulation.synthetic import HARD_CODES, SyntheticWorld, factory, generate_cases, is_payday
from simulation.world import (
    ActionKind,
    ChargeAnswer,
    CustomerAction,
    SentMessage,
    SimCase,
    World,
    WorldError,
    load_world,
)
from tests.support.harness import Dunning
from workflows.models import (
    CaseResult,
    ChargeRequest,
    ChargeResult,
    NotifyRequest,
    WriteBackRequest,
    WriteBackResult,
)
from workflows.policy import DeclineClass, DeclineCodes, Outcome, Policy
from workflows.retry_model import RetryModel
from workflows.smart_retry import SLOT_HOURS
from workflows.steps import CloseCaseRequest, wait_timeout

UPDATE_CARD, PAY, DISPUTE = ActionKind.UPDATE_CARD, ActionKind.PAY, ActionKind.DISPUTE
CONFIG = Path(__file__).resolve().parents[2] / "config"
POLICIES = load_policies(CONFIG / "policies", CONFIG / "declines.toml")
STANDARD = find_policy(POLICIES, "standard")
DEMO = find_policy(POLICIES, "demo")
# Smart timing's parity: v2, whose cases send their own reminders (v3's conversation has
# tests of its own, tests/simulation/test_conversation_sim.py).
SMART = find_policy(POLICIES, "smart", 2)
START = datetime(2026, 3, 2, tzinfo=UTC)
# The workflow acts a few milliseconds after the moment it decided on; on a loaded machine
# (two cores, a full suite beside it) its first steps have been seen two seconds late. Every
# schedule compared here is hours or days apart, so a few seconds still tells steps apart.
SAME_MOMENT = timedelta(seconds=5)


# A world written down, and payments that ask a world --------------------------------------


class ScriptedWorld:
    """A `World` whose answers are written down: charge n is declined with `declines[n-1]`,
    later charges are approved (or declined like the last, when `approve_later` is False);
    a message step in `actions` brings that action after its delay."""

    def __init__(
        self,
        declines: list[str],
        approve_later: bool = True,
        actions: dict[str, tuple[ActionKind, timedelta]] | None = None,
    ) -> None:
        self.declines = declines
        self.approve_later = approve_later
        self.actions = actions or {}

    def charge(self, case: SimCase, attempt: int, at: datetime) -> ChargeAnswer:
        if attempt <= len(self.declines):
            return ChargeAnswer.declined_with(self.declines[attempt - 1])
        if self.approve_later:
            return ChargeAnswer.approval()
        return ChargeAnswer.declined_with(self.declines[-1])

    def respond(self, case: SimCase, message: SentMessage, at: datetime) -> CustomerAction | None:
        if message.step not in self.actions:
            return None
        kind, delay = self.actions[message.step]
        return CustomerAction(kind=kind, at=at + delay)


class WorldPayments:
    """A `Processor` and `Biller` whose answers come from a `World`, asked at the activity's virtual
    time: the workflow's charges meet the world the simulator's did."""

    def __init__(self, world: World, cases: list[SimCase]) -> None:
        self.world = world
        self.cases = {case.id: case for case in cases}

    def charge(self, request: ChargeRequest) -> ChargeResult:
        at = activity.info().current_attempt_scheduled_time
        answer = self.world.charge(self.cases[request.case_id], request.attempt, at)
        return answer.result(request.payment_method)

    def settlement(self, invoice_id: str) -> None:
        return None  # a world's invoices are settled only by its cases' own charges

    def write_back(self, request: WriteBackRequest) -> WriteBackResult:
        return WriteBackResult(done=True, detail="simulated")


# Running one case both ways ----------------------------------------------------------------


Comparable = tuple[str, str, datetime]


def simulated_steps(run: CaseRun) -> list[Comparable]:
    """(kind, what, when) of the steps the workflow's history shows: charges and messages
    when they were decided, timed waits when they end."""
    rows: list[Comparable] = []
    for record in run.steps:
        match record.kind:
            case "charge":
                rows.append(("charge", f"attempt {record.attempt}", record.at))
            case "notify":
                rows.append(("notify", f"{record.step} {record.template}", record.at))
            case "wait" | "await_payment_method" if record.until is not None:
                rows.append(("wait", "", record.at + wait_timeout(record.until, record.at)))
    return rows


async def workflow_steps(dunning: Dunning, handle: WorkflowHandle) -> list[Comparable]:
    """The same rows, read from the workflow's event history."""
    converter = dunning.env.client.data_converter
    rows: list[Comparable] = []
    for event in (await handle.fetch_history()).events:
        at = event.event_time.ToDatetime(tzinfo=UTC)
        if event.HasField("activity_task_scheduled_event_attributes"):
            attributes = event.activity_task_scheduled_event_attributes
            payloads = attributes.input.payloads
            if attributes.activity_type.name == "charge":
                (request,) = await converter.decode(payloads, [ChargeRequest])
                rows.append(("charge", f"attempt {request.attempt}", at))
            elif attributes.activity_type.name == "notify":
                (request,) = await converter.decode(payloads, [NotifyRequest])
                rows.append(("notify", f"{request.step} {request.template}", request.at))
            elif attributes.activity_type.name == "close_case":
                # A lean case sends its outcome message with the rest of its closing.
                (closing,) = await converter.decode(payloads, [CloseCaseRequest])
                if (message := closing.message) is not None:
                    rows.append(("notify", f"{message.step} {message.template}", message.at))
        elif event.HasField("timer_started_event_attributes"):
            timeout = event.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
            rows.append(("wait", "", at + timeout))
    return rows


async def signal_times(handle: WorkflowHandle) -> list[tuple[str, datetime]]:
    """(signal name, virtual time) of every signal the workflow received."""
    return [
        (
            event.workflow_execution_signaled_event_attributes.signal_name,
            event.event_time.ToDatetime(tzinfo=UTC),
        )
        for event in (await handle.fetch_history()).events
        if event.HasField("workflow_execution_signaled_event_attributes")
    ]


def assert_same_steps(simulated: list[Comparable], durable: list[Comparable]) -> None:
    """Same kinds and details in the same order, each within `SAME_MOMENT` of the other."""
    assert [row[:2] for row in simulated] == [row[:2] for row in durable]
    for sim, wf in zip(simulated, durable, strict=True):
        assert abs(sim[2] - wf[2]) <= SAME_MOMENT, f"{sim} vs {wf}"


async def run_both(
    dunning: Dunning,
    case: SimCase,
    make_world: Callable[[], World],
    policy: Policy = STANDARD,
    retry_model: RetryModel | None = None,
) -> tuple[CaseRun, CaseResult]:
    """The case through the simulator, then through DunningWorkflow: the same world (a fresh
    one for the simulator, then the same instance behind the workflow's processor), and the
    customer's actions as signals at the times the simulator applied them. Compares steps."""
    world = make_world()
    run = run_case(case, policy, world, retry_model=retry_model)

    dunning.activities.processor = dunning.activities.biller = WorldPayments(world, [case])
    dunning.activities.store.upsert_customer(
        CustomerProfile(
            customer_id=case.customer_id,
            name="Sam",
            email=f"{case.customer_id}@example.com",
            phone="+15555550123",  # a number that names no time zone
            time_zone=case.time_zone,
            payment_method=case.payment_method,
        )
    )
    async with dunning.worker():
        handle = await dunning.start(case.case_input(policy))
        for event in run.events:
            await dunning.env.sleep(max(event.at - await dunning.now(), timedelta(0)))
            await handle.signal(event.signal, event.signal_payload())
        result = await asyncio.wait_for(handle.result(), timeout=60)

    assert_same_steps(simulated_steps(run), await workflow_steps(dunning, handle))
    received = await signal_times(handle)
    assert [name for name, _ in received] == [event.signal for event in run.events]
    for (_, at), event in zip(received, run.events, strict=True):
        assert abs(at - event.at) <= SAME_MOMENT
    assert (result.outcome, result.reason) == (run.outcome, run.reason)
    assert (result.amount_recovered, result.charge_attempts) == (run.recovered, run.charges)
    assert result.messages_sent == run.messages_sent
    assert abs(result.closed_at - run.closed_at) <= SAME_MOMENT
    return run, result


async def sim_case(dunning: Dunning, decline_code: str, **fields: object) -> SimCase:
    """A case that failed now, on the test server's clock."""
    return SimCase(
        id=f"sim-{decline_code}",
        customer_id="cus-sim",
        amount=2900,
        failure=DeclineCodes(decline_code=decline_code),
        failed_at=await dunning.now(),
        **fields,
    )


def kinds(run: CaseRun) -> list[str]:
    return [step.kind for step in run.steps]


# The simulator and the workflow take the same steps ----------------------------------------


async def test_soft_decline_recovering_on_a_later_retry_takes_the_workflows_steps(
    dunning: Dunning,
) -> None:
    case = await sim_case(dunning, "insufficient_funds", time_zone="America/New_York")
    run, _ = await run_both(
        dunning, case, lambda: ScriptedWorld(["insufficient_funds", "do_not_honor"])
    )

    assert run.outcome is Outcome.RECOVERED
    assert run.reason == "charge attempt 3 approved"
    charges = [step for step in run.steps if step.kind == "charge"]
    assert [(c.attempt, c.approved) for c in charges] == [(1, False), (2, False), (3, True)]
    for charge, day in zip(charges, [1, 3, 5], strict=True):
        assert charge.at == case.failed_at + timedelta(days=day)
    assert run.days_to_recover == pytest.approx(5)


async def test_hard_decline_then_new_card_after_a_reminder_takes_the_workflows_steps(
    dunning: Dunning,
) -> None:
    case = await sim_case(dunning, "stolen_card", time_zone="Asia/Tokyo")

    def world() -> World:
        return ScriptedWorld([], actions={"reminder-2": (UPDATE_CARD, timedelta(hours=6))})

    run, _ = await run_both(dunning, case, world)

    assert run.outcome is Outcome.RECOVERED
    (update,) = run.events
    assert (update.action, update.signal) == ("update_card", "payment_method_updated")
    reminders = [s for s in run.steps if s.kind == "notify" and s.step.startswith("reminder")]
    assert [r.template for r in reminders] == ["card_update", "card_update"]
    assert update.at == reminders[-1].at + timedelta(hours=6)
    (charge,) = [step for step in run.steps if step.kind == "charge"]
    assert (charge.attempt, charge.scheduled, charge.approved) == (1, False, True)
    assert charge.at == update.at + STANDARD.retry_after_method_update


async def test_exhausted_schedule_goes_to_collections_in_both(dunning: Dunning) -> None:
    case = await sim_case(dunning, "do_not_honor", time_zone="America/Los_Angeles")
    run, result = await run_both(
        dunning, case, lambda: ScriptedWorld(["do_not_honor"], approve_later=False)
    )

    assert run.outcome is Outcome.COLLECTIONS
    assert (run.charges, run.recovered) == (4, 0)
    notices = [s.step for s in run.steps if s.kind == "notify"]
    assert notices == [
        "reminder-1",
        "reminder-2",
        "reminder-3",
        "reminder-4",
        "outcome-collections",
    ]
    assert result.closed_at - case.failed_at >= STANDARD.collections_after


async def test_lost_dispute_cancels_in_both(dunning: Dunning) -> None:
    case = await sim_case(dunning, "generic_decline")

    def world() -> World:
        actions = {"reminder-2": (DISPUTE, timedelta(hours=2))}
        return ScriptedWorld(["generic_decline"], approve_later=False, actions=actions)

    run, _ = await run_both(dunning, case, world)

    assert run.outcome is Outcome.CANCELLED
    assert run.reason == "dispute lost"
    opened, lost = run.events
    assert (opened.signal, lost.signal) == ("dispute_opened", "dispute_resolved")
    assert lost.at - opened.at == timedelta(days=10)


async def test_smart_timed_case_follows_the_same_plan_in_both(
    dunning: Dunning, tmp_path: Path
) -> None:
    model = train_retry_model(STANDARD, DEFAULT_WORLD, 400, 4, START)
    assert model.trained_on >= 200  # enough history: the plan is the model's, not fixed
    dunning.activities.retry_models_dir = tmp_path / "models"
    write_model(model, dunning.activities.retry_models_dir)
    case = await sim_case(dunning, "insufficient_funds", time_zone="Europe/Berlin")

    world = ScriptedWorld(["insufficient_funds"] * 3)
    planned = run_case(case, SMART, world, retry_model=model)
    fixed = run_case(case, SMART, world)
    assert [s.at for s in planned.steps if s.kind == "charge"] != [
        s.at for s in fixed.steps if s.kind == "charge"
    ]

    def make_world() -> World:
        return world

    run, _ = await run_both(dunning, case, make_world, policy=SMART, retry_model=model)
    assert run.outcome is Outcome.RECOVERED and run.charges == 4


SYNTHETIC_SEED = 11


def _retried_into_recovery(run: CaseRun, case: SimCase) -> bool:
    return run.outcome is Outcome.RECOVERED and not run.events and run.charges >= 2


def _new_card_after_hard_decline(run: CaseRun, case: SimCase) -> bool:
    hard = case.failure.decline_code in HARD_CODES
    return hard and run.outcome is Outcome.RECOVERED and run.events[0].action == "update_card"


def _customer_paid(run: CaseRun, case: SimCase) -> bool:
    return [e.action for e in run.events] == ["pay"]


def _collections(run: CaseRun, case: SimCase) -> bool:
    return run.outcome is Outcome.COLLECTIONS


@pytest.mark.parametrize(
    "story",
    [_retried_into_recovery, _new_card_after_hard_decline, _customer_paid, _collections],
    ids=lambda story: story.__name__.strip("_"),
)
async def test_synthetic_cases_take_the_workflows_steps(
    dunning: Dunning, story: Callable[[CaseRun, SimCase], bool]
) -> None:
    now = await dunning.now()
    cases = generate_cases(300, SYNTHETIC_SEED, START)
    cases = [case.model_copy(update={"failed_at": now}) for case in cases]
    world = factory(SYNTHETIC_SEED)
    chosen = next((c for c in cases if story(run_case(c, STANDARD, world), c)), None)
    assert chosen is not None, f"no case of 300 tells the story {story.__name__}"

    # Failed now, not a moment ago: the workflow starts on the case's own clock.
    case = chosen.model_copy(update={"failed_at": await dunning.now()})
    run, _ = await run_both(dunning, case, lambda: factory(SYNTHETIC_SEED))
    assert story(run, case)


# The synthetic world -----------------------------------------------------------------------


def test_synthetic_declines_are_mostly_soft_with_a_realistic_share_of_hard_ones() -> None:
    cases = generate_cases(5000, 3, START)
    classes = [STANDARD.declines.classify(case.failure) for case in cases]
    hard = classes.count(DeclineClass.NEVER_RETRY) / len(cases)
    assert 0.10 <= hard <= 0.15
    assert classes.count(DeclineClass.RETRY_LATER) == len(cases) - classes.count(
        DeclineClass.NEVER_RETRY
    )
    codes = [case.failure.decline_code for case in cases]
    assert codes.count("insufficient_funds") > codes.count("do_not_honor") > 0
    assert {case.currency for case in cases} == {"USD"}
    assert all(START <= case.failed_at < START + timedelta(days=28) for case in cases)


def test_generated_cases_depend_on_the_seed_not_on_how_many() -> None:
    assert generate_cases(50, 4, START)[:20] == generate_cases(20, 4, START)
    assert generate_cases(20, 4, START) != generate_cases(20, 5, START)


def test_retries_pass_more_often_on_paydays_and_in_business_hours() -> None:
    world = SyntheticWorld(seed=1)
    case = SimCase(
        id="c1",
        customer_id="u1",
        amount=999,
        failure=DeclineCodes(decline_code="insufficient_funds"),
        failed_at=datetime(2026, 3, 10, 14, tzinfo=UTC),
        time_zone="America/New_York",
    )
    weekday_noon = datetime(2026, 3, 12, 16, tzinfo=UTC)  # Thursday, 12:00 in New York
    payday_noon = datetime(2026, 3, 16, 16, tzinfo=UTC)  # Monday after the 15th
    weekday_night = datetime(2026, 3, 12, 7, tzinfo=UTC)  # 03:00 in New York
    assert is_payday(payday_noon.date()) and not is_payday(weekday_noon.date())
    assert is_payday(datetime(2026, 2, 27).date())  # last weekday of February
    chance = world.success_chance
    assert chance(case, payday_noon) >= 2.5 * chance(case, weekday_noon)
    assert chance(case, weekday_noon) > chance(case, weekday_night)
    assert chance(case, case.failed_at + timedelta(hours=2)) < chance(case, weekday_noon)


def test_a_hard_decline_never_passes_on_the_old_card() -> None:
    world = SyntheticWorld(seed=2)
    hard = [c for c in generate_cases(400, 2, START) if c.failure.decline_code in HARD_CODES]
    answers = [world.charge(c, n, c.failed_at + timedelta(days=n)) for c in hard for n in (1, 2)]
    assert answers and not any(answer.approved for answer in answers)


def test_customers_cancel_more_when_messaged_more() -> None:
    def cancels(every: timedelta, channels: list[str]) -> int:
        """Customers who cancel when messaged `every` so often for two weeks."""
        world = SyntheticWorld(seed=9)
        cancelled = 0
        for case in generate_cases(400, 9, START):
            for i in range(int(timedelta(days=14) / every)):
                message = SentMessage(
                    step=f"reminder-{i + 1}",
                    template="reminder_gentle",
                    tone="gentle",
                    channels=channels,
                )
                action = world.respond(case, message, case.failed_at + i * every)
                if action is not None:
                    cancelled += action.kind is ActionKind.CANCEL
                    break
        return cancelled

    calm = cancels(timedelta(days=4), ["email"])
    pushy = cancels(timedelta(hours=12), ["email", "sms"])
    assert pushy > 4 * calm
    assert calm < 400 * 0.05


# Simulating policies -----------------------------------------------------------------------


def test_same_seed_same_report() -> None:
    first = compare([STANDARD, DEMO], n_cases=200, seed=21)
    again = compare([STANDARD, DEMO], n_cases=200, seed=21)
    assert first.model_dump() == again.model_dump()
    other = compare([STANDARD, DEMO], n_cases=200, seed=22)
    assert other.model_dump() != first.model_dump()


def test_a_case_runs_the_same_whatever_the_order_of_cases() -> None:
    cases = generate_cases(120, 8, START)
    forward = simulate(cases, STANDARD, factory(8))
    backward = simulate(list(reversed(cases)), STANDARD, factory(8))
    assert forward.runs == list(reversed(backward.runs))


def test_more_retries_recover_at_least_as_much() -> None:
    patient = Policy.model_validate(
        {
            **STANDARD.model_dump(),
            "name": "patient",
            "retries": [timedelta(days=d) for d in (1, 3, 5, 7, 10, 13)],
        }
    )
    report = compare([STANDARD, patient], n_cases=800, seed=5)
    standard, more = report.policies
    assert more.recovered_revenue["USD"] > standard.recovered_revenue["USD"]
    assert more.recovered_cases > standard.recovered_cases
    assert more.charges_attempted > standard.charges_attempted
    assert more.revenue_ratio > 1 and standard.revenue_ratio == 1


def test_smart_timed_policies_plan_with_a_model_trained_on_simulated_history() -> None:
    report = compare([STANDARD, SMART], n_cases=300, seed=6)
    assert report.retry_model.startswith("trained on ")
    assert report.retry_model.endswith(f"under {SMART.label} without a model")
    smart = report.policies[1]
    # Customers' actions move retries (a new card, a dispute): look at the undisturbed cases.
    retries = [
        (step.at, run.case_id)
        for run in smart.runs
        if not run.events
        for step in run.steps
        if step.kind == "charge" and step.scheduled
    ]
    zones = {c.id: c.time_zone or "UTC" for c in generate_cases(300, 6, DEFAULT_START)}
    local_hours = {at.astimezone(ZoneInfo(zones[case])).hour for at, case in retries}
    # Planned retries fall on the planner's local hours, not on days 1, 3, 5, 7 after it.
    assert retries and local_hours <= set(SLOT_HOURS)
    assert smart.revenue_ratio is not None


def test_smart_policies_without_a_model_keep_the_fixed_schedule_but_explore() -> None:
    cases = generate_cases(300, 6, START)
    result = simulate(cases, SMART, SyntheticWorld(6))
    retries = [
        s.at - r.failed_at
        for r in result.runs
        for s in r.steps
        if s.kind == "charge" and s.scheduled and not r.events
    ]
    fixed = [offset in set(SMART.retries) for offset in retries]
    # Every retry but the explored few (5% of decisions) is on the fixed schedule.
    assert sum(fixed) / len(fixed) > 0.9
    assert not all(fixed)


def test_report_sums_up_the_runs() -> None:
    result = compare([STANDARD], n_cases=300, seed=3).policies[0]
    runs = result.runs
    assert result.cases == len(runs) == 300
    outcomes = [run.outcome for run in runs]
    assert result.recovered_cases == outcomes.count(Outcome.RECOVERED)
    assert result.customers_lost == outcomes.count(Outcome.CANCELLED)
    assert result.collections == outcomes.count(Outcome.COLLECTIONS)
    assert result.recovery_rate == result.recovered_cases / 300
    assert result.recovered_revenue["USD"] == sum(run.recovered for run in runs)
    assert result.charges_attempted == sum(run.charges for run in runs)
    assert result.messages_sent == sum(run.messages_sent for run in runs)
    recovered = [run for run in runs if run.outcome is Outcome.RECOVERED]
    assert all(run.recovered == run.amount and run.days_to_recover >= 0 for run in recovered)
    assert 0 < result.median_days_to_recover < 21
    # A realistic spread: most recover, some are lost, some go to collections.
    assert 0.4 < result.recovery_rate < 0.85
    assert result.customers_lost > 0 and result.collections > 0


def test_customer_actions_reach_the_case_at_their_time_not_the_next_timer() -> None:
    case = SimCase(
        id="c-pay",
        customer_id="u-pay",
        amount=4900,
        failure=DeclineCodes(decline_code="insufficient_funds"),
        failed_at=START,
    )
    world = ScriptedWorld(
        ["insufficient_funds"] * 8, actions={"reminder-1": (PAY, timedelta(hours=30))}
    )
    run = run_case(case, STANDARD, world)
    assert run.outcome is Outcome.RECOVERED
    assert run.closed_at == START + timedelta(hours=30)
    assert run.charges == 1  # retry 1 on day 1, then the payment on the invoice page
    (pay,) = run.events
    assert pay.payload["amount"] == 4900 and pay.payload["paid_at_biller"] is True
    assert kinds(run)[-2:] == ["finish", "notify"]


def test_step_records_name_what_the_workflow_does() -> None:
    case = SimCase(
        id="c-steps",
        customer_id="u-steps",
        amount=999,
        failure=DeclineCodes(decline_code="insufficient_funds"),
        failed_at=START,
    )
    run = run_case(case, STANDARD, ScriptedWorld(["insufficient_funds"]))
    first: StepRecord = run.steps[0]
    assert (first.kind, first.step, first.template, first.at) == (
        "notify",
        "reminder-1",
        "reminder_gentle",
        START,
    )
    assert run.steps[1].kind == "wait" and run.steps[1].until == START + timedelta(days=1)


# Worlds by path, and the command line ------------------------------------------------------


def test_load_world_builds_the_named_factory_with_the_seed() -> None:
    world = load_world("simulation.synthetic:factory", 7)
    assert isinstance(world, SyntheticWorld) and world.seed == 7
    assert isinstance(world, World)


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("simulation.synthetic", "expected package.module:factory"),
        ("simulation.synthetic:", "expected package.module:factory"),
        ("no_such_package.worlds:factory", "no module named 'no_such_package.worlds'"),
        ("simulation.synthetic:nothing", "module simulation.synthetic has no 'nothing'"),
        ("simulation.synthetic:PLANS", "PLANS is not a factory"),
        ("simulation.synthetic:is_payday", "the factory failed"),
        ("simulation.world:SentMessage", "the factory failed"),
        ("builtins:str", "the factory returned str, which has no charge() and respond()"),
    ],
)
def test_load_world_errors_say_what_is_wrong(path: str, says: str) -> None:
    with pytest.raises(WorldError) as raised:
        load_world(path, 1)
    assert says in str(raised.value)
    assert path in str(raised.value)


def test_cli_json_report_parses(capsys: pytest.CaptureFixture) -> None:
    code = main(
        ["--cases", "40", "--seed", "2", "--policy", "standard", "--policy", "demo@1", "--json"]
    )
    out = capsys.readouterr().out
    assert code == 0
    report = SimulationReport.model_validate_json(out)
    assert [p.policy for p in report.policies] == ["standard v1", "demo v1"]
    assert (report.cases, report.seed) == (40, 2)
    assert report.policies[0].revenue_ratio == 1.0
    assert all(p.runs == [] for p in report.policies)  # the summary, not every case's story
    assert json.loads(out)["world"] == "simulation.synthetic:factory"


def test_cli_prints_a_table_with_one_row_per_policy(capsys: pytest.CaptureFixture) -> None:
    assert main(["--cases", "30", "--policy", "standard", "--policy", "demo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "30 cases, world simulation.synthetic:factory, seed 1"
    assert lines[1].split()[:3] == ["policy", "recovered", "vs"]
    assert lines[2].startswith("standard v1") and "1.00x" in lines[2]
    assert lines[3].startswith("demo v1")


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--world", "nowhere:factory"], "no module named 'nowhere'"),
        (["--policy", "gold"], "unknown policy 'gold'"),
        (["--policy", "standard@7"], "policy 'standard' has no version 7"),
        (["--policy", "Standard v1"], "expected NAME or NAME@VERSION"),
        (["--cases", "0"], "--cases: must be at least 1"),
        (["--start", "yesterday"], "not an ISO date"),
    ],
)
def test_cli_errors_are_one_line(capsys: pytest.CaptureFixture, argv: list[str], says: str) -> None:
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("dunning simulate: ") and says in line
