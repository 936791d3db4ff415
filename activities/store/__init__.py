"""The case store: customers, cases, charge attempts, messages, received billing events, the
customers' feedback and the audit trail, one module per concern.

SQLite by default, any SQLAlchemy URL (PostgreSQL in production) through `DATABASE_URL`.
Contact details live here and only here: workflows hold the customer id.
Every write is idempotent (keyed by case and attempt, case and step and channel, case and
audit sequence), so a retried activity never writes a row twice.
"""

from activities.store.calls import CallBook
from activities.store.cases import CaseRecords
from activities.store.collections import CollectionsBook, CollectionsCase
from activities.store.engine import FIRST_REVISION, Database, migrations
from activities.store.feedback import FEEDBACK_TEXT_LIMIT, CustomerFeedback, FeedbackBook
from activities.store.inbox import (
    FINAL_STATUSES,
    OPEN_CASE_STATUSES,
    SETTLEMENT_KINDS,
    EventInbox,
)
from activities.store.ledger import SimulatedLedger
from activities.store.messages import Outbox
from activities.store.outbound import EventOutbox
from activities.store.policy_versions import PolicyVersion, PolicyVersionBook
from activities.store.tables import (
    CASE_SCOPE,
    CallAttempt,
    CallTask,
    CallTaskStatus,
    Case,
    CaseEvent,
    ChargeAttempt,
    Customer,
    CustomerProfile,
    Message,
    MessageStatus,
    OutboundDelivery,
    OutboundEvent,
    OutboundEventStatus,
    SimulatedCard,
    SimulatedCharge,
    SimulatedSubscription,
    Suppression,
    UTCDateTime,
    WebhookClaim,
    WebhookEvent,
    WebhookEventStatus,
    contact_key,
    utcnow,
)


class CaseStore(
    CaseRecords,
    Outbox,
    EventInbox,
    SimulatedLedger,
    FeedbackBook,
    CollectionsBook,
    CallBook,
    EventOutbox,
    PolicyVersionBook,
):
    """The one store the activities, the receiver and the CLI share: every concern's methods
    on one engine; safe to share between activity threads."""


__all__ = [
    "CASE_SCOPE",
    "CallAttempt",
    "CallBook",
    "CallTask",
    "CallTaskStatus",
    "FEEDBACK_TEXT_LIMIT",
    "FINAL_STATUSES",
    "FIRST_REVISION",
    "OPEN_CASE_STATUSES",
    "SETTLEMENT_KINDS",
    "Case",
    "CaseEvent",
    "CaseRecords",
    "CaseStore",
    "CollectionsBook",
    "CollectionsCase",
    "ChargeAttempt",
    "Customer",
    "CustomerFeedback",
    "CustomerProfile",
    "Database",
    "EventInbox",
    "EventOutbox",
    "FeedbackBook",
    "Message",
    "MessageStatus",
    "OutboundDelivery",
    "OutboundEvent",
    "OutboundEventStatus",
    "Outbox",
    "PolicyVersion",
    "PolicyVersionBook",
    "SimulatedCard",
    "SimulatedCharge",
    "SimulatedSubscription",
    "SimulatedLedger",
    "Suppression",
    "UTCDateTime",
    "WebhookClaim",
    "WebhookEvent",
    "WebhookEventStatus",
    "contact_key",
    "migrations",
    "utcnow",
]
