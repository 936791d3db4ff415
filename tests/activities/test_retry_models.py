"""Retry-model files and the activities that use them: written once and whole, read only when
they hold what a model holds, cached per file version, pinned per case; a bad file plans the
fixed schedule and says why, and never fails the case."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import pytest
import skops.io
from sklearn.linear_model import LogisticRegression

from activities.dunning import DunningActivities
from activities.retry_training import (
    RETRY_FILES,
    ModelCache,
    ModelFileError,
    TrainingError,
    newest_model,
    read_model,
    write_model,
)
from activities.store import WebhookEvent
from config.policies import find_policy, load_policies
from config.settings import Settings
from tests.support.retry_history import GOOD_HOUR, ZONE, local_hour, synthetic_history
from workflows.models import ChargeRequest, PlanRequest
from workflows.policy import DeclineClass
from workflows.retry_model import RetryModel, fit
from workflows.retry_planner import plan_retries
from workflows.smart_retry import PlanFacts

FAILED_AT = datetime(2026, 9, 1, 13, 5, tzinfo=UTC)
SETTINGS = Settings(_env_file=None)


@pytest.fixture(scope="module")
def fitted() -> RetryModel:
    """Model v1, fitted on a history where one local hour (GOOD_HOUR) is when retries pass."""
    return fit(synthetic_history(150), 1, FAILED_AT)


@pytest.fixture
def activities(tmp_path: Path) -> Iterator[DunningActivities]:
    """The activities on a SQLite file, reading models from `tmp_path / "models"`."""
    acts = DunningActivities.from_settings(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'dunning.db'}",
            retry_models_dir=tmp_path / "models",
            _env_file=None,
        )
    )
    yield acts
    acts.store.engine.dispose()


def plan_request(model_version: int | None = None) -> PlanRequest:
    return PlanRequest(
        case_id="in_smart",
        invoice_id="in_smart",
        customer_id="cus_smart",
        decline_code="insufficient_funds",
        failed_at=FAILED_AT,
        amount=4900,
        currency="USD",
        time_zones=[ZONE],
        planned_at=FAILED_AT,
        model_version=model_version,
        policy_name="smart",
        policy_version=1,
    )


# Files -------------------------------------------------------------------------------------


def test_a_model_file_reads_back_as_the_model_and_is_never_overwritten(
    tmp_path: Path, fitted: RetryModel
) -> None:
    path = write_model(fitted, tmp_path)

    assert path == tmp_path / "retry-model-v1.skops"
    read = read_model(path)
    assert read.info == fitted.info
    smart = find_policy(load_policies(SETTINGS.policies_dir, SETTINGS.declines_file), "smart")
    assert plan_retries(read, plan_request(), smart) == plan_retries(fitted, plan_request(), smart)
    with pytest.raises(TrainingError, match="already exists"):
        write_model(fitted, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["retry-model-v1.skops"]  # no temp left


def _dump(path: Path, estimator: object, info: str) -> Path:
    skops.io.dump({"info": info, "estimator": estimator}, path)
    return path


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("garbage", "not a retry model"),
        ("untrusted", "Untrusted types found in the file: ['fractions.Fraction']"),
        ("another estimator", "holds LogisticRegression"),
        ("another version", "holds model v1, not the file's version"),
        ("bad info", "not a retry model: trained_on"),
    ],
)
def test_a_broken_or_tampered_file_is_refused_in_one_line_naming_it(
    tmp_path: Path, fitted: RetryModel, content: str, words: str
) -> None:
    info = fitted.info.model_dump_json()
    path = tmp_path / "retry-model-v2.skops"
    match content:
        case "garbage":
            path.write_bytes(b"PK\x03\x04 not a zip at all")
        case "untrusted":
            _dump(path, Fraction(1, 3), info.replace('"version":1', '"version":2'))
        case "another estimator":
            _dump(path, LogisticRegression(), info.replace('"version":1', '"version":2'))
        case "another version":
            os.replace(write_model(fitted, tmp_path), path)
        case "bad info":
            _dump(path, fitted.estimator, info.replace('"trained_on":', '"trained_on":-'))

    with pytest.raises(ModelFileError) as refused:
        read_model(path)

    message = str(refused.value)
    assert message.startswith(f"{path}: ") and words in message
    assert "\n" not in message


def test_models_are_read_once_per_file_version(tmp_path: Path, fitted: RetryModel) -> None:
    cache = ModelCache()
    path = write_model(fitted, tmp_path)

    first = cache.read(path)
    assert cache.read(path) is first
    later = path.stat().st_mtime_ns + 1_000_000_000
    os.utime(path, ns=(later, later))  # the file replaced by another copy
    assert cache.read(path) is not first
    with pytest.raises(ModelFileError, match="retry-model-v7.skops: cannot read"):
        cache.read(RETRY_FILES.path(tmp_path, 7))


def test_files_of_the_old_format_are_not_models(tmp_path: Path) -> None:
    (tmp_path / "retry-model-v3.json").write_text('{"version": 3}')

    assert newest_model(tmp_path) is None


# The plan activity -------------------------------------------------------------------------


def test_a_case_plans_with_the_newest_model_then_keeps_its_own(
    activities: DunningActivities, fitted: RetryModel
) -> None:
    models = activities.retry_models_dir
    write_model(fitted, models)
    write_model(RetryModel(fitted.info.model_copy(update={"version": 2}), fitted.estimator), models)

    first = activities.plan_retries(plan_request())
    pinned = activities.plan_retries(plan_request(model_version=1))

    assert first.model_version == 2 and "model v2" in first.reason
    assert pinned.model_version == 1 and "model v1" in pinned.reason
    assert pinned.offsets
    assert {local_hour(FAILED_AT + offset) for offset in pinned.offsets} == {GOOD_HOUR}


@pytest.mark.parametrize("pinned", [None, 1])
def test_a_corrupt_model_file_plans_the_fixed_schedule_and_says_why(
    activities: DunningActivities, pinned: int | None
) -> None:
    models = activities.retry_models_dir
    models.mkdir()
    (models / "retry-model-v1.skops").write_bytes(b"tampered")

    plan = activities.plan_retries(plan_request(model_version=pinned))

    assert plan.model_version is None
    assert plan.offsets == [timedelta(days=d) for d in (1, 3, 5, 7)]  # smart-v1's fixed ones
    assert plan.reason.startswith(f"fixed schedule: {models / 'retry-model-v1.skops'}: ")


def test_a_case_pinned_to_a_deleted_model_plans_the_fixed_schedule(
    activities: DunningActivities, fitted: RetryModel
) -> None:
    write_model(fitted, activities.retry_models_dir)

    plan = activities.plan_retries(plan_request(model_version=4))

    assert plan.model_version is None
    assert "retry-model-v4.skops: cannot read" in plan.reason


# The charge activity -----------------------------------------------------------------------


def test_a_scheduled_retry_is_stored_with_its_facts_and_the_customers_payments(
    activities: DunningActivities,
) -> None:
    paid_at = FAILED_AT - timedelta(days=31)
    activities.store.claim_webhook_event(
        WebhookEvent(
            provider="stripe",
            event_id="evt_paid",
            type="invoice.paid",
            occurred_at=paid_at,
            invoice_id="in_july",
            customer_id="cus_smart",
            payload={},
        )
    )
    facts = PlanFacts(
        **plan_request(model_version=1).model_dump(include=set(PlanFacts.model_fields)),
    ).model_copy(update={"decline_class": DeclineClass.RETRY_LATER})
    request = ChargeRequest(
        case_id="in_smart",
        invoice_id="in_smart",
        customer_id="cus_smart",
        attempt=2,
        amount=4900,
        currency="USD",
        payment_method="pm_card_jcb",
        scheduled=True,
        plan_facts=facts,
        propensity=0.9,
        retry_model_version=1,
    )

    result = activities.charge(request)

    [row] = activities.store.attempts("in_smart")
    assert (result.card_brand, result.card_country) == ("jcb", "JP")
    assert (row.scheduled, row.card_brand, row.card_country) == (True, "jcb", "JP")
    assert (row.propensity, row.model_version) == (0.9, 1)
    stored = PlanFacts.model_validate(row.plan_facts)
    assert stored.paid_history == [paid_at]
    assert stored == facts.model_copy(update={"paid_history": [paid_at]})
