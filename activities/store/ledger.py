"""The simulated gateway's ledger: the answer it gave for each idempotency key, and the cards
(with their expiries) and subscriptions (with their renewal dates) it holds."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel, select

from activities.store.engine import Database
from activities.store.tables import (
    SimulatedCard,
    SimulatedCharge,
    SimulatedSubscription,
    utcnow,
)


class SimulatedLedger(Database):
    """What the simulated gateway answered, kept as Stripe keeps idempotency keys; the
    cards and subscriptions it holds."""

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

    # Cards and subscriptions: what pre-dunning reads where Stripe would answer.

    def save_simulated_card(self, card: SimulatedCard) -> None:
        """Hold a card (or its new expiry: a card updater's renewal); idempotent."""
        self._upsert(card, SimulatedCard, card.payment_method)

    def simulated_card(self, payment_method: str) -> SimulatedCard | None:
        """The card a payment method names, if the simulated gateway holds it."""
        with self.session() as session:
            return session.get(SimulatedCard, payment_method)

    def save_simulated_subscription(self, subscription: SimulatedSubscription) -> None:
        """Bill a subscription (or move its renewal date); idempotent."""
        self._upsert(subscription, SimulatedSubscription, subscription.subscription_id)

    def simulated_subscriptions(self, customer_id: str) -> list[SimulatedSubscription]:
        """A customer's subscriptions, by renewal date."""
        with self.session() as session:
            return list(
                session.exec(
                    select(SimulatedSubscription)
                    .where(SimulatedSubscription.customer_id == customer_id)
                    .order_by(SimulatedSubscription.renews_at)
                )
            )

    def _upsert(self, row: SQLModel, table: type[SQLModel], key: str) -> None:
        values = row.model_dump(exclude={"updated_at"})
        for _ in range(2):
            with self.session() as session:
                stored = session.get(table, key) or table(**values, updated_at=utcnow())
                for field, value in values.items():
                    setattr(stored, field, value)
                stored.updated_at = utcnow()
                session.add(stored)
                try:
                    session.commit()
                    return
                except IntegrityError:
                    session.rollback()  # inserted concurrently: now it is an update
        raise RuntimeError(f"{table.__tablename__} {key} could not be stored")
