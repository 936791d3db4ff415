"""The simulated gateway's ledger: the answer it gave for each idempotency key."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from activities.store.engine import Database
from activities.store.tables import SimulatedCharge


class SimulatedLedger(Database):
    """What the simulated gateway answered, kept as Stripe keeps idempotency keys."""

    def simulated_charge(self, key: str) -> SimulatedCharge | None:
        """What the simulated gateway answered for an idempotency key, if it has seen it."""
        with self.session() as session:
            return session.get(SimulatedCharge, key)

    def save_simulated_charge(self, charge: SimulatedCharge) -> SimulatedCharge:
        """Remember an answer; when a concurrent call stored one first, that one wins."""
        with self.session() as session:
            session.add(charge)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                return session.get(SimulatedCharge, charge.idempotency_key)
            return charge
