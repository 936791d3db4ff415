"""The family of simulated worlds: each brings its own customers, answers the same whatever
order it is asked in, and keeps the hidden mechanics its docstring states (paydays, hours,
card updater, patience), which is what a planner trained on them has to find out."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from simulation.synthetic import SyntheticWorld, generate_cases
from simulation.world import ActionKind, PopulatedWorld, SentMessage, SimCase, load_world
from simulation.worlds import WORLDS
from simulation.worlds.common import (
    Biweekly,
    CommonWorld,
    Irregular,
    MonthDays,
    months_before,
    next_payday,
)
from workflows.policy import Channel, Tone

pytestmark = pytest.mark.pure

START = datetime(2026, 1, 5, tzinfo=UTC)
FAMILY = [path for path in WORLDS if path.startswith("simulation.worlds.")]
CURRENCY = {
    "simulation.worlds.payroll_us:factory": "USD",
    "simulation.worlds.monthly_eu:factory": "EUR",
    "simulation.worlds.gig_latam:factory": "USD",
    "simulation.worlds.enterprise_jp:factory": "JPY",
}
REMINDER = SentMessage(
    step="reminder-1", template="reminder_gentle", tone=Tone.GENTLE, channels=[Channel.EMAIL]
)


def world(path: str, seed: int = 7) -> CommonWorld:
    loaded = load_world(path, seed)
    assert isinstance(loaded, CommonWorld)
    return loaded


@pytest.mark.parametrize("path", WORLDS)
def test_every_world_loads_with_a_population_of_its_own(path: str) -> None:
    loaded = load_world(path, 7)
    assert isinstance(loaded, PopulatedWorld)
    live = loaded.population(50, START, "live")
    history = loaded.population(50, START - timedelta(days=28), "history")
    assert len(live) == len(history) == 50
    assert not {case.id for case in live} & {case.id for case in history}
    assert live == load_world(path, 7).population(50, START, "live")
    assert live != load_world(path, 8).population(50, START, "live")
    for case in live:
        assert START <= case.failed_at < START + timedelta(days=28)
        assert all(at.tzinfo is not None and at < case.failed_at for at in case.paid_history)
        assert case.paid_history == sorted(case.paid_history)
    with pytest.raises(ValueError):
        loaded.population(1, START, "next-month")


@pytest.mark.parametrize("path", FAMILY)
def test_a_world_bills_in_one_currency_with_varied_customers(path: str) -> None:
    cases = world(path).population(400, START, "live")
    assert {case.currency for case in cases} == {CURRENCY[path]}
    assert len({case.amount for case in cases}) >= 3
    assert any(case.time_zone is None for case in cases)
    assert any(not case.paid_history for case in cases), "new customers have no history"
    assert sum(len(case.paid_history) >= 2 for case in cases) > 200
    assert all(case.card_brand and case.card_country and case.country for case in cases)
    assert len({case.failure.decline_code for case in cases}) >= 5


@pytest.mark.parametrize("path", FAMILY)
def test_a_customer_is_the_same_whichever_cohort_is_drawn_first(path: str) -> None:
    first = world(path)
    live = first.population(30, START, "live")
    first.population(30, START, "history")
    second = world(path)
    second.population(30, START, "history")
    assert second.population(30, START, "live") == live
    assert [second.profile(case) for case in live] == [first.profile(case) for case in live]


@pytest.mark.parametrize("path", WORLDS)
def test_answers_do_not_depend_on_the_order_cases_are_asked_about(path: str) -> None:
    cases = load_world(path, 7).population(60, START, "live")

    def answers(order: list[SimCase]) -> dict[str, list[object]]:
        asked = load_world(path, 7)
        said: dict[str, list[object]] = {}
        for case in order:
            said[case.id] = [
                asked.respond(case, REMINDER, case.failed_at + timedelta(hours=1)),
                *(asked.charge(case, n, case.failed_at + timedelta(days=n)) for n in (1, 2, 3)),
            ]
        return said

    assert answers(cases) == answers(cases[::-1])


def test_payroll_biweekly_insufficient_funds_passes_on_payday_far_more_than_mid_cycle() -> None:
    payroll = world("simulation.worlds.payroll_us:factory")
    on_payday = mid_cycle = tries = 0
    for case in payroll.population(1500, START, "live"):
        profile = payroll.profile(case)
        if case.failure.decline_code != "insufficient_funds" or not isinstance(
            profile.schedule, Biweekly
        ):
            continue
        zone = ZoneInfo(profile.zone)
        payday = next_payday(profile.schedule, case.failed_at.astimezone(zone).date() + _DAY)
        assert payday is not None and (payday - case.failed_at.astimezone(zone).date()).days <= 14
        for attempt in (1, 2, 3):
            tries += 1
            on_payday += payroll.charge(case, attempt, _noon(payday, zone)).approved
            mid_cycle += payroll.charge(case, attempt, _noon(payday + 7 * _DAY, zone)).approved
    assert tries > 300
    assert on_payday > 2.5 * mid_cycle
    assert 0.15 < on_payday / tries < 0.6


def test_hours_matter_differently_in_each_world() -> None:
    def by_hour(path: str, hour: int) -> float:
        loaded = world(path)
        total = 0.0
        for case in loaded.population(200, START, "live"):
            zone = loaded.zone_of(case)
            day = case.failed_at.astimezone(zone).date() + 3 * _DAY
            at = datetime.combine(day, time(hour), tzinfo=zone)
            total += loaded.success_chance(case, 2, at)
        return total

    us, eu, gig = (
        f"simulation.worlds.{name}:factory" for name in ("payroll_us", "monthly_eu", "gig_latam")
    )
    jp = "simulation.worlds.enterprise_jp:factory"
    assert by_hour(us, 13) > 1.3 * by_hour(us, 20)
    assert by_hour(eu, 20) > 1.3 * by_hour(eu, 13)
    assert by_hour(gig, 8) > 1.3 * by_hour(gig, 20)
    assert by_hour(jp, 13) < 1.2 * by_hour(jp, 20)


@pytest.mark.parametrize("path", FAMILY)
def test_paid_history_follows_the_customers_own_paydays(path: str) -> None:
    loaded = world(path)
    told = struggling = 0
    for case in loaded.population(400, START, "history"):
        profile = loaded.profile(case)
        zone = ZoneInfo(profile.zone)
        on_payday = 0
        for paid in case.paid_history:
            anniversary = any(
                timedelta(0) <= paid - months_before(case.failed_at, k) < timedelta(minutes=10)
                for k in range(1, 9)
            )
            local = paid.astimezone(zone).date()
            after_payday = any(profile.schedule.is_payday(local - k * _DAY) for k in range(3))
            assert anniversary or after_payday, f"{case.id} paid at {paid}: says nothing"
            on_payday += not anniversary
        if len(case.paid_history) >= 2 and case.failure.decline_code == "insufficient_funds":
            told += on_payday > 0
            struggling += 1
    assert told > 0.4 * struggling, "most insufficient-funds customers show their paydays"


def test_the_eu_card_updater_replaces_most_expired_cards_and_the_latam_one_few() -> None:
    def updated_share(path: str) -> float:
        loaded = world(path)
        expired = [
            case
            for case in loaded.population(1200, START, "live")
            if case.failure.decline_code == "expired_card"
        ]
        updated = passed = 0
        for case in expired:
            assert not loaded.charge(case, 1, case.failed_at + _DAY).approved
            action = loaded.respond(case, REMINDER, case.failed_at + timedelta(minutes=5))
            if action and action.kind is ActionKind.UPDATE_CARD:
                updated += action.at >= case.failed_at + _DAY  # the updater's, not theirs
                passed += loaded.charge(case, 2, action.at).approved
        assert passed > 0.75 * updated, "a new card mostly passes"
        return updated / len(expired)

    assert updated_share("simulation.worlds.monthly_eu:factory") > 0.6
    assert updated_share("simulation.worlds.gig_latam:factory") < 0.25


def test_latam_customers_stop_texts_at_night_and_japanese_companies_bear_them() -> None:
    def annoyed(path: str) -> int:
        loaded = world(path)
        count = 0
        for case in loaded.population(300, START, "live"):
            night = datetime.combine(
                case.failed_at.astimezone(loaded.zone_of(case)).date() + _DAY,
                time(23, 30),
                tzinfo=loaded.zone_of(case),
            )
            for i in range(4):
                message = SentMessage(
                    step=f"reminder-{i + 1}",
                    template="reminder_firm",
                    tone=Tone.FIRM,
                    channels=[Channel.SMS, Channel.EMAIL],
                )
                action = loaded.respond(case, message, night + timedelta(hours=i))
                if action and action.kind in (ActionKind.OPT_OUT, ActionKind.CANCEL):
                    count += 1
                    assert action.kind is not ActionKind.OPT_OUT or action.channel in (
                        Channel.SMS,
                        Channel.EMAIL,
                    )
                    break
        return count

    assert annoyed("simulation.worlds.gig_latam:factory") > 90
    assert annoyed("simulation.worlds.enterprise_jp:factory") < 15


def test_schedules_pay_on_their_days() -> None:
    friday = date(2026, 1, 9)
    assert Biweekly(friday).is_payday(friday + 14 * _DAY)
    assert not Biweekly(friday).is_payday(friday + 7 * _DAY)
    last = MonthDays((31,))
    assert last.is_payday(date(2026, 1, 30))  # the 31st is a Saturday: Friday the 30th
    assert not last.is_payday(date(2026, 1, 31))
    assert MonthDays((1, 15)).is_payday(date(2026, 1, 15))
    assert not MonthDays((1, 15)).is_payday(date(2026, 1, 16))
    assert MonthDays((1, 15)).is_payday(date(2026, 2, 27))  # Sunday 1 March: Friday before
    gig = Irregular("some-customer")
    days = [d for d in (date(2026, 1, 1) + k * _DAY for k in range(120)) if gig.is_payday(d)]
    gaps = {(b - a).days for a, b in zip(days, days[1:], strict=False)}
    assert len(gaps) >= 3 and max(gaps) <= 2 * 11


def test_the_synthetic_population_is_the_generated_cases_with_billing_facts() -> None:
    synthetic = SyntheticWorld(3)
    live = synthetic.population(40, START, "live")
    history = synthetic.population(40, START, "history")
    facts = {"card_brand", "card_country", "country", "paid_history"}
    assert [case.model_copy(update=dict.fromkeys(facts)) for case in live] == [
        case.model_copy(update=dict.fromkeys(facts)) for case in generate_cases(40, 3, START)
    ]
    assert not {case.id for case in live} & {case.id for case in history}
    assert all(case.country and case.card_brand for case in live)
    assert sum(bool(case.paid_history) for case in live) > 20


_DAY = timedelta(days=1)


def _noon(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(12), tzinfo=zone)
