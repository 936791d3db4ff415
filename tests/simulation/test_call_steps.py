"""The simulator takes a policy's call steps as the workflow does (one step each, settled
without a task: nobody phones a simulated customer), so a policy with calls can be compared."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from simulation.simulator import run_case
from simulation.world import ChargeAnswer, SimCase
from tests.support.core import standard_policy
from workflows.policy import DeclineCodes, Outcome, Policy

FAILED_AT = datetime(2026, 3, 10, 14, tzinfo=UTC)


class Declines:
    """A world where every charge is declined and nobody answers a message."""

    def charge(self, case, attempt, at):
        return ChargeAnswer.declined_with("insufficient_funds")

    def respond(self, case, message, at):
        return None


def test_a_call_step_is_simulated_once_and_the_case_runs_to_its_end() -> None:
    standard = standard_policy()
    policy = Policy.model_validate(
        standard.model_dump() | {"name": "calling", "calls": [{"after": timedelta(days=9)}]}
    )
    case = SimCase(
        id="c1",
        customer_id="u1",
        amount=999,
        failure=DeclineCodes(decline_code="insufficient_funds"),
        failed_at=FAILED_AT,
        time_zone="America/New_York",
    )
    run = run_case(case, policy, Declines())
    calls = [step for step in run.steps if step.kind == "call"]
    assert [(c.step, c.at) for c in calls] == [("call-1", FAILED_AT + timedelta(days=9))]
    assert run.outcome is Outcome.COLLECTIONS
