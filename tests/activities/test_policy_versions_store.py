"""The immutable store of policy versions, on SQLite and PostgreSQL: saved once by hash, read
back as the very policy, and what a worker fills its registry from."""

from __future__ import annotations

from activities.store import CaseStore
from tests.support.core import make_policy
from workflows.policy_versions import PolicyVersions, pin


def test_a_version_is_saved_once_under_its_hash_and_read_back_as_it_was(store: CaseStore):
    policy = make_policy(description="stored")
    policy_hash = store.save_policy_version(policy)
    assert policy_hash == pin(policy).hash
    assert store.save_policy_version(policy) == policy_hash  # again: nothing changes
    assert store.policy_version(policy_hash) == policy
    assert store.policy_versions() == [policy]
    assert store.policy_version("0" * 64) is None


def test_an_edit_under_the_same_version_is_stored_beside_the_first(store: CaseStore):
    first = make_policy()
    edited = make_policy(max_charge_attempts=9)
    hashes = {store.save_policy_version(first), store.save_policy_version(edited)}
    assert len(hashes) == 2
    assert {store.policy_version(h).max_charge_attempts for h in hashes} == {4, 9}


def test_a_worker_knows_the_files_and_the_store_and_looks_up_what_it_lacks(store: CaseStore):
    in_store = make_policy(description="saved by intake")
    in_files = make_policy(description="in the worker's files")
    store.save_policy_version(in_store)
    registry = PolicyVersions()
    store.fill_policy_versions(registry, [in_files])
    assert registry.known(pin(in_store).hash) and registry.known(pin(in_files).hash)

    later = make_policy(description="saved after the worker started")
    store.save_policy_version(later)
    assert registry.on_miss is not None
    assert registry.on_miss(pin(later).hash) == later
