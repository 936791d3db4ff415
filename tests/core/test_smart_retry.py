"""Smart retry timing: the model, the planner, the core's use of a plan, training, the
`plan_retries` activity, and a smart-timed case on the time-skipping server.

Histories are synthetic and seeded: a planted pattern (charges pass on the 1st and the 15th
of the customer's month, rarely otherwise) that a working model must find.
"""

from __future__ import annotations

import asyncio
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from activities.dunning import DunningActivities
from activities.retry_training import (
    attempt_history,
    main,
    model_files,
    newest_model,
    read_model,
    train,
    write_model,
)
from activities.store import Case, CaseStore, ChargeAttempt, CustomerProfile
from config.policies import find_policy, load_policies
from config.settings import Settings
from tests.support.core import charge_times, open_case, play
from tests.support.harness import Dunning
from workflows.decide import Charge, decide, next_charge_at
from workflows.dunning import DunningWorkflow
from workflows.models import CaseInput, PauseRequest, PlanRequest, ResumeRequest
from workflows.policy import DeclineClass, Outcome, Policy
from workflows.smart_retry import (
    MIN_HISTORY,
    AttemptRecord,
    Payday,
    PlanFacts,
    RetryFeatures,
    RetryModel,
    RetryPlan,
    fit,
    payday,
    plan_retries,
)

CONFIG = Path(__file__).resolve().parents[2] / "config"
# A Friday; the case window (to 20 days on) holds 1 and 15 December.
FAILED_AT = datetime(2026, 11, 27, 9, tzinfo=UTC)
TRAINED_AT = datetime(2026, 11, 1, tzinfo=UTC)
ZONES = [None, "Asia/Tokyo", "America/New_York", "Europe/Berlin"]
SOFT_CODES = ["insufficient_funds", "do_not_honor", "generic_decline"]


@pytest.fixture(scope="module")
def policies() -> list[Policy]:
    """The shipped policies, loaded as the worker loads them."""
    return load_policies(CONFIG / "policies", CONFIG / "declines.toml")


@pytest.fixture(scope="module")
def smart(policies: list[Policy]) -> Policy:
    """The shipped smart policy: the standard ladder with smart retry timing."""
    return find_policy(policies, "smart", 1)


def planted_history(count: int, seed: int = 7) -> list[AttemptRecord]:
    """Attempts spread over a year, hours and zones; approved mostly on the customer's 1st
    and 15th of the month, hardly ever on other days."""
    rng = random.Random(seed)
    start = datetime(2025, 10, 1, tzinfo=UTC)
    history = []
    for n in range(count):
        failed_at = start + timedelta(hours=rng.randrange(24 * 365))
        at = failed_at + timedelta(hours=rng.randrange(12, 480))
        zone = rng.choice(ZONES)
        local_day = at.astimezone(ZoneInfo(zone) if zone else UTC).day
        chance = 0.6 if local_day in (1, 15) else 0.03
        history.append(
            AttemptRecord(
                case_id=f"case-{n}",
                at=at,
                approved=rng.random() < chance,
                attempt=rng.randint(1, 4),
                failed_at=failed_at,
                decline_code=rng.choice(SOFT_CODES),
                decline_class=DeclineClass.RETRY_LATER,
                card_brand=rng.choice(["visa", "mastercard", None]),
                amount=rng.choice([990, 4900, 29900]),
                currency="USD",
                time_zone=zone,
            )
        )
    return history


@pytest.fixture(scope="module")
def planted() -> RetryModel:
    """A model fitted on 3000 attempts of the planted pattern."""
    return fit(planted_history(3000), version=3, now=TRAINED_AT)


def facts(**changes: object) -> PlanFacts:
    """A soft decline of a Tokyo customer's card, failed on FAILED_AT."""
    data: dict[str, object] = {
        "case_id": "case-1",
        "decline_code": "insufficient_funds",
        "card_brand": "visa",
        "failed_at": FAILED_AT,
        "amount": 4900,
        "currency": "USD",
        "time_zones": ["Asia/Tokyo"],
    }
    data.update(changes)
    return PlanFacts.model_validate(data)


def variant(policy: Policy, **changes: object) -> Policy:
    """`policy` with `changes`, validated again."""
    return Policy.model_validate({**policy.model_dump(), **changes})


def local_days(plan: RetryPlan, zone: str, failed_at: datetime = FAILED_AT) -> list[int]:
    """The day of the month of each planned retry, in `zone`."""
    return [(failed_at + o).astimezone(ZoneInfo(zone)).day for o in plan.offsets]


# Falling back to the fixed schedule --------------------------------------------------------


def test_without_a_model_the_plan_is_the_fixed_schedule(smart: Policy) -> None:
    plan = plan_retries(None, facts(), smart)

    assert plan == RetryPlan(
        offsets=smart.retries, model_version=None, reason="fixed schedule: no retry model"
    )


def test_with_too_little_history_the_plan_is_the_fixed_schedule_and_says_so(
    smart: Policy,
) -> None:
    model = fit(planted_history(37), version=1, now=TRAINED_AT)

    plan = plan_retries(model, facts(), smart)

    assert plan.offsets == smart.retries
    assert plan.model_version is None
    assert plan.reason == "fixed schedule: only 37 attempts of history"


def test_history_of_min_history_attempts_is_enough(smart: Policy) -> None:
    model = fit(planted_history(MIN_HISTORY), version=1, now=TRAINED_AT)

    plan = plan_retries(model, facts(), smart)

    assert plan.model_version == 1
    assert plan.reason == f"smart schedule from model v1 ({MIN_HISTORY} attempts)"


def test_a_window_with_no_room_falls_back_to_the_fixed_schedule(
    policies: list[Policy], planted: RetryModel
) -> None:
    demo = variant(find_policy(policies, "demo", 1), retry_timing="smart")

    plan = plan_retries(planted, facts(), demo)

    assert plan.offsets == demo.retries
    assert plan.reason == "fixed schedule: no contact-hours slot in the case window"


# What smart timing never does --------------------------------------------------------------


@pytest.mark.parametrize(
    "codes",
    [
        {"decline_code": "stolen_card"},
        {"decline_code": "lost_card"},
        {"decline_code": "expired_card"},
        {"decline_code": "generic_decline", "advice_code": "do_not_try_again"},
        {"decline_code": "do_not_honor", "network_decline_code": "14", "card_brand": "visa"},
        {"decline_code": "do_not_honor", "network_advice_code": "03", "card_brand": "mastercard"},
    ],
    ids=["stolen", "lost", "expired", "advice", "visa-category-1", "mastercard-stop"],
)
@pytest.mark.parametrize("with_model", [True, False], ids=["model", "no-model"])
def test_never_retry_decline_gets_no_retries(
    smart: Policy, planted: RetryModel, codes: dict[str, str], with_model: bool
) -> None:
    case_facts = facts(**{"card_brand": None, **codes})

    plan = plan_retries(planted if with_model else None, case_facts, smart)

    assert plan.offsets == []
    assert plan.reason.startswith("no retries: ")
    assert plan.reason.endswith(" is never retried")


FAILURES = [
    datetime(2026, 11, 27, 9, tzinfo=UTC),
    datetime(2026, 1, 30, 23, 41, tzinfo=UTC),
    datetime(2026, 3, 8, 6, 59, tzinfo=UTC),  # the US moves its clocks that day
    datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # and Europe on this one
]
ZONE_SETS = [
    [],
    ["Asia/Tokyo"],
    ["America/New_York", "America/Los_Angeles"],
    ["Pacific/Honolulu", "America/New_York"],
    ["Europe/Berlin"],
]


@pytest.mark.parametrize("failed_at", FAILURES, ids=lambda d: f"{d:%m-%d}")
@pytest.mark.parametrize("zones", ZONE_SETS, ids=lambda z: "+".join(z) or "no-zone")
def test_smart_plan_keeps_window_spacing_and_contact_hours(
    smart: Policy, planted: RetryModel, failed_at: datetime, zones: list[str]
) -> None:
    plan = plan_retries(planted, facts(failed_at=failed_at, time_zones=zones), smart)

    assert plan.model_version == 3
    assert len(plan.offsets) == len(smart.retries)
    assert plan.offsets == sorted(plan.offsets)
    for offset in plan.offsets:
        assert smart.min_retry_gap <= offset <= smart.collections_after - timedelta(days=1)
        for zone in zones:
            assert smart.contact_hours.allows(failed_at + offset, zone), (offset, zone)
    gaps = [b - a for a, b in zip(plan.offsets, plan.offsets[1:], strict=False)]
    assert all(gap >= smart.min_retry_gap for gap in gaps), gaps


def test_no_retry_is_planned_before_the_case_opened(smart: Policy, planted: RetryModel) -> None:
    late = FAILED_AT + timedelta(days=6)  # the failure reached us six days late

    plan = plan_retries(planted, facts(opened_at=late), smart)

    assert min(plan.offsets) >= timedelta(days=6)


def test_smart_plan_respects_the_card_network_cap(smart: Policy, planted: RetryModel) -> None:
    declines = smart.declines.model_dump()
    declines["networks"]["visa"].update(max_attempts=2, window=timedelta(days=30))
    capped = variant(smart, declines=declines)

    plan = plan_retries(planted, facts(card_brand="visa"), capped)

    assert len(plan.offsets) == 2
    assert plan.reason == (
        "smart schedule from model v3 (3000 attempts); "
        "only 2 of 4 retries fit (spacing, contact hours, network cap)"
    )


def test_network_cap_counts_within_its_window_only(smart: Policy, planted: RetryModel) -> None:
    declines = smart.declines.model_dump()
    declines["networks"]["visa"].update(max_attempts=2, window=timedelta(days=5))
    capped = variant(smart, declines=declines)

    plan = plan_retries(planted, facts(card_brand="visa"), capped)

    assert len(plan.offsets) == 4
    for offset in plan.offsets:
        assert sum(offset <= o < offset + timedelta(days=5) for o in plan.offsets) <= 2


# What the model learns ---------------------------------------------------------------------


def test_the_model_picks_the_planted_paydays(smart: Policy, planted: RetryModel) -> None:
    two_retries = variant(smart, retries=[timedelta(days=1), timedelta(days=3)])

    plan = plan_retries(planted, facts(), two_retries)

    assert local_days(plan, "Asia/Tokyo") == [1, 15]


def test_paydays_are_the_first_choices_of_a_full_budget(smart: Policy, planted: RetryModel) -> None:
    plan = plan_retries(planted, facts(time_zones=["America/New_York"]), smart)

    assert {1, 15} <= set(local_days(plan, "America/New_York"))


def test_the_model_rates_paydays_above_other_days(planted: RetryModel) -> None:
    rates = {bucket: planted.rate("payday", bucket) for bucket in Payday}

    assert min(rates[Payday.FIRST], rates[Payday.FIFTEENTH]) > 0.4
    assert max(rates[Payday.LAST_WEEKDAY], rates[Payday.OTHER]) < 0.1


def test_score_combines_smoothed_rates_in_odds_space(planted: RetryModel) -> None:
    features = planted_history(1, seed=11)[0].features()

    def logit(p: float) -> float:
        return math.log(p / (1 - p))

    expected = logit(planted.base_rate) + sum(
        logit(planted.rate(name, value)) - logit(planted.base_rate)
        for name, value in features.values().items()
    )
    assert planted.score(features) == pytest.approx(1 / (1 + math.exp(-expected)))


def test_unseen_values_are_the_base_rate(planted: RetryModel) -> None:
    assert planted.rate("decline_code", "never_seen_code") == planted.base_rate
    assert planted.rate("no_such_feature", "x") == planted.base_rate


def test_a_rare_value_is_pulled_toward_the_base_rate() -> None:
    model = RetryModel(
        version=1,
        trained_at=TRAINED_AT,
        trained_on=1000,
        base_rate=0.1,
        prior_strength=20,
        counts={"card_brand": {"amex": (2, 2), "visa": (200, 200)}},
    )

    assert model.rate("card_brand", "amex") == pytest.approx((2 + 2) / 22)
    assert model.rate("card_brand", "visa") == pytest.approx((200 + 2) / 220)


def test_features_are_local_to_the_customer() -> None:
    features = RetryFeatures.at(
        datetime(2026, 11, 30, 16, tzinfo=UTC),
        failed_at=datetime(2026, 11, 27, 9, tzinfo=UTC),
        attempt=7,
        decline_class=DeclineClass.RETRY_LATER,
        decline_code="Insufficient_Funds",
        card_brand=None,
        amount=4980,
        currency="jpy",
        time_zone="Asia/Tokyo",
    )

    assert features.values() == {
        "decline_class": "retry_later",
        "decline_code": "insufficient_funds",
        "card_brand": "unknown",
        "local_hour": "1",
        "weekday": "1",  # Tuesday 1 December in Tokyo
        "payday": "1st",
        "days_since_failure": "3-6d",
        "attempt": "5+",
        "amount_band": "JPY 1000-9999",
    }


@pytest.mark.parametrize(
    ("day", "bucket"),
    [
        (datetime(2026, 5, 1), Payday.FIRST),
        (datetime(2026, 5, 15), Payday.FIFTEENTH),
        (datetime(2026, 5, 29), Payday.LAST_WEEKDAY),  # Friday; 30 and 31 are a weekend
        (datetime(2026, 5, 31), Payday.OTHER),
        (datetime(2026, 6, 30), Payday.LAST_WEEKDAY),
        (datetime(2026, 6, 16), Payday.OTHER),
    ],
)
def test_payday_buckets(day: datetime, bucket: Payday) -> None:
    assert payday(day) is bucket


def test_fit_is_deterministic_whatever_the_order() -> None:
    history = planted_history(500)

    first = fit(history, version=2, now=TRAINED_AT)
    again = fit(list(reversed(history)), version=2, now=TRAINED_AT)

    assert first.model_dump_json() == again.model_dump_json()
    assert first.trained_on == 500
    assert first.base_rate == pytest.approx((sum(r.approved for r in history) + 1) / 502)


def test_planning_is_deterministic(smart: Policy, planted: RetryModel) -> None:
    assert plan_retries(planted, facts(), smart) == plan_retries(planted, facts(), smart)


# Model files and training ------------------------------------------------------------------


def test_model_file_round_trips(tmp_path: Path, planted: RetryModel) -> None:
    path = write_model(planted, tmp_path)

    assert path.name == "retry-model-v3.json"
    assert read_model(path) == planted
    assert newest_model(tmp_path) == planted


def test_newest_model_is_the_highest_version(tmp_path: Path) -> None:
    for version in (2, 10, 9):
        write_model(fit(planted_history(20), version, TRAINED_AT), tmp_path)
    (tmp_path / "notes.txt").write_text("not a model")

    assert sorted(model_files(tmp_path)) == [2, 9, 10]
    assert newest_model(tmp_path).version == 10
    assert newest_model(tmp_path / "missing") is None


def seed_store(store: CaseStore, count: int) -> None:
    """Cases and their attempts in the store, from the planted pattern."""
    customers = {
        None: CustomerProfile(customer_id="cus_utc"),
        "Asia/Tokyo": CustomerProfile(customer_id="cus_tokyo", time_zone="Asia/Tokyo"),
        "America/New_York": CustomerProfile(customer_id="cus_ny", phone="+12125550100"),
        "Europe/Berlin": CustomerProfile(customer_id="cus_berlin", time_zone="Europe/Berlin"),
    }
    for profile in customers.values():
        store.upsert_customer(profile)
    with store.session() as session:
        for record in planted_history(count):
            customer = customers[record.time_zone]
            session.add(
                Case(
                    case_id=record.case_id,
                    invoice_id=record.case_id,
                    customer_id=customer.customer_id,
                    decline_code=record.decline_code,
                    decline_class=record.decline_class,
                    status="collections",
                    amount_due=record.amount,
                    currency=record.currency,
                    policy="standard",
                    policy_version=1,
                    opened_at=record.failed_at,
                    updated_at=record.failed_at,
                )
            )
            session.add(
                ChargeAttempt(
                    case_id=record.case_id,
                    attempt=record.attempt,
                    idempotency_key=f"dunning:{record.case_id}:attempt:{record.attempt}",
                    amount=record.amount,
                    currency=record.currency,
                    approved=record.approved,
                    at=record.at,
                )
            )
        session.commit()


def test_history_joins_attempts_with_their_case_and_customer(tmp_path: Path) -> None:
    store = CaseStore(f"sqlite:///{tmp_path / 'dunning.db'}")
    store.create_schema()
    seed_store(store, 40)

    history = attempt_history(store)

    expected = [r.model_copy(update={"card_brand": None}) for r in planted_history(40)]
    assert sorted(history, key=lambda r: r.case_id) == sorted(expected, key=lambda r: r.case_id)


def test_train_writes_the_next_version(tmp_path: Path) -> None:
    store = CaseStore(f"sqlite:///{tmp_path / 'dunning.db'}")
    store.create_schema()
    seed_store(store, 300)
    models = tmp_path / "models"

    first = train(store, models, TRAINED_AT)
    second = train(store, models, TRAINED_AT + timedelta(days=1))

    assert [first.name, second.name] == ["retry-model-v1.json", "retry-model-v2.json"]
    model = read_model(second)
    assert (model.version, model.trained_on, model.trained_at) == (
        2,
        300,
        TRAINED_AT + timedelta(days=1),
    )
    assert model.counts["payday"] == read_model(first).counts["payday"]


def test_train_command_writes_a_model_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'dunning.db'}"
    store = CaseStore(url)
    store.create_schema()
    seed_store(store, 250)

    code = main(["--database-url", url, "--models-dir", str(tmp_path / "models")])

    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith(f"wrote {tmp_path / 'models' / 'retry-model-v1.json'}: model v1 from 250")
    assert (tmp_path / "models" / "retry-model-v1.json").exists()


def test_train_command_with_no_history_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"

    code = main(["--database-url", url, "--models-dir", str(tmp_path / "models")])

    err = capsys.readouterr().err
    assert code == 1
    assert err == (
        "dunning model train: nothing to train on: the store has no charge attempts yet\n"
    )
    assert not (tmp_path / "models").exists()


def test_train_command_with_a_bad_store_url_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--database-url", "nosuchdb://x", "--models-dir", str(tmp_path)])

    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith("dunning model train: cannot read the store (nosuchdb: ")


def test_train_command_with_an_unwritable_models_dir_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'dunning.db'}"
    store = CaseStore(url)
    store.create_schema()
    seed_store(store, 10)
    blocker = tmp_path / "models"
    blocker.write_text("a file where the folder should be")

    code = main(["--database-url", url, "--models-dir", str(blocker)])

    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith("dunning model train: cannot write the model: ")


# The plan_retries activity -----------------------------------------------------------------


def smart_activities(tmp_path: Path, models_dir: Path) -> DunningActivities:
    """The real activities over a fresh SQLite file, reading models from `models_dir`."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'dunning.db'}",
        retry_models_dir=models_dir,
        _env_file=None,
    )
    return DunningActivities.from_settings(settings)


def plan_request(**changes: object) -> PlanRequest:
    """A plan request for a smart-v1 case."""
    return PlanRequest(
        **facts(**changes).model_dump(),
        invoice_id="in_1",
        customer_id="cus_1",
        policy_name="smart",
        policy_version=1,
    )


def test_activity_plans_with_the_newest_model(tmp_path: Path, planted: RetryModel) -> None:
    models = tmp_path / "models"
    write_model(fit(planted_history(300, seed=1), version=2, now=TRAINED_AT), models)
    write_model(planted, models)  # v3
    activities = smart_activities(tmp_path, models)

    assert activities.plan_retries in activities.all()
    plan = activities.plan_retries(plan_request())

    assert plan.model_version == 3
    assert plan.reason == "smart schedule from model v3 (3000 attempts)"


def test_activity_without_models_plans_the_fixed_schedule(tmp_path: Path, smart: Policy) -> None:
    activities = smart_activities(tmp_path, tmp_path / "no-models-here")

    plan = activities.plan_retries(plan_request())

    assert plan == RetryPlan(offsets=smart.retries, reason="fixed schedule: no retry model")


def test_activity_with_an_unreadable_model_plans_the_fixed_schedule(
    tmp_path: Path, smart: Policy
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "retry-model-v4.json").write_text("{not json")
    activities = smart_activities(tmp_path, models)

    plan = activities.plan_retries(plan_request())
    never = activities.plan_retries(plan_request(decline_code="stolen_card"))

    assert plan.offsets == smart.retries
    assert plan.model_version is None
    assert plan.reason.startswith(f"fixed schedule: {models / 'retry-model-v4.json'}: not a ")
    assert never == RetryPlan(offsets=[], reason="no retries: stolen_card is never retried")


# The policy core follows a plan ------------------------------------------------------------


def test_fixed_timing_is_the_default(policies: list[Policy]) -> None:
    assert find_policy(policies, "standard", 1).retry_timing == "fixed"
    assert open_case(find_policy(policies, "standard", 1)).planned_retries is None


def test_planned_retries_replace_the_policy_offsets(smart: Policy) -> None:
    state = open_case(smart)
    plan = RetryPlan(
        offsets=[timedelta(days=2, hours=3), timedelta(days=14)],
        model_version=3,
        reason="smart schedule from model v3 (3000 attempts)",
    )
    state.follow_plan(plan, FAILED_AT)

    assert state.timeline[-1].kind == "retry_plan"
    assert state.timeline[-1].detail == (
        "smart schedule from model v3 (3000 attempts); "
        "retries at 2026-11-03 12:00, 2026-11-15 09:00 UTC"
    )
    origin = state.case.failure.failed_at
    assert next_charge_at(state) == origin + timedelta(days=2, hours=3)
    assert decide(state, origin + timedelta(days=2, hours=3)) == Charge(
        attempt=1, scheduled=True, label="retry 1 of 2"
    )
    steps = play(state, origin, origin + timedelta(days=30))
    assert charge_times(steps) == [origin + o for o in plan.offsets]


def test_holding_moves_planned_retries_on(smart: Policy) -> None:
    state = open_case(smart)
    origin = state.case.failure.failed_at
    state.follow_plan(RetryPlan(offsets=[timedelta(days=3)], reason="test"), origin)
    state.hold(PauseRequest(reason="ticket", actor="support:kim"), origin + timedelta(days=1))
    state.release(ResumeRequest(actor="support:kim"), origin + timedelta(days=2))

    assert next_charge_at(state) == origin + timedelta(days=4)


def test_an_empty_plan_schedules_no_retry(smart: Policy) -> None:
    state = open_case(smart)
    origin = state.case.failure.failed_at
    state.follow_plan(RetryPlan(offsets=[], reason="no retries: test"), origin)

    assert next_charge_at(state) is None
    assert state.timeline[-1].detail == "no retries: test"
    steps = play(state, origin, origin + timedelta(days=30))
    assert charge_times(steps) == []
    assert state.outcome is Outcome.COLLECTIONS


# A smart-timed case on the time-skipping server --------------------------------------------


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    """The worker's retry-models folder (empty: no model yet)."""
    return tmp_path / "models"


@pytest.fixture
def smart_dunning(
    env: WorkflowEnvironment, tmp_path: Path, task_queue: str, models_dir: Path
) -> Dunning:
    """The `dunning` world, with its worker reading retry models from `models_dir`."""
    return Dunning(
        env=env, activities=smart_activities(tmp_path, models_dir), task_queue=task_queue
    )


async def open_smart_case(dunning: Dunning, time_zone: str = "Asia/Tokyo") -> CaseInput:
    """A smart-v1 case of a customer in `time_zone` whose card keeps declining."""
    case = await dunning.open_case("pm_card_chargeDeclinedInsufficientFunds", currency="USD")
    store = dunning.activities.store
    profile = store.get_customer(case.customer_id)
    store.upsert_customer(profile.model_copy(update={"time_zone": time_zone}))
    return case.model_copy(update={"policy_name": "smart"})


async def test_smart_case_charges_at_the_planned_times(
    smart_dunning: Dunning, models_dir: Path, smart: Policy, planted: RetryModel
) -> None:
    dunning = smart_dunning
    write_model(planted, models_dir)
    case = await open_smart_case(dunning)
    failed_at = case.failure.failed_at
    expected = plan_retries(
        planted,
        PlanFacts(
            decline_code=case.failure.decline_code,
            failed_at=failed_at,
            amount=case.amount_due,
            currency=case.currency,
            time_zones=["Asia/Tokyo"],
        ),
        smart,
    )
    assert expected.model_version == 3

    async with dunning.worker():
        handle = await dunning.start(case)
        result = await asyncio.wait_for(handle.result(), timeout=60)

        history = await handle.fetch_history()
    # The plan is an activity result in the history: a newer model cannot change a replay.
    write_model(fit(planted_history(300, seed=2), version=4, now=TRAINED_AT), models_dir)
    await Replayer(
        workflows=[DunningWorkflow], data_converter=pydantic_data_converter
    ).replay_workflow(history)

    plan_entry = next(e for e in result.timeline if e.kind == "retry_plan")
    assert plan_entry.detail.startswith("smart schedule from model v3 (3000 attempts); retries at ")
    charged = [e.at for e in result.timeline if e.kind == "charge_declined"]
    assert len(charged) == len(expected.offsets) == 4
    for at, offset in zip(charged, expected.offsets, strict=True):
        assert abs(at - (failed_at + offset)) <= timedelta(minutes=1), (at, offset)
        assert smart.contact_hours.allows(at, "Asia/Tokyo")
    assert result.outcome == "collections"
    assert [row.attempt for row in dunning.activities.store.attempts(case.case_id)] == [1, 2, 3, 4]


async def test_smart_case_without_a_model_follows_the_fixed_schedule_and_says_so(
    smart_dunning: Dunning, smart: Policy
) -> None:
    dunning = smart_dunning
    case = await open_smart_case(dunning)
    failed_at = case.failure.failed_at

    async with dunning.worker():
        result = await asyncio.wait_for((await dunning.start(case)).result(), timeout=60)

    plan_entry = next(e for e in result.timeline if e.kind == "retry_plan")
    assert plan_entry.detail.startswith("fixed schedule: no retry model; retries at ")
    charged = [e.at for e in result.timeline if e.kind == "charge_declined"]
    assert len(charged) == 4
    for at, offset in zip(charged, smart.retries, strict=True):
        assert abs(at - (failed_at + offset)) <= timedelta(minutes=1), (at, offset)


async def test_never_retry_smart_case_plans_no_retry(smart_dunning: Dunning) -> None:
    dunning = smart_dunning
    case = await open_smart_case(dunning)
    case = case.model_copy(
        update={"failure": case.failure.model_copy(update={"decline_code": "stolen_card"})}
    )

    async with dunning.worker():
        result = await asyncio.wait_for((await dunning.start(case)).result(), timeout=60)

    plan_entry = next(e for e in result.timeline if e.kind == "retry_plan")
    assert plan_entry.detail == "no retries: stolen_card is never retried"
    assert result.charge_attempts == 0
    assert result.outcome == "collections"
