"""`dunning model train` (retry and message models) and `dunning model evaluate` on a seeded
store, run as a user runs them: the figures printed, the files written, and one line with
exit 1 when there is too little to learn from."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from activities.message_training import read_message_model
from activities.retry_training import read_model, write_model
from activities.store import CaseStore
from config.policies import find_policy, load_policies
from config.settings import Settings
from tests.support.cli import cli_env, one_line
from tests.support.cli import dunning as dunning_cli
from tests.support.harness import Dunning, status_when
from tests.support.retry_history import GOOD_HOUR, ZONE, local_hour, seed_store, synthetic_history
from workflows.dunning import DunningWorkflow
from workflows.models import CancelRequest
from workflows.retry_model import fit
from workflows.retry_planner import plan_retries
from workflows.smart_retry import PlanFacts


def seeded(tmp_path: Path, cases: int, **changes) -> Path:
    """A store holding the synthetic history of `cases` cases; its models folder."""
    store = CaseStore(f"sqlite:///{tmp_path / 'dunning.db'}")
    store.upgrade()
    seed_store(store, [r.model_copy(update=changes) for r in synthetic_history(cases)])
    store.engine.dispose()
    return tmp_path / "models"


def figure(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, (pattern, text)
    return float(match.group(1))


def test_train_evaluates_on_the_newest_retries_and_writes_a_model_that_learned(tmp_path):
    models = seeded(tmp_path, 300)
    env = cli_env(tmp_path)

    done = dunning_cli(env, "model", "train", "--models-dir", str(models), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    out = done.stdout
    retries = len(synthetic_history(300))
    held_out = round(retries * 0.2)
    assert (
        f"held out: the newest {held_out} retries, "
        f"predicted by a model fitted on the {retries - held_out}"
    ) in out
    assert figure(r"AUC (\d\.\d+)", out) > 0.8
    assert figure(r"skill (-?\d+\.\d)%", out) > 20
    assert figure(r"log loss (\d\.\d+)", out) < figure(r"base rate (\d\.\d+)", out)
    assert len(re.findall(r"^    0\.\d\d-[01]\.\d\d: ", out, re.MULTILINE)) == 5  # bands
    path = models / "retry-model-v1.skops"
    assert f"wrote {path}: model v1, refitted on all {retries} retries\n" in out
    # The message model is written beside it; with no reminders to learn from, it changes
    # nothing: reminders go out as written.
    messages = models / "message-model-v1.json"
    assert out.strip().endswith(
        f"wrote {messages}: message model v1, learned from 0 reminders; "
        "segments it changes: none: reminders go out as written"
    )
    assert read_message_model(messages).segments == {}
    # The model plans retries at the hour the history says they pass.
    settings = Settings(_env_file=None)
    smart = find_policy(load_policies(settings.policies_dir, settings.declines_file), "smart")
    facts = PlanFacts(
        decline_code="insufficient_funds",
        failed_at=datetime(2026, 9, 1, 13, 5, tzinfo=UTC),
        amount=4900,
        currency="USD",
        time_zones=[ZONE],
    )
    plan = plan_retries(read_model(path), facts, smart)
    assert plan.offsets and {local_hour(facts.failed_at + o) for o in plan.offsets} == {GOOD_HOUR}

    again = dunning_cli(env, "model", "train", "--models-dir", str(models), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "model v2" in again.stdout  # the next version, never over the first
    assert "message model v2" in again.stdout

    evaluated = dunning_cli(env, "model", "evaluate", "--models-dir", str(models), cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert evaluated.stdout.startswith("model v2 (fitted ")
    assert f"on the store's {retries} scheduled retries:" in evaluated.stdout
    assert figure(r"AUC (\d\.\d+)", evaluated.stdout) > 0.75

    pinned = dunning_cli(env, "model", "evaluate", "--model", str(path), cwd=tmp_path)
    assert pinned.returncode == 0, pinned.stderr
    assert pinned.stdout.startswith("model v1 (fitted ")


@pytest.mark.parametrize(
    ("cases", "changes", "words"),
    [
        (20, {}, "only {retries} scheduled retries in the store; a model needs 200"),
        (150, {"approved": False}, "all {retries} retries were declined: nothing to tell apart"),
    ],
)
def test_train_refuses_a_history_too_poor_to_learn_from(tmp_path, cases, changes, words):
    models = seeded(tmp_path, cases, **changes)

    done = dunning_cli(
        cli_env(tmp_path), "model", "train", "--models-dir", str(models), cwd=tmp_path
    )

    one_line(done, 1, words.format(retries=len(synthetic_history(cases))))
    assert not models.exists()


def test_model_commands_say_what_is_wrong_in_one_line(tmp_path):
    models = seeded(tmp_path, 3)
    env = cli_env(tmp_path)

    def model(*args: str):
        return dunning_cli(env, "model", *args, "--models-dir", str(models), cwd=tmp_path)

    one_line(model("evaluate"), 1, f"no retry model in {models}: `dunning model train` makes one")
    one_line(model("evaluate", "--version", "4"), 1, "retry-model-v4.skops: cannot read")
    one_line(model("evaluate", "--model", "m", "--version", "4"), 2, "give --model or --version")
    one_line(model("train", "--holdout", "0.9"), 2, "invalid value for '--holdout'")


async def test_status_shows_the_model_a_smart_case_is_pinned_to(dunning: Dunning, tmp_path):
    dunning.activities.retry_models_dir = tmp_path / "models"
    write_model(fit(synthetic_history(150), 1, datetime.now(UTC)), tmp_path / "models")
    env = cli_env(
        tmp_path,
        TEMPORAL_ADDRESS=dunning.env.client.service_client.config.target_host,
        DATABASE_URL=str(dunning.activities.store.engine.url),
    )
    case = await dunning.open_case("pm_card_chargeDeclinedInsufficientFunds", currency="USD")
    async with dunning.worker():
        handle = await dunning.start(case.model_copy(update={"policy_name": "smart"}))
        await status_when(handle, lambda v: v.retry_model_version == 1, "the first plan")
        done = await asyncio.to_thread(dunning_cli, env, "status", case.invoice_id, cwd=tmp_path)
        await handle.signal(DunningWorkflow.cancel, CancelRequest(reason="done", actor="test"))

    assert done.returncode == 0, done.stderr
    assert "\nretry plan (model v1): smart schedule from model v1 (" in done.stdout
