"""Saved histories of every outcome path replay against today's DunningWorkflow (and a
customer's conversation against today's CustomerWorkflow).

A change that cases already running could not follow (a command added, dropped or reordered
without `workflow.patched`) fails here, before it is released. The histories in
`tests/workflow/histories/` are recorded on the dev server by
`python -m tests.workflow.histories.record`; see README, "Changing workflow code while cases run".
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from config.converter import compact_data_converter
from tests.workflow.histories.record import PATHS, personal_data
from workflows.customer import CustomerWorkflow
from workflows.dunning import DunningWorkflow

with workflow.unsafe.imports_passed_through():
    from workflows.models import CaseInput, PolicyRef

# Also histories of older code kept in subfolders until no case started on it still runs.
FOLDER = Path(__file__).parent / "histories"
HISTORIES = sorted(FOLDER.rglob("*.json"))


def saved(path: Path) -> WorkflowHistory:
    """A saved history, under the workflow id its case had."""
    return WorkflowHistory.from_json(f"dunning-{path.stem}", path.read_text())


def name(path: Path) -> str:
    """A history's name in test ids: its path under tests/workflow/histories/."""
    return path.relative_to(FOLDER).with_suffix("").as_posix()


def test_every_outcome_path_has_a_saved_history() -> None:
    # A case that continued as new is saved run by run: <path>-run1.json, <path>-run2.json.
    # The customer's conversation of a path is saved beside it: <path>-customer.json.
    stems = {path.stem.partition("-run")[0] for path in FOLDER.glob("*.json")}
    assert {stem.removesuffix("-customer") for stem in stems} == set(PATHS)
    assert len(PATHS) >= 8


@pytest.mark.parametrize("path", HISTORIES, ids=name)
async def test_saved_history_replays_on_todays_workflow(path: Path) -> None:
    replayer = Replayer(
        workflows=[DunningWorkflow, CustomerWorkflow], data_converter=compact_data_converter
    )
    await replayer.replay_workflow(saved(path))  # raises on any nondeterminism


@pytest.mark.parametrize("path", HISTORIES, ids=name)
def test_saved_history_holds_no_personal_data(path: Path) -> None:
    assert personal_data(path.read_text()) == []


# Unsandboxed: the sandbox would re-import this test module and everything the recorder imports.
@workflow.defn(name="DunningWorkflow", sandboxed=False)
class ReorderedDunningWorkflow:
    """A careless release: looks the customer up before loading the policy, unpatched."""

    @workflow.run
    async def run(self, case: CaseInput) -> None:
        for activity, argument in [
            ("contact_facts", case.customer_id),
            ("load_policy", PolicyRef(name=case.policy_name, version=case.policy_version)),
        ]:
            await workflow.execute_activity(
                activity, argument, start_to_close_timeout=timedelta(seconds=10)
            )
        await workflow.wait_condition(lambda: False)


async def test_a_change_that_is_not_replay_safe_fails_the_replay() -> None:
    replayer = Replayer(workflows=[ReorderedDunningWorkflow], data_converter=compact_data_converter)
    with pytest.raises(
        workflow.NondeterminismError, match="scheduled event 'load_policy' does not match"
    ):
        await replayer.replay_workflow(saved(HISTORIES[0]))
