"""The immutable store of policy versions: every version a case was pinned to, by content hash.

Intake saves a version the first time it pins a case to it; workers fill their registry from
here at start, and look a version up here when a case pinned elsewhere names one they lack.
A row is never changed or deleted: what a hash names is fixed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, select

from activities.store.engine import Database
from activities.store.tables import UTCDateTime, utcnow
from workflows.policy import Policy
from workflows.policy_versions import PolicyVersions, canonical_json, from_canonical_json, pin


class PolicyVersion(SQLModel, table=True):
    """One policy version, its body the canonical JSON its hash is taken of."""

    __tablename__ = "policy_versions"
    hash: str = Field(primary_key=True, max_length=64)
    name: str
    version: int
    body: str = Field(sa_column=Column(Text(), nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class PolicyVersionBook(Database):
    """Saves and reads policy versions; idempotent, safe to share between threads."""

    def save_policy_version(self, policy: Policy) -> str:
        """Keep `policy` under its hash (nothing to do when it is there already); the hash."""
        ref = pin(policy)
        with self.session() as session:
            if session.get(PolicyVersion, ref.hash) is not None:
                return ref.hash
            session.add(
                PolicyVersion(
                    hash=ref.hash,
                    name=policy.name,
                    version=policy.version,
                    body=canonical_json(policy),
                    created_at=utcnow(),
                )
            )
            try:
                session.commit()
            except IntegrityError:  # saved by another process meanwhile: the same body
                session.rollback()
        return ref.hash

    def policy_version(self, policy_hash: str) -> Policy | None:
        """The version with this hash, or None when none was saved."""
        with self.session() as session:
            row = session.get(PolicyVersion, policy_hash)
        return None if row is None else from_canonical_json(row.body, row.hash)

    def policy_versions(self) -> list[Policy]:
        """Every saved version, oldest first."""
        with self.session() as session:
            rows = session.exec(select(PolicyVersion).order_by(PolicyVersion.created_at)).all()
        return [from_canonical_json(row.body, row.hash) for row in rows]

    def fill_policy_versions(self, registry: PolicyVersions, policies: list[Policy]) -> None:
        """Make `registry` know `policies` (the files) and every saved version, and look up a
        version it lacks here (a case pinned by intake to a file this worker never read)."""
        for policy in [*policies, *self.policy_versions()]:
            registry.add(policy)
        registry.on_miss = self.policy_version
