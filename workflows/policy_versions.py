"""The policy versions this process knows, by content hash: what a case pinned to a hash reads
instead of carrying its policy in its history.

A case is pinned to `PolicyRef(name, version, hash)`, the hash a sha256 of the policy's
canonical JSON. Versions are immutable and content-addressed, so reading one by hash from
workflow code is deterministic: a replay on any worker that knows the hash gets the very
policy the case first ran on, even after its file changed (a changed file is another hash).

The worker fills the registry at start (the policy files and the store's `policy_versions`),
and intake adds each version it pins. A worker that does not know a case's hash must not read
the store from workflow code (I/O in a workflow task, and SQLModel in the sandbox): `get`
raises `UnknownPolicyVersion`, which fails the workflow task with that message, so the
server retries it, and asks the `on_miss` loader (set by the worker) to fetch the version from
the store on a thread of its own. The retried task finds it. No command depends on whether the
version was known at first, so the case's history is the same either way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable

from workflows.models import PolicyRef
from workflows.policy import Policy

log = logging.getLogger("dunning.policy_versions")


class UnknownPolicyVersion(Exception):
    """This worker does not know a pinned policy version (yet): the workflow task fails with
    this message and is retried; meanwhile the worker looks for it in the store."""


def canonical_json(policy: Policy) -> str:
    """The policy as canonical JSON: sorted keys, no spaces, durations in ISO 8601. Two
    policies are the same version exactly when these strings are equal."""
    return json.dumps(
        policy.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def policy_hash(policy: Policy) -> str:
    """The sha256 of the policy's canonical JSON, in hex: what a case is pinned to."""
    return hashlib.sha256(canonical_json(policy).encode()).hexdigest()


def pin(policy: Policy) -> PolicyRef:
    """The reference a case keeps for `policy`."""
    return PolicyRef(name=policy.name, version=policy.version, hash=policy_hash(policy))


def from_canonical_json(body: str, expected_hash: str) -> Policy:
    """A stored version read back; `ValueError` when the body is not what its hash says."""
    policy = Policy.model_validate_json(body)
    if policy_hash(policy) != expected_hash:
        raise ValueError(f"policy version {expected_hash[:12]}: its body has another hash")
    return policy


class PolicyVersions:
    """Policies by content hash; safe to share between threads (adds and reads under a lock).
    Versions are only ever added: what a hash names never changes."""

    def __init__(self) -> None:
        self._by_hash: dict[str, Policy] = {}
        self._lock = threading.Lock()
        self._loading: set[str] = set()
        self.on_miss: Callable[[str], Policy | None] | None = None

    def add(self, policy: Policy) -> PolicyRef:
        """Know `policy` by its hash (again is harmless); its reference."""
        ref = pin(policy)
        with self._lock:
            self._by_hash.setdefault(ref.hash, policy)
        return ref

    def known(self, policy_hash: str) -> bool:
        """True when the version is in this process."""
        with self._lock:
            return policy_hash in self._by_hash

    def get(self, ref: PolicyRef) -> Policy:
        """The pinned version. `UnknownPolicyVersion` when this process does not know it; the
        worker's `on_miss` loader then fetches it in the background for the retried task."""
        with self._lock:
            policy = self._by_hash.get(ref.hash)
        if policy is not None:
            return policy
        self._load_later(ref.hash)
        raise UnknownPolicyVersion(
            f"policy {ref.name} v{ref.version} with hash {ref.hash} is not known to this "
            "worker: the task is retried while it is looked up in the store (give the worker "
            "the policy file, or a store where intake saved it)"
        )

    def _load_later(self, policy_hash: str) -> None:
        load = self.on_miss
        with self._lock:
            if load is None or policy_hash in self._loading:
                return
            self._loading.add(policy_hash)

        def run() -> None:
            try:
                policy = load(policy_hash)
            except Exception:
                log.exception("looking up policy version %s failed", policy_hash)
                policy = None
            if policy is not None:
                self.add(policy)
            with self._lock:
                self._loading.discard(policy_hash)

        threading.Thread(target=run, name=f"policy-version-{policy_hash[:12]}", daemon=True).start()


POLICY_VERSIONS = PolicyVersions()
"""The process's registry: the worker, intake and the workflow share this one."""
