"""The dunning activities: load a policy, charge, notify, record.

Methods on one class that holds the dependencies (store, payment processor and biller,
notifiers, policies), so a test or a deployment swaps a real service for another by
construction. All are synchronous and run in the worker's thread pool; all are idempotent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from temporalio import activity

from activities import metrics
from activities.conversation import ConversationActivities
from activities.message_training import message_model_version, newest_message_model
from activities.notify import (
    Notifier,
    NotifierConfigError,
    NotifierUnavailable,
    OutboundMessage,
    UndeliverableError,
)
from activities.notify.contacts import contact_zones
from activities.notify.in_app import InAppNotifier
from activities.notify.links import SelfService
from activities.notify.outbox import OutboxNotifier
from activities.notify.sendgrid import SendGridNotifier
from activities.notify.templates import Templates, message_variables
from activities.notify.twilio import TwilioNotifier
from activities.outbound import EventPublisher
from activities.payments import (
    Biller,
    GatewayConfigError,
    IdempotencyConflict,
    Processor,
    biller_for,
    processor_for,
)
from activities.retry_training import ModelCache, ModelFileError, model_version, newest_model
from activities.scrub import scrubbed
from activities.store import (
    CASE_SCOPE,
    CaseStore,
    CustomerProfile,
    Message,
    MessageStatus,
    utcnow,
)
from config.policies import find_policy, load_policies
from config.settings import Settings
from workflows import message_timing, retry_planner
from workflows.calls import CALL_WINDOW, next_call_at
from workflows.case_events import CaseEvent
from workflows.message_timing import MessageModel, MessagePlan
from workflows.messaging import (
    CAP_WINDOW,
    CAPPED_CHANNELS,
    fallback_channels,
    gives_way_to_cap,
    needs_fallback,
)
from workflows.models import (
    CallTaskCreated,
    CallTaskRequest,
    CaseRecord,
    CaseUpdate,
    ChargeRequest,
    ChargeResult,
    ContactFacts,
    Delivery,
    DeliveryStatus,
    InvoiceSettled,
    LateFeeRequest,
    LateFeeResult,
    MessagePlanRequest,
    NotifyRequest,
    NotifyResult,
    PlanRequest,
    PolicyRef,
    TimelineEntry,
    WriteBackRequest,
    WriteBackResult,
)
from workflows.policy import Channel, DeclineClass, Policy, Tone
from workflows.smart_retry import RetryPlan, RetryScorer
from workflows.steps import (
    CaseClosed,
    CaseOpened,
    CloseCaseRequest,
    OpenCaseRequest,
    WriteBackDone,
    closing_lines,
    replan_facts,
)

log = logging.getLogger("dunning.activities")

OPERATOR_ERRORS = (GatewayConfigError, IdempotencyConflict)
"""The biller's errors retrying cannot fix (the workflow's `OPERATOR_ERRORS`, by type)."""


class InvoiceSettledMeanwhile(Exception):
    """The invoice was settled while a step was being sent: the rest of it is withheld."""

    def __init__(self, settlement: InvoiceSettled) -> None:
        super().__init__(settlement.source)
        self.settlement = settlement


class DunningActivities:
    """Everything a dunning case does outside its workflow."""

    def __init__(
        self,
        store: CaseStore,
        processor: Processor,
        biller: Biller,
        notifiers: dict[Channel, Notifier],
        policies: list[Policy],
        templates: Templates,
        self_service: SelfService,
        messages_per_week: int = 4,
        retry_models_dir: Path | None = None,
        publisher: EventPublisher | None = None,
    ) -> None:
        self.store = store
        self.processor = processor
        self.biller = biller
        self.notifiers = notifiers
        self.policies = policies
        self.templates = templates
        self.self_service = self_service
        self.messages_per_week = messages_per_week
        self.retry_models_dir = retry_models_dir
        self.retry_models = ModelCache()
        self.conversation = ConversationActivities(store)
        self.publisher = publisher or EventPublisher(store)

    @classmethod
    def from_settings(cls, settings: Settings) -> DunningActivities:
        """The activities as configured; bad policies or templates fail here, at start-up."""
        store = CaseStore(settings.database_url)
        store.upgrade()
        outbox = OutboxNotifier(settings.fault_rate)
        notifiers: dict[Channel, Notifier] = {channel: outbox for channel in Channel}
        if settings.email_provider == "sendgrid":
            notifiers[Channel.EMAIL] = SendGridNotifier.from_settings(settings)
        if settings.sms_provider == "twilio":
            notifiers[Channel.SMS] = TwilioNotifier.from_settings(settings)
        if settings.in_app_webhook_url:
            notifiers[Channel.IN_APP] = InAppNotifier.from_settings(settings)
        return cls(
            store=store,
            processor=processor_for(settings, store),
            biller=biller_for(settings, store),
            notifiers=notifiers,
            policies=load_policies(settings.policies_dir, settings.declines_file),
            templates=Templates.from_settings(settings),
            self_service=SelfService.from_settings(settings),
            messages_per_week=settings.messages_per_week,
            retry_models_dir=settings.retry_models_dir,
            publisher=EventPublisher.from_settings(settings, store),
        )

    def all(self) -> list:
        """The activity callables to register on a worker."""
        return [
            self.load_policy,
            self.contact_facts,
            self.open_case,
            self.close_case,
            self.plan_retries,
            self.plan_messages,
            self.charge,
            self.notify,
            self.record,
            self.write_back,
            *self.conversation.all(),
            self.add_late_fee,
            self.create_call_task,
            self.publish_event,
        ]

    @activity.defn
    def load_policy(self, ref: PolicyRef) -> Policy:
        """The policy a case is pinned to; loaded once, then kept in the case's history."""
        return find_policy(self.policies, ref.name, ref.version)

    @activity.defn
    def contact_facts(self, customer_id: str) -> ContactFacts:
        """The zones contact hours must hold in: the customer's own, else their number's."""
        customer = self.store.get_customer(customer_id)
        if customer is None:
            return ContactFacts()
        return ContactFacts(time_zones=contact_zones(customer.time_zone, customer.phone))

    @activity.defn
    async def open_case(self, request: OpenCaseRequest) -> CaseOpened:
        """Open a case in one activity: look up the customer's time zones, write the case row
        and its first audit lines, publish `case.opened`, plan the reminders and retries the
        policy asks for, and join the customer's conversation (async: signal-with-start needs
        the worker's client). Idempotent: the row is an upsert, the lines and the event are
        stored once each, the plans only read and the conversation ignores a repeated note."""
        opened = await asyncio.to_thread(self._open_case, request)
        if request.joined is not None:
            joined = request.joined.model_copy(update={"time_zones": opened.time_zones})
            await self.conversation.tell_conversation(joined)
        return opened

    def _open_case(self, request: OpenCaseRequest) -> CaseOpened:
        zones = self.contact_facts(request.customer_id).time_zones
        self.record(request.record)
        if request.opened is not None:
            self.publisher.publish(request.opened)
        opened = CaseOpened(time_zones=zones)
        if request.message_plan is not None:
            opened.message_plan = self.plan_messages(request.message_plan)
        if request.retry_plan is not None:
            facts = request.retry_plan.model_copy(update={"time_zones": zones})
            opened.retry_plan = self.plan_retries(facts)
        return opened

    @activity.defn
    async def close_case(self, request: CloseCaseRequest) -> CaseClosed:
        """Close a finished case in one activity: hand its outcome message to the customer's
        conversation, publish its outcome event, send its outcome message, write the outcome
        back to the biller, write the case row with every audit line, this activity's own
        included, and leave the conversation. Idempotent part by part: the event is stored
        once, a message goes out at most once per channel, the biller dedupes each
        write-back, the lines are stored once each, the conversation ignores repeated notes.
        Trouble retrying may fix is raised (the activity is retried); trouble it cannot is
        kept as the part's audit line."""
        if request.outcome is not None:
            await self.conversation.tell_conversation(request.outcome)
        closed = await asyncio.to_thread(self._close_case, request)
        if request.left is not None:
            await self.conversation.tell_conversation(request.left)
        return closed

    def _close_case(self, request: CloseCaseRequest) -> CaseClosed:
        if request.event is not None:
            self.publisher.publish(request.event)
        closed = CaseClosed()
        if request.message is not None:
            try:
                closed.deliveries = self.notify(request.message).deliveries
            except NotifierConfigError as err:
                closed.message_error = str(err)
        for write_back in request.write_backs:
            try:
                done = WriteBackDone(action=write_back.action, result=self.write_back(write_back))
            except OPERATOR_ERRORS as err:
                done = WriteBackDone(action=write_back.action, error=str(err))
            closed.write_backs.append(done)
        lines = [
            TimelineEntry(seq=request.next_seq + n, at=request.at, kind=kind, detail=detail)
            for n, (kind, detail) in enumerate(closing_lines(request.message, closed))
        ]
        entries = [*request.record.entries, *lines]
        self.record(request.record.model_copy(update={"entries": entries}))
        return closed

    @activity.defn
    def plan_retries(self, request: PlanRequest) -> RetryPlan:
        """A smart-timed case's remaining retry times: the best-rated slots of the model the
        case is pinned to (the newest for its first plan), or the policy's fixed schedule
        while there is no model, too little history or an unreadable model file (the plan's
        reason says which; the case never fails for it). The customer's payment history
        comes from the store here, so the workflow carries none. Reads only: safe to retry."""
        policy = find_policy(self.policies, request.policy_name, request.policy_version)
        paid = self.store.payment_history(request.customer_id, except_invoice=request.invoice_id)
        facts = request.model_copy(update={"paid_history": paid})
        try:
            model = self._retry_model(request.model_version)
        except ModelFileError as err:
            log.warning("planning with the fixed schedule: %s", err)
            plan = retry_planner.plan_retries(None, facts, policy)
            if plan.offsets:  # the fixed schedule (a never-retry decline keeps its reason)
                exploring = "".join(plan.reason.partition(";")[1:])
                plan = plan.model_copy(update={"reason": f"fixed schedule: {err}{exploring}"})
            return plan
        return retry_planner.plan_retries(model, facts, policy)

    @activity.defn
    def plan_messages(self, request: MessagePlanRequest) -> MessagePlan:
        """How a case under learned message timing sends its reminders: its customer's
        segment's advice in the message model the case is pinned to (the newest when it
        opens), or the policy as written while there is no model or an unreadable one (the
        plan's reason says which; the case never fails for it). Reads only: safe to retry."""
        customer = self.store.get_customer(request.customer_id)
        country = customer.country if customer else None
        try:
            model = self._message_model(request.model_version)
        except ModelFileError as err:
            log.warning("messages as written: %s", err)
            return MessagePlan(reason=f"as written: {err}")
        return message_timing.plan_messages(model, country)

    def _message_model(self, pinned: int | None) -> MessageModel | None:
        if self.retry_models_dir is None:
            return None
        if pinned is not None:
            return message_model_version(self.retry_models_dir, pinned)
        return newest_message_model(self.retry_models_dir)

    def warm_up(self) -> None:
        """Load the newest retry model now rather than in the first case's plan: reading one
        imports scikit-learn, which takes seconds of the plan activity's timeout."""
        try:
            self._retry_model(None)
        except ModelFileError as err:
            log.warning("no retry model loaded: %s", err)

    def _retry_model(self, pinned: int | None) -> RetryScorer | None:
        if self.retry_models_dir is None:
            return None
        if pinned is not None:
            return model_version(self.retry_models_dir, pinned, self.retry_models.read)
        return newest_model(self.retry_models_dir, self.retry_models.read)

    @activity.defn
    @metrics.counts_charges
    def charge(self, request: ChargeRequest) -> ChargeResult:
        """Charge once per attempt: the processor dedupes on the attempt's idempotency key.
        An invoice the biller already settled is not charged (`settled` says why)."""
        if request.record is not None:
            self.store.record_case(request.record)
        settled = self._settlement(request.invoice_id, request.failed_at, request.amount)
        if settled is not None:
            return ChargeResult(approved=False, settled=settled, message="invoice settled")
        if request.payment_method is None:
            customer = self.store.get_customer(request.customer_id)
            if customer is not None and customer.payment_method:
                request = request.model_copy(update={"payment_method": customer.payment_method})
        held_until = self._network_hold(request)
        if held_until is not None:
            message = f"not charged: the card's network cap ({request.network_rules.max_attempts} "
            message += f"in {request.network_rules.window.days} days) is reached across cases"
            return ChargeResult(approved=False, held_until=held_until, message=message)
        if request.plan_facts is not None:
            # Stored with the attempt as the planner would see it: what a model learns from.
            paid = self.store.payment_history(
                request.customer_id, except_invoice=request.invoice_id
            )
            facts = request.plan_facts.model_copy(update={"paid_history": paid})
            request = request.model_copy(update={"plan_facts": facts})
        result = self.processor.charge(request)
        if result.payment_method is None:
            result = result.model_copy(update={"payment_method": request.payment_method})
        self.store.record_attempt(request, result)
        if request.replan is not None and not result.approved:
            return result.model_copy(update={"retry_plan": self._replan(request, result)})
        return result

    def _replan(self, request: ChargeRequest, result: ChargeResult) -> RetryPlan | None:
        """After a soft decline, the plan for the retries still to come (`plan_retries` from
        the facts the decline leaves); None after any other answer, which keeps the plan."""
        sent = request.replan
        policy = find_policy(self.policies, sent.policy_name, sent.policy_version)
        decline_class = policy.declines.classify(result)
        if decline_class is not DeclineClass.RETRY_LATER:
            return None
        return self.plan_retries(replan_facts(sent, request.scheduled, result, decline_class))

    def _network_hold(self, request: ChargeRequest) -> datetime | None:
        """When the card's network next allows a charge, if its cap is reached counting every
        case's charges of the card (a customer's cases share a card); None: charge now. An
        attempt this activity already made (a retry of it) is never held back."""
        rules = request.network_rules
        if rules is None or rules.max_attempts is None or request.payment_method is None:
            return None
        if self.store.attempt_recorded(request.idempotency_key):
            return None
        now = utcnow()
        charged = self.store.charge_times_on_card(request.payment_method, now - rules.window)
        allows_at = rules.allows_at(charged)
        return allows_at if allows_at is not None and allows_at > now else None

    @activity.defn
    def write_back(self, request: WriteBackRequest) -> WriteBackResult:
        """Tell the biller how the case ended; the biller dedupes on the request's key."""
        return self.biller.write_back(request)

    @activity.defn
    def add_late_fee(self, request: LateFeeRequest) -> LateFeeResult:
        """Add a case's late fee to the customer's next invoice; the biller dedupes on the
        case's key (``dunning:<case>:late-fee``), so a retry never adds a second fee."""
        return self.biller.add_late_fee(request)

    @activity.defn
    @metrics.counts_messages
    def notify(self, request: NotifyRequest) -> NotifyResult:
        """Send one step, at most once per (case, step, channel).

        Suppressed contacts (STOP, unsubscribed, bounced, invalid) are skipped; when none of
        the step's channels reaches the customer, the other channels they can receive are
        tried. A reminder yields to the weekly cap on messages per customer, across all
        their cases; a final notice or an outcome message never does. Nothing goes out for
        an invoice the biller already settled (`settled` says why)."""
        if request.record is not None:
            self.store.record_case(request.record)
        if request.failed_at is not None:
            settled = self._settlement(request.invoice_id, request.failed_at, request.amount_due)
            if settled is not None:
                return NotifyResult(deliveries=[], settled=settled)
        customer = self.store.get_customer(request.customer_id)
        at = request.at or utcnow()
        # The customer's conversation keeps its own messages within the budget.
        capped = None
        if not request.conversation:
            capped = self.capped(request.customer_id, request.tone, at, request.channels)
        if capped is not None:
            return capped
        deliveries: list[Delivery] = []
        try:
            self.deliver_each(
                request.channels, lambda c: self._deliver(request, customer, c), deliveries
            )
        except InvoiceSettledMeanwhile as settled:
            return NotifyResult(deliveries=deliveries, settled=settled.settlement)
        return NotifyResult(deliveries=deliveries)

    def capped(
        self, customer_id: str, tone: Tone | None, at: datetime, channels: list[Channel]
    ) -> NotifyResult | None:
        """Every channel skipped when a message of `tone` gives way to the weekly cap on
        messages per customer (across all their cases and notices, up to `at`); else None."""

        def sent() -> int:
            capped = [c.value for c in CAPPED_CHANNELS]
            return self.store.messages_to_customer_since(customer_id, at - CAP_WINDOW, capped)

        if not gives_way_to_cap(tone, sent, self.messages_per_week):
            return None
        detail = f"frequency cap: {self.messages_per_week} messages in 7 days"
        return NotifyResult(
            deliveries=[
                Delivery(channel=c, status=DeliveryStatus.SKIPPED, detail=detail) for c in channels
            ]
        )

    @staticmethod
    def deliver_each(
        channels: list[Channel],
        deliver: Callable[[Channel], Delivery],
        deliveries: list[Delivery],
    ) -> None:
        """Deliver on each of `channels`; when none reaches the customer, on the other
        channels they can receive, in order, until one does. Appends to `deliveries` as it
        goes, so what went out before an exception is still known."""
        deliveries += [deliver(c) for c in channels]
        sent = {d.channel for d in deliveries if d.status is DeliveryStatus.SENT}
        if needs_fallback(channels, sent):
            for channel in fallback_channels(channels):
                delivery = deliver(channel)
                deliveries.append(delivery)
                if delivery.status is DeliveryStatus.SENT:
                    break

    @activity.defn
    def publish_event(self, event: CaseEvent) -> str:
        """Store a case event for the product once and try one signed delivery; its status
        after (a failed delivery is retried later by the worker's loop, never here)."""
        return self.publisher.publish(event).value

    @activity.defn
    @metrics.counts_cases
    def record(self, record: CaseRecord | CaseUpdate) -> None:
        """Keep the case row current and append its new audit lines; a finished case's open
        call tasks are cancelled, so nobody calls a customer who has paid."""
        self.store.record_case(record)
        if record.closed_at is not None:
            self.store.cancel_call_tasks(record.case_id)

    @activity.defn
    def create_call_task(self, request: CallTaskRequest) -> CallTaskCreated:
        """Store the task for a case's call step, once per (case, step), with the best time
        to call: late morning or early evening in the customer's zones, inside calling hours
        and Regulation F's 7 calls in 7 days (counted across all their cases)."""
        customer = self.store.get_customer(request.customer_id)
        zones = contact_zones(customer.time_zone, customer.phone) if customer else []
        since = request.at - CALL_WINDOW
        called = self.store.calls_to_customer_since(request.customer_id, since)
        call_after = next_call_at(request.at, called, zones, request.contact_hours)
        task = self.store.create_call_task(
            request.case_id, request.customer_id, request.step, request.max_attempts, call_after
        )
        return CallTaskCreated(task_id=task.id, call_after=task.call_after)

    def _settlement(
        self, invoice_id: str, failed_at: datetime | None, amount_due: int
    ) -> InvoiceSettled | None:
        """Whether the invoice is settled: by an event the receiver stored (which may have
        raced the case's start), else by the biller's own word."""
        if failed_at is not None:
            settled = self.store.invoice_settlement(invoice_id, failed_at, amount_due)
            if settled is not None:
                return settled
        return self.biller.settlement(invoice_id)

    def _link(self, request: NotifyRequest) -> str:
        """The case's recovery page; for a message naming several open invoices, the
        customer's account page, where one payment settles them all."""
        if len(request.open_invoices) > 1:
            return self.self_service.account_link_for(request.customer_id, utcnow())
        return self.self_service.link_for(request.case_id, utcnow())

    def _deliver(
        self, request: NotifyRequest, customer: CustomerProfile | None, channel: Channel
    ) -> Delivery:
        def variables() -> dict[str, object]:
            values = message_variables(
                name=customer.name,
                invoice_id=request.invoice_id,
                amount=request.amount_due,
                amount_paid=request.amount_paid,
                currency=request.currency,
                deadline=request.deadline,
                link=self._link(request),
                unsubscribe=self.self_service.unsubscribe_link_for(request.case_id, utcnow()),
                case_id=request.case_id,
                locale=customer.locale,
                time_zone=customer.time_zone,
                installments=request.installments,
                promised_for=request.promised_for,
                open_invoices=request.open_invoices,
                late_fee=request.late_fee,
            )
            language = self.templates.language_for(customer.locale)
            values["invoices"] = self.templates.invoice_list(language, values["invoices"])
            return values

        def still_due(row: Message) -> None:
            # Asked again once the row exists: a payment stored before this point stops the
            # message, and one stored after it arrived after the message was decided.
            if request.failed_at is not None:
                settled = self.store.invoice_settlement(
                    request.invoice_id, request.failed_at, request.amount_due
                )
                if settled is not None:
                    self.store.mark_message(row.id, MessageStatus.WITHHELD)
                    raise InvoiceSettledMeanwhile(settled)

        outgoing = Outgoing(
            case_id=request.case_id,
            customer_id=request.customer_id,
            step=request.step,
            template=request.template,
            at=request.at,
            hour_propensity=request.hour_propensity,
            channel_propensity=request.channel_propensity,
        )
        return self.deliver_message(outgoing, customer, channel, variables, still_due)

    def deliver_message(
        self,
        outgoing: Outgoing,
        customer: CustomerProfile | None,
        channel: Channel,
        variables: Callable[[], dict[str, object]],
        before_send: Callable[[Message], None] | None = None,
    ) -> Delivery:
        """Send one message on one channel, at most once per (case, step, channel): a case's
        step or a pre-dunning notice (its notice id stands for the case). Suppressed contacts
        are skipped; `variables` are asked for only when the message is rendered, and
        `before_send` may still withhold it (by raising) once its row is claimed."""
        recipient = _recipient(customer, channel)
        if recipient is None:
            return Delivery(channel=channel, status=DeliveryStatus.SKIPPED, detail="no contact")
        earlier = self.store.message(outgoing.case_id, outgoing.step, channel.value)
        if earlier is not None and earlier.status in SETTLED:
            return Delivery(channel=channel, status=SETTLED[earlier.status], detail="recorded")
        if earlier is not None and earlier.status == MessageStatus.PENDING:
            # An earlier try handed it to the provider and died before hearing back: it may
            # have gone out. At most once: it is not sent again.
            self.store.mark_message(earlier.id, MessageStatus.UNCONFIRMED)
            return Delivery(
                channel=channel, status=DeliveryStatus.SENT, detail=MessageStatus.UNCONFIRMED
            )
        suppression = self.store.suppression(CASE_SCOPE, outgoing.case_id) or (
            self.store.suppression(channel.value, recipient)
        )
        if suppression is not None:
            detail = f"suppressed: {suppression.reason} ({suppression.source})"
            return Delivery(channel=channel, status=DeliveryStatus.SKIPPED, detail=detail)
        language = self.templates.language_for(customer.locale)
        values = variables()
        rendered = self.templates.render(language, outgoing.template, channel, values)
        # The row is written before the provider call: a retry finds it and never sends twice.
        row = self.store.claim_message(
            Message(
                case_id=outgoing.case_id,
                customer_id=outgoing.customer_id,
                step=outgoing.step,
                channel=channel.value,
                template=outgoing.template,
                recipient=recipient,
                subject=rendered.subject,
                body=rendered.text,
                step_at=outgoing.at or utcnow(),
                hour_propensity=outgoing.hour_propensity,
                channel_propensity=outgoing.channel_propensity,
            )
        )
        if row.status in SETTLED:
            return Delivery(channel=channel, status=SETTLED[row.status], detail="recorded")
        if before_send is not None:
            before_send(row)
        if row.status == MessageStatus.REFUSED:
            # Taken again after a refusal: pending until the provider answers, so a try that
            # dies mid-call leaves it unconfirmed, never sent a second time.
            self.store.mark_message(row.id, MessageStatus.PENDING)
        key = f"{outgoing.case_id}:{outgoing.step}:{channel.value}"
        message = OutboundMessage(
            key=key,
            channel=channel,
            recipient=recipient,
            subject=row.subject,
            body=row.body,
            html=rendered.html,
            case_id=outgoing.case_id,
            step=outgoing.step,
            template=outgoing.template,
            variables={k: str(v) for k, v in values.items()},
        )
        try:
            provider_id = self.notifiers[channel].send(message)
        except (NotifierUnavailable, NotifierConfigError):
            # The provider said no: a retry may send.
            self.store.mark_message(row.id, MessageStatus.REFUSED)
            raise
        except UndeliverableError as err:
            # This contact cannot take messages on this channel: never try it again.
            self.store.mark_message(row.id, MessageStatus.FAILED)
            self.store.suppress(channel.value, recipient, err.reason, source="provider")
            detail = f"{scrubbed(str(err), recipient)} ({err.reason})"
            return Delivery(channel=channel, status=DeliveryStatus.FAILED, detail=detail)
        self.store.mark_message(row.id, MessageStatus.SENT, provider_id)
        return Delivery(channel=channel, status=DeliveryStatus.SENT, detail=provider_id)


@dataclass(frozen=True)
class Outgoing:
    """What keys and files one message in the outbox: (case, step, channel) is sent once.
    A pre-dunning notice's `case_id` is its notice id (card-..., renewal-...)."""

    case_id: str
    customer_id: str
    step: str
    template: str
    at: datetime | None = None
    """The sender's clock (the case's), which the weekly cap counts by; None: now."""
    hour_propensity: float | None = None
    channel_propensity: float | None = None


# Message rows: written PENDING before the provider call, settled after it; a row in one of
# these is not sent again, and answers as the delivery it recorded.
SETTLED = {
    MessageStatus.SENT: DeliveryStatus.SENT,
    MessageStatus.FAILED: DeliveryStatus.FAILED,
    MessageStatus.UNCONFIRMED: DeliveryStatus.SENT,
    MessageStatus.WITHHELD: DeliveryStatus.SKIPPED,
}


def _recipient(customer: CustomerProfile | None, channel: Channel) -> str | None:
    if customer is None:
        return None
    match channel:
        case Channel.EMAIL:
            return customer.email
        case Channel.SMS:
            return customer.phone
        case Channel.IN_APP:
            return customer.customer_id
