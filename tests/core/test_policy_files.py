"""Unit tests of policy and decline-table loading, and of what a policy may not say.

A bad file must fail at load, naming the file and the field, never mid-case. Bad files are
written to `tmp_path`; the shipped files in `config/` are loaded as they are.
"""

from __future__ import annotations

import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from config.policies import (
    PolicyError,
    find_policy,
    load_declines,
    load_policies,
    load_policy_file,
)
from workflows.policy import Channel, DeclineClass, DeclineTable, Outcome, Policy, Tone

CONFIG = Path(__file__).resolve().parents[2] / "config"
DECLINES = CONFIG / "declines.toml"

SMALL = """\
name = "{name}"
version = {version}
retries = ["P1D", "P3D"]
min_retry_gap = "PT12H"
retry_after_method_update = "PT5M"
max_charge_attempts = 4
collections_after = "P10D"

[[reminders]]
after = "PT0S"
tone = "gentle"
channels = ["email"]

[[reminders]]
after = "P5D"
tone = "final"
channels = ["email", "sms"]
"""


def write_policy(folder: Path, name: str = "small", version: int = 1, text: str = SMALL) -> Path:
    """A policy file named the way the loader expects, holding `text`."""
    path = folder / f"{name}-v{version}.toml"
    path.write_text(text.format(name=name, version=version), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def shipped() -> list[Policy]:
    """Every policy in config/policies, loaded the way the worker loads them."""
    return load_policies(CONFIG / "policies", DECLINES)


@pytest.fixture(scope="module")
def declines() -> DeclineTable:
    """The shipped decline table."""
    return load_declines(DECLINES)


def policy_data(**changes: object) -> dict[str, object]:
    """A valid policy as plain data, with `changes` applied."""
    data: dict[str, object] = {
        "name": "small",
        "version": 1,
        "retries": [timedelta(days=1), timedelta(days=3)],
        "min_retry_gap": timedelta(hours=12),
        "retry_after_method_update": timedelta(minutes=5),
        "max_charge_attempts": 2,
        "reminders": [
            {"after": timedelta(0), "tone": "gentle", "channels": ["email"]},
            {"after": timedelta(days=4), "tone": "firm", "channels": ["email"]},
            {"after": timedelta(days=6), "tone": "final", "channels": ["email"]},
        ],
        "collections_after": timedelta(days=10),
    }
    data.update(changes)
    return data


def reminders(*spec: tuple[int, str]) -> list[dict[str, object]]:
    """Reminders from (day, tone) pairs, all by email."""
    return [{"after": timedelta(days=d), "tone": t, "channels": ["email"]} for d, t in spec]


# The shipped files -------------------------------------------------------------------------


def test_shipped_policies_load(shipped: list[Policy]) -> None:
    assert sorted(p.label for p in shipped) == [
        "demo v1",
        "demo_together v1",
        "smart v1",
        "smart v2",
        "smart v3",
        "standard v1",
    ]


def test_standard_policy_reads_as_written(shipped: list[Policy]) -> None:
    policy = find_policy(shipped, "standard", 1)

    assert policy.retries == [timedelta(days=d) for d in (1, 3, 5, 7)]
    assert policy.min_retry_gap == timedelta(hours=12)
    assert policy.retry_after_method_update == timedelta(minutes=5)
    assert policy.max_charge_attempts == 8
    assert policy.collections_after == timedelta(days=21)
    assert [(r.after, r.tone, r.channels) for r in policy.reminders] == [
        (timedelta(0), Tone.GENTLE, [Channel.EMAIL, Channel.IN_APP]),
        (timedelta(days=4), Tone.GENTLE, [Channel.EMAIL]),
        (timedelta(days=8), Tone.FIRM, [Channel.EMAIL, Channel.SMS]),
        (timedelta(days=14), Tone.FINAL, [Channel.EMAIL, Channel.SMS, Channel.IN_APP]),
    ]
    assert policy.outcome_messages == {
        Outcome.RECOVERED: [Channel.EMAIL],
        Outcome.COLLECTIONS: [Channel.EMAIL],
    }


def test_policies_carry_the_shared_decline_table(
    shipped: list[Policy], declines: DeclineTable
) -> None:
    for policy in shipped:
        assert policy.declines == declines
    assert find_policy(shipped, "demo").declines.classify("lost_card") is DeclineClass.NEVER_RETRY


def test_demo_policy_runs_within_a_minute(shipped: list[Policy]) -> None:
    demo = find_policy(shipped, "demo")

    assert demo.collections_after == timedelta(seconds=60)
    assert demo.retries[-1] < demo.collections_after


# Finding a policy --------------------------------------------------------------------------


def test_find_policy_picks_the_newest_version_when_none_is_given(tmp_path: Path) -> None:
    for version in (1, 2, 10):  # "10" sorts before "2" as text: the version must win
        write_policy(tmp_path, "small", version)
    write_policy(tmp_path, "other", 3)
    policies = load_policies(tmp_path, DECLINES)

    assert find_policy(policies, "small").version == 10
    assert find_policy(policies, "other").version == 3


def test_find_policy_returns_the_pinned_version(tmp_path: Path) -> None:
    for version in (1, 2):
        write_policy(tmp_path, "small", version)
    policies = load_policies(tmp_path, DECLINES)

    assert find_policy(policies, "small", 1).label == "small v1"


def test_unknown_policy_name_names_the_known_ones(shipped: list[Policy]) -> None:
    known = "known: demo, demo_together, smart, standard"
    with pytest.raises(PolicyError, match=re.escape(f"unknown policy 'gold' ({known})")):
        find_policy(shipped, "gold")


def test_unknown_version_names_the_versions_there_are(tmp_path: Path) -> None:
    for version in (2, 1):
        write_policy(tmp_path, "small", version)
    policies = load_policies(tmp_path, DECLINES)

    with pytest.raises(PolicyError, match=re.escape("policy 'small' has no version 3 (has: 1, 2)")):
        find_policy(policies, "small", 3)


# Bad policy files --------------------------------------------------------------------------


def test_bad_toml_names_the_file(tmp_path: Path, declines: DeclineTable) -> None:
    path = tmp_path / "small-v1.toml"
    path.write_text('name = "small"\nretries = ["P1D"\n', encoding="utf-8")

    with pytest.raises(PolicyError, match=re.escape(f"{path}: not valid TOML")):
        load_policy_file(path, declines)


def test_file_that_is_not_utf8_is_a_policy_error(tmp_path: Path, declines: DeclineTable) -> None:
    path = tmp_path / "small-v1.toml"
    path.write_bytes(b'name = "caf\xe9"\n')

    with pytest.raises(PolicyError, match=re.escape(f"{path}: not UTF-8 text")):
        load_policy_file(path, declines)


def test_missing_file_is_a_policy_error(tmp_path: Path, declines: DeclineTable) -> None:
    path = tmp_path / "small-v1.toml"

    with pytest.raises(PolicyError, match=re.escape(f"{path}: file not found")):
        load_policy_file(path, declines)


def test_unknown_field_is_refused(tmp_path: Path, declines: DeclineTable) -> None:
    path = write_policy(tmp_path, text='retry_every = "P1D"\n' + SMALL)

    with pytest.raises(
        PolicyError, match=re.escape(f"{path}: retry_every: Extra inputs are not permitted")
    ):
        load_policy_file(path, declines)


def test_unknown_tone_names_the_reminder(tmp_path: Path, declines: DeclineTable) -> None:
    path = write_policy(tmp_path, text=SMALL.replace('"final"', '"angry"'))

    with pytest.raises(
        PolicyError,
        match=re.escape("reminders.1.tone: Input should be 'gentle', 'firm' or 'final'"),
    ):
        load_policy_file(path, declines)


def test_bad_duration_names_the_retry(tmp_path: Path, declines: DeclineTable) -> None:
    path = write_policy(tmp_path, text=SMALL.replace('"P3D"', '"soon"'))

    with pytest.raises(
        PolicyError, match=re.escape("retries.1: Input should be a valid timedelta")
    ):
        load_policy_file(path, declines)


def test_missing_field_is_named(tmp_path: Path, declines: DeclineTable) -> None:
    path = write_policy(tmp_path, text=SMALL.replace("max_charge_attempts = 4\n", ""))

    with pytest.raises(PolicyError, match=re.escape("max_charge_attempts: Field required")):
        load_policy_file(path, declines)


def test_schedule_error_in_a_file_names_the_rule(tmp_path: Path, declines: DeclineTable) -> None:
    path = write_policy(tmp_path, text=SMALL.replace('"P3D"', '"P30D"'))

    with pytest.raises(PolicyError, match=re.escape(f"{path}: retries: ")):
        load_policy_file(path, declines)


def test_file_name_must_match_name_and_version(tmp_path: Path, declines: DeclineTable) -> None:
    path = tmp_path / "small-v2.toml"
    path.write_text(SMALL.format(name="small", version=1), encoding="utf-8")

    with pytest.raises(
        PolicyError, match=re.escape(f"{path}: a file holding small v1 must be named small-v1.toml")
    ):
        load_policy_file(path, declines)


def test_file_name_must_match_the_policy_name(tmp_path: Path, declines: DeclineTable) -> None:
    path = tmp_path / "standard-v1.toml"
    path.write_text(SMALL.format(name="small", version=1), encoding="utf-8")

    with pytest.raises(PolicyError, match="must be named small-v1.toml"):
        load_policy_file(path, declines)


def test_one_bad_file_stops_the_whole_load(tmp_path: Path) -> None:
    write_policy(tmp_path, "good", 1)
    bad = write_policy(tmp_path, "small", 1, text="surprise = 1\n" + SMALL)

    with pytest.raises(PolicyError, match=re.escape(f"{bad}: surprise: Extra inputs")):
        load_policies(tmp_path, DECLINES)


def test_folder_without_policies_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=re.escape(f"{tmp_path}: no policy files (*.toml)")):
        load_policies(tmp_path, DECLINES)


def test_bad_decline_table_stops_the_load(tmp_path: Path) -> None:
    write_policy(tmp_path)
    table = tmp_path / "declines.toml"
    table.write_text('[codes]\nlost_card = "maybe"\n', encoding="utf-8")

    with pytest.raises(PolicyError, match=re.escape(f"{table}: codes.lost_card: Input should be")):
        load_policies(tmp_path, table)


def test_policy_may_bring_its_own_decline_table(tmp_path: Path, declines: DeclineTable) -> None:
    own = (
        SMALL
        + '\n[declines]\ndefault = "never_retry"\n[declines.codes]\nlost_card = "retry_later"\n'
    )
    path = write_policy(tmp_path, text=own)

    policy = load_policy_file(path, declines)

    assert policy.declines.classify("lost_card") is DeclineClass.RETRY_LATER
    assert policy.declines.classify("insufficient_funds") is DeclineClass.NEVER_RETRY


def test_copy_of_shipped_policy_under_new_version_loads(tmp_path: Path) -> None:
    text = (CONFIG / "policies" / "standard-v1.toml").read_text(encoding="utf-8")
    (tmp_path / "standard-v2.toml").write_text(
        text.replace("version = 1", "version = 2"), encoding="utf-8"
    )
    shutil.copy(CONFIG / "policies" / "standard-v1.toml", tmp_path)

    policies = load_policies(tmp_path, DECLINES)

    assert [p.label for p in policies] == ["standard v1", "standard v2"]
    assert find_policy(policies, "standard").version == 2


# Policy validation -------------------------------------------------------------------------


def test_valid_policy_has_a_label() -> None:
    assert Policy.model_validate(policy_data()).label == "small v1"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"reminders": reminders((0, "firm"), (2, "gentle"))},
            "reminders: the tone ladder only climbs",
        ),
        (
            {"reminders": reminders((0, "final"), (2, "firm"))},
            "reminders: the tone ladder only climbs",
        ),
        (
            {"retries": [timedelta(days=3), timedelta(days=1)]},
            "retries: offsets must be in increasing order",
        ),
        (
            {"reminders": reminders((4, "gentle"), (2, "gentle"))},
            "reminders: offsets must be in increasing order",
        ),
        ({"retries": [timedelta(hours=-1)]}, "retries: offsets must not be negative"),
        (
            {"reminders": reminders((-1, "gentle"))},
            "reminders: offsets must not be negative",
        ),
        (
            {"retries": [timedelta(days=1), timedelta(days=10)]},
            "retries: every offset must come before collections_after",
        ),
        (
            {"reminders": reminders((0, "gentle"), (11, "final"))},
            "reminders: every offset must come before collections_after",
        ),
        (
            {"max_charge_attempts": 1},
            "retries: more scheduled retries than max_charge_attempts allows",
        ),
        ({"min_retry_gap": timedelta(hours=-1)}, "min_retry_gap: must not be negative"),
        (
            {"retry_after_method_update": timedelta(minutes=-5)},
            "retry_after_method_update: must not be negative",
        ),
    ],
    ids=[
        "firm-before-gentle",
        "final-before-firm",
        "unsorted-retries",
        "unsorted-reminders",
        "negative-retry",
        "negative-reminder",
        "retry-at-collections",
        "reminder-after-collections",
        "retries-over-cap",
        "negative-retry-gap",
        "negative-method-update-delay",
    ],
)
def test_policy_refuses_a_bad_schedule(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        Policy.model_validate(policy_data(**changes))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"max_charge_attempts": 0}, "max_charge_attempts"),
        ({"version": 0}, "version"),
        ({"name": "Standard"}, "name"),
        ({"name": "two words"}, "name"),
        ({"reminders": [{"after": timedelta(0), "tone": "gentle", "channels": []}]}, "reminders"),
        (
            {"reminders": [{"after": timedelta(0), "tone": "gentle", "channels": ["fax"]}]},
            "reminders",
        ),
        ({"outcome_messages": {"refunded": ["email"]}}, "outcome_messages"),
    ],
)
def test_policy_refuses_a_bad_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Policy.model_validate(policy_data(**changes))

    assert [err["loc"][0] for err in info.value.errors()] == [field]


def test_policy_accepts_steps_just_before_collections_and_retries_up_to_the_cap() -> None:
    almost = timedelta(days=10) - timedelta(seconds=1)
    policy = Policy.model_validate(
        policy_data(
            retries=[timedelta(0), almost],
            max_charge_attempts=2,
            reminders=reminders((0, "gentle"), (0, "gentle"), (9, "final")),
        )
    )

    assert policy.retries[-1] == almost
    assert len(policy.reminders) == 3


def test_policy_may_skip_rungs_of_the_ladder() -> None:
    policy = Policy.model_validate(policy_data(reminders=reminders((0, "gentle"), (5, "final"))))

    assert [r.tone for r in policy.reminders] == [Tone.GENTLE, Tone.FINAL]


def test_policy_cannot_be_changed_once_loaded() -> None:
    policy = Policy.model_validate(policy_data())

    with pytest.raises(ValidationError, match="frozen"):
        policy.max_charge_attempts = 99  # type: ignore[misc]


# Decline classification --------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "insufficient_funds",
        "generic_decline",
        "do_not_honor",
        "processing_error",
        "issuer_not_available",
        "try_again_later",
        "card_velocity_exceeded",
    ],
)
def test_soft_declines_retry_later(declines: DeclineTable, code: str) -> None:
    assert declines.classify(code) is DeclineClass.RETRY_LATER


@pytest.mark.parametrize(
    "code",
    [
        # Stripe never retries these, nor may we (DESIGN.md §4).
        "incorrect_number",
        "lost_card",
        "pickup_card",
        "stolen_card",
        "revocation_of_authorization",
        "revocation_of_all_authorizations",
        "highest_risk_level",
        "transaction_not_allowed",
        "expired_card",
        "fraudulent",
        "no_payment_method",
    ],
)
def test_hard_declines_never_retry(declines: DeclineTable, code: str) -> None:
    assert declines.classify(code) is DeclineClass.NEVER_RETRY


def test_authentication_required_needs_the_customer(declines: DeclineTable) -> None:
    assert declines.classify("authentication_required") is DeclineClass.NEEDS_CUSTOMER_ACTION


def test_every_class_appears_in_the_shipped_table(declines: DeclineTable) -> None:
    assert set(declines.codes.values()) == set(DeclineClass)
    assert all(code == code.strip().lower() for code in declines.codes)


@pytest.mark.parametrize("code", ["something_new", "", None])
def test_unknown_code_takes_the_default(declines: DeclineTable, code: str | None) -> None:
    assert declines.default is DeclineClass.RETRY_LATER
    assert declines.classify(code) is DeclineClass.RETRY_LATER


def test_unknown_code_takes_a_strict_tables_default() -> None:
    table = DeclineTable(
        default=DeclineClass.NEVER_RETRY, codes={"insufficient_funds": "retry_later"}
    )

    assert table.classify("card_melted") is DeclineClass.NEVER_RETRY
    assert table.classify(None) is DeclineClass.NEVER_RETRY
    assert table.classify("insufficient_funds") is DeclineClass.RETRY_LATER


@pytest.mark.parametrize("code", ["STOLEN_CARD", "Stolen_Card", "  stolen_card\n"])
def test_classification_ignores_case_and_spaces(declines: DeclineTable, code: str) -> None:
    assert declines.classify(code) is DeclineClass.NEVER_RETRY


def test_table_written_in_capitals_still_matches(tmp_path: Path) -> None:
    table = tmp_path / "declines.toml"
    table.write_text('[codes]\n"Lost_Card" = "never_retry"\n" PICKUP_CARD " = "never_retry"\n')

    loaded = load_declines(table)

    assert loaded.classify("lost_card") is DeclineClass.NEVER_RETRY
    assert loaded.classify("pickup_card") is DeclineClass.NEVER_RETRY


def test_table_listing_a_code_twice_with_different_classes_is_refused(tmp_path: Path) -> None:
    table = tmp_path / "declines.toml"
    table.write_text('[codes]\nlost_card = "never_retry"\nLOST_CARD = "retry_later"\n')

    with pytest.raises(PolicyError, match=re.escape("codes: 'lost_card' is listed twice")):
        load_declines(table)
