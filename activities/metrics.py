"""Prometheus metrics: dunning's counters, the open cases by status, and the SDK's own.

Counters count where things happen in this process (the activities, the receiver), once per
completed activity; a scrape adds the open cases by status (one grouped count in the store)
and the Temporal SDK's runtime metrics. Label values come from small fixed sets (status,
outcome, channel, currency, decline class, reason): never a case id, customer id or amount.
"""

from __future__ import annotations

import functools
import logging
import socket
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlmodel import select
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from activities.store import Case, CaseStore
from config.settings import Settings
from workflows.models import CaseRecord, CaseUpdate, ChargeResult, NotifyResult
from workflows.policy import DeclineTable, Outcome

log = logging.getLogger("dunning.metrics")

# A `_created` timestamp beside every counter doubles the series and no dashboard reads it.
disable_created_metrics()

COUNTERS = CollectorRegistry()
"""Dunning's counters for this process; every exposition (`registry`) includes them."""

CASES_OPENED = Counter("dunning_cases_opened", "Cases opened.", registry=COUNTERS)
OUTCOMES = Counter(
    "dunning_case_outcomes", "Cases finished, by outcome.", ["outcome"], registry=COUNTERS
)
RECOVERED = Counter(
    "dunning_recovered_minor_units",
    "Amount recovered by finished cases, in the currency's minor units (cents, yen).",
    ["currency"],
    registry=COUNTERS,
)
CHARGES = Counter(
    "dunning_charges",
    "Charge attempts by result: approved, a decline class of the decline table, or "
    "not_charged (the invoice was settled, or the card's network cap holds it back).",
    ["decline_class"],
    registry=COUNTERS,
)
MESSAGES = Counter(
    "dunning_messages",
    "Messages by channel and delivery status (sent, skipped, failed).",
    ["channel", "status"],
    registry=COUNTERS,
)
EVENTS_ACCEPTED = Counter(
    "dunning_events_accepted",
    "Webhooks and billing events the receiver accepted, by endpoint.",
    ["endpoint"],
    registry=COUNTERS,
)
EVENTS_REJECTED = Counter(
    "dunning_events_rejected",
    "Webhooks and billing events the receiver refused, by endpoint and reason.",
    ["endpoint", "reason"],
    registry=COUNTERS,
)

# The receiver's refusals by HTTP status (webhooks/app.py's module docstring lists them).
REJECTION_REASONS = {
    400: "invalid",
    403: "signature",
    408: "timeout",
    409: "busy",
    413: "too_large",
    500: "error",
    503: "unavailable",
}

Activity = TypeVar("Activity", bound=Callable[..., Any])


def counts_charges(charge: Activity) -> Activity:
    """Count the charge activity's results by decline class (put under `@activity.defn`)."""

    @functools.wraps(charge)
    def counted(self: Any, request: Any) -> ChargeResult:
        result = charge(self, request)
        # Policies read the deployment's decline table (config/declines.toml) unless they
        # write their own; the metric uses the deployment's.
        declines = self.policies[0].declines if self.policies else DeclineTable()
        CHARGES.labels(charge_class(result, declines)).inc()
        return result

    return counted  # type: ignore[return-value]


def counts_messages(notify: Activity) -> Activity:
    """Count the notify activity's deliveries by channel and status."""

    @functools.wraps(notify)
    def counted(self: Any, request: Any) -> NotifyResult:
        result = notify(self, request)
        for delivery in result.deliveries:
            MESSAGES.labels(delivery.channel.value, delivery.status.value).inc()
        return result

    return counted  # type: ignore[return-value]


def counts_cases(record: Activity) -> Activity:
    """Count the cases a record activity opens and finishes, and what they recovered."""

    @functools.wraps(record)
    def counted(self: Any, case: CaseRecord | CaseUpdate) -> None:
        record(self, case)
        count_case(case)

    return counted  # type: ignore[return-value]


def charge_class(result: ChargeResult, declines: DeclineTable) -> str:
    """The `decline_class` label of one charge: approved, not_charged or the decline's class."""
    if result.approved:
        return "approved"
    if result.settled is not None or result.held_until is not None:
        return "not_charged"
    return declines.classify(result).value


def count_case(case: CaseRecord | CaseUpdate) -> None:
    """Count what a case's new audit lines say: it opened, or it finished (each is written
    once per case, so a case counts once)."""
    for entry in case.entries:
        if entry.kind == "opened":
            CASES_OPENED.inc()
        elif entry.kind in Outcome.__members__.values():
            OUTCOMES.labels(entry.kind).inc()
            if entry.kind == Outcome.RECOVERED:
                RECOVERED.labels(case.currency.upper()).inc(case.amount_recovered)


def count_event(endpoint: str, status: int) -> None:
    """Count one answer of the receiver to a webhook or billing event by its HTTP status."""
    if status < 400:
        EVENTS_ACCEPTED.labels(endpoint).inc()
    else:
        EVENTS_REJECTED.labels(endpoint, REJECTION_REASONS.get(status, str(status))).inc()


class OpenCases(Collector):
    """`dunning_cases_open{status}`: the store's open cases by status, counted at scrape time
    with one grouped query (a gauge kept in memory would be wrong after a restart)."""

    def __init__(self, store: CaseStore) -> None:
        self.store = store

    def collect(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily("dunning_cases_open", "Open cases by status.", labels=["status"])
        with self.store.session() as session:
            query = select(Case.status, func.count()).where(Case.closed_at.is_(None))
            for status, count in session.exec(query.group_by(Case.status)).all():
                gauge.add_metric([status], count)
        yield gauge


class SdkMetrics(Collector):
    """The Temporal SDK's runtime metrics, read from the address its Prometheus exporter
    binds, so one scrape of `/metrics` holds them beside dunning's."""

    def __init__(self, address: str) -> None:
        self.url = f"http://{address}/metrics"

    def collect(self) -> Iterable[Metric]:
        try:
            with urllib.request.urlopen(self.url, timeout=2) as answer:
                text = answer.read().decode("utf-8")
        except OSError as err:
            log.debug("SDK metrics unavailable at %s: %s", self.url, err)
            return
        yield from text_string_to_metric_families(text)


class _Counters(Collector):
    """This process's counters, shared by every registry `registry` builds."""

    def collect(self) -> Iterable[Metric]:
        return COUNTERS.collect()


def registry(store: CaseStore | None, sdk_address: str | None = None) -> CollectorRegistry:
    """What one `/metrics` exposes: the counters, the process (memory, CPU), the open cases
    of `store` and, given its address, the SDK's metrics."""
    exposed = CollectorRegistry(auto_describe=False)
    exposed.register(_Counters())
    ProcessCollector(registry=exposed)
    if store is not None:
        exposed.register(OpenCases(store))
    if sdk_address is not None:
        exposed.register(SdkMetrics(sdk_address))
    return exposed


@functools.cache
def _runtime(address: str) -> Runtime:
    # One per process and address: the SDK binds the address when the runtime is made.
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))


def sdk_metrics_address(settings: Settings) -> str | None:
    """Where the SDK's Prometheus exporter listens: TEMPORAL_METRICS_ADDRESS, else (when the
    worker serves METRICS_PORT) a free local port picked once; None: no SDK metrics."""
    if settings.temporal_metrics_address is not None:
        return settings.temporal_metrics_address
    if settings.metrics_port is None:
        return None
    return _free_local_address()


@functools.cache
def _free_local_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def runtime(settings: Settings) -> Runtime | None:
    """The SDK runtime that exports its metrics for Prometheus, or None (the SDK's default)
    when no metrics are configured."""
    address = sdk_metrics_address(settings)
    return _runtime(address) if address is not None else None


@asynccontextmanager
async def serving(settings: Settings, store: CaseStore) -> AsyncIterator[None]:
    """Serve the worker's `/metrics` on METRICS_HOST:METRICS_PORT while the block runs;
    nothing when METRICS_PORT is unset."""
    if settings.metrics_port is None:
        yield
        return
    exposed = registry(store, sdk_metrics_address(settings))
    server, thread = start_http_server(
        settings.metrics_port, settings.metrics_host, registry=exposed
    )
    print(f"Metrics: http://{settings.metrics_host}:{settings.metrics_port}/metrics", flush=True)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
