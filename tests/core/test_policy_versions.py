"""Policies pinned by content hash: the hash, the registry a workflow reads versions from, and
what a pinned case carries into a continued run (a reference, never the policy)."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading

import pytest

from activities.store import CustomerProfile
from config.settings import Settings
from intake.cases import CaseOpener
from intake.events import BillingEvent
from tests.support.core import at, make_policy
from workflows.case import CaseState
from workflows.models import CaseInput, Failure, PolicyRef
from workflows.policy import Policy
from workflows.policy_versions import (
    POLICY_VERSIONS,
    PolicyVersions,
    UnknownPolicyVersion,
    canonical_json,
    from_canonical_json,
    pin,
    policy_hash,
)


def case_for(policy: Policy, policy_hash: str | None) -> CaseInput:
    return CaseInput(
        case_id="in_1",
        invoice_id="in_1",
        customer_id="cus_1",
        amount_due=4900,
        currency="USD",
        failure=Failure(decline_code="insufficient_funds", failed_at=at(1)),
        policy_name=policy.name,
        policy_version=policy.version,
        policy_hash=policy_hash,
    )


def test_a_policy_is_pinned_by_the_sha256_of_its_canonical_json() -> None:
    policy = make_policy()
    ref = pin(policy)
    assert (ref.name, ref.version) == ("small", 1)
    assert ref.hash == hashlib.sha256(canonical_json(policy).encode()).hexdigest()
    assert json.loads(canonical_json(policy))["retries"] == ["P1D", "P2D"]
    # The same content pins the same hash, however the model was built.
    assert policy_hash(Policy.model_validate_json(canonical_json(policy))) == ref.hash
    assert from_canonical_json(canonical_json(policy), ref.hash) == policy


def test_any_change_under_the_same_name_and_version_is_another_hash() -> None:
    policy = make_policy()
    edited = make_policy(max_charge_attempts=policy.max_charge_attempts + 1)
    assert (edited.name, edited.version) == (policy.name, policy.version)
    assert policy_hash(edited) != policy_hash(policy)


def test_a_stored_body_that_is_not_what_its_hash_says_is_refused() -> None:
    policy = make_policy()
    edited = make_policy(max_charge_attempts=9)
    with pytest.raises(ValueError, match="its body has another hash"):
        from_canonical_json(canonical_json(edited), policy_hash(policy))


def test_an_unknown_version_fails_clearly_and_is_looked_up_for_the_retry() -> None:
    registry = PolicyVersions()
    policy = make_policy(description="only in the store")
    ref = pin(policy)
    looked_up = threading.Event()
    asked: list[str] = []

    def from_store(wanted: str) -> Policy | None:
        asked.append(wanted)
        looked_up.set()
        return policy if wanted == ref.hash else None

    with pytest.raises(UnknownPolicyVersion, match=f"small v1 with hash {ref.hash} is not known"):
        registry.get(ref)  # no loader yet: nothing is looked up
    registry.on_miss = from_store
    with pytest.raises(UnknownPolicyVersion):
        registry.get(ref)
    assert looked_up.wait(5)
    for _ in range(500):  # the loader adds it on its own thread
        if registry.known(ref.hash):
            break
        threading.Event().wait(0.01)
    assert registry.get(ref) == policy
    assert asked == [ref.hash]


def test_a_version_once_known_never_changes() -> None:
    registry = PolicyVersions()
    policy = make_policy()
    ref = registry.add(policy)
    assert registry.add(Policy.model_validate_json(canonical_json(policy))) == ref
    assert registry.get(ref) is policy


def test_a_pinned_case_carries_only_its_reference_into_a_continued_run() -> None:
    policy = make_policy(description="pinned case")
    ref = POLICY_VERSIONS.add(policy)
    state = CaseState.open(case_for(policy, ref.hash), policy, at(1))

    carried = json.loads(state.model_dump_json())
    assert carried["policy"] == ref.model_dump()
    assert "retries" not in json.dumps(carried["policy"])
    # The next run reads the version from the registry, by hash.
    assert CaseState.model_validate_json(state.model_dump_json()).policy == policy


def test_a_case_opened_before_pinning_carries_its_policy_as_it_did() -> None:
    policy = make_policy(description="never pinned")
    state = CaseState.open(case_for(policy, None), policy, at(1))
    carried = json.loads(state.model_dump_json())
    assert carried["policy"]["retries"] == ["P1D", "P2D"]
    assert CaseState.model_validate_json(state.model_dump_json()).policy == policy


def test_a_reference_holds_nothing_but_a_sha256_hash() -> None:
    with pytest.raises(ValueError):
        PolicyRef(name="small", version=1, hash="not-a-hash")


def test_a_continued_run_pinned_to_an_unknown_version_fails_clearly_not_as_bad_input() -> None:
    policy = make_policy(description="forgotten")
    carried = CaseState.open(case_for(policy, policy_hash(policy)), policy, at(1))
    # Never added to the process's registry: the retried task finds it once the worker has.
    with pytest.raises(UnknownPolicyVersion, match="is not known to this worker"):
        CaseState.model_validate_json(carried.model_dump_json())


def test_a_policy_file_edited_in_place_pins_new_cases_to_another_hash(tmp_path) -> None:
    shipped = Settings(_env_file=None)
    edited_dir = tmp_path / "policies"
    shutil.copytree(shipped.policies_dir, edited_dir)
    standard = edited_dir / "standard-v1.toml"
    text = standard.read_text()
    assert 'retries = ["P1D", "P3D", "P5D", "P7D"]' in text
    standard.write_text(text.replace('"P1D", "P3D", "P5D", "P7D"', '"P2D", "P4D"'))
    event = BillingEvent(
        invoice_id="in_1",
        customer=CustomerProfile(customer_id="c"),
        amount_due=4900,
        currency="USD",
        policy="standard",
        policy_version=1,
    )

    before = CaseOpener.from_settings(shipped).case_input(event)
    after = CaseOpener.from_settings(
        shipped.model_copy(update={"policies_dir": edited_dir})
    ).case_input(event)

    assert (before.policy_name, before.policy_version) == (after.policy_name, after.policy_version)
    assert before.policy_hash != after.policy_hash
    assert POLICY_VERSIONS.get(PolicyRef(name="standard", version=1, hash=before.policy_hash))
    edited = POLICY_VERSIONS.get(PolicyRef(name="standard", version=1, hash=after.policy_hash))
    assert len(edited.retries) == 2
