"""`dunning`: the commands engineers, operators and support type.

A user's mistake (unknown case, finished case, malformed argument, unreachable server) gets
one clear line on stderr and a non-zero exit, never a traceback. Exit codes:

    0    done
    1    refused or impossible: unknown or finished case, a refusal by the case, a bad value,
         bad settings or policy files, an event that could not be carried out
    2    bad arguments (one line; `dunning <command> --help` shows the usage)
    3    `start`: the invoice already has a case
    4    the store cannot be used: DATABASE_URL unparsable, unreachable or locked
    5    Temporal cannot be reached or refused the request
    130  interrupted (Ctrl-C)
    141  stdout was closed early (`dunning list | head -1`), as for SIGPIPE

A case is named by its case id, which is its invoice id; the workflow id is derived from it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import NoReturn

from alembic.util.exc import CommandError
from pydantic import EmailStr, TypeAdapter, ValidationError
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.notify.templates import TemplateConfigError, Templates
from activities.store import CaseStore, Message, WebhookClaim, WebhookEvent, WebhookEventStatus
from config.errors import explain
from config.policies import PolicyError, load_policies, load_segments
from config.settings import CONFIG_DIR, Settings
from starter import BillingEvent, case_run_status, run_demo, start_case, workflow_id_for
from workflows.dunning import DunningWorkflow
from workflows.models import (
    ID_PATTERN,
    CancelRequest,
    CaseStatus,
    CaseView,
    DisputeOpened,
    DisputeResolved,
    PauseRequest,
    PaymentMethodUpdated,
    PaymentReceived,
    ResumeRequest,
    RetryRequest,
)
from workflows.money import format_money


class UserError(Exception):
    """A mistake the user can fix, or an action the case refused: one line, exit 1."""

    exit_code = 1


class StoreUnavailable(UserError):
    """The store cannot be opened or used: exit 4."""

    exit_code = 4


class TemporalUnreachable(UserError):
    """Temporal cannot be reached: exit 5."""

    exit_code = 5


EXIT_INTERRUPTED = 130
EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool killed by it


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `dunning` console script."""
    code = _run(sys.argv[1:] if argv is None else argv)
    # The Temporal client's runtime can crash at interpreter exit (sdk-python#300); everything
    # is done and flushed here, so leave without running interpreter teardown.
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = code or EXIT_CLOSED_PIPE
    sys.stderr.flush()
    os._exit(code)


def _run(argv: list[str]) -> int:
    """Run one command; every error the user can act on becomes one line and an exit code."""
    parser = _parser()
    # These commands parse their own options (argparse cannot hand them on unparsed).
    for prefix in (("simulate",), ("model", "train")):
        if tuple(argv[: len(prefix)]) == prefix:
            argv = [*prefix, "--", *argv[len(prefix) :]]
            break
    args = parser.parse_args(argv)  # bad arguments: one line, exit 2 (`_Parser.error`)
    if getattr(args, "rest", None) and args.rest[0] == "--":
        args.rest = args.rest[1:]
    try:
        settings = Settings()
        if args.opens_store:
            _store(settings)  # name the store's trouble before anything else starts
        code = args.run(args, settings)
        if asyncio.iscoroutine(code):
            code = asyncio.run(code)
        return code or 0
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader has gone (`dunning list | head -1`): stop quietly
        return EXIT_CLOSED_PIPE
    except ValidationError as err:
        return _fail(f"invalid settings: {explain(err)}")
    except UserError as err:
        return _fail(str(err), err.exit_code)
    except SQLAlchemyError as err:
        return _fail(_store_trouble(err), StoreUnavailable.exit_code)
    except RPCError as err:
        return _fail(f"Temporal refused: {err.message}", TemporalUnreachable.exit_code)
    except RuntimeError as err:
        if not str(err).startswith("Failed client connect"):  # the SDK's words for it
            raise
        return _fail(_temporal_trouble(settings, err), TemporalUnreachable.exit_code)
    except (PolicyError, TemplateConfigError, ValueError, OSError) as err:
        return _fail(str(err))


def _fail(message: str, code: int = 1) -> int:
    print(f"dunning: {_one_line(message)}", file=sys.stderr)
    return code


# Commands ----------------------------------------------------------------------------------


def cmd_worker(args: argparse.Namespace, settings: Settings) -> None:
    from worker import main as run_worker

    if args.demo:
        settings = settings.in_demo_mode()
    settings.check_secrets(serving=args.serve)  # SecretsProblem: one line, exit 1
    run_worker(settings, demo=args.demo, serve=args.serve)


async def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from webhooks.app import connect_lazily, serve

    settings.check_secrets(serving=True)  # SecretsProblem: one line, exit 1
    await serve(settings, connect_lazily(settings), _store(settings))
    return 0


async def cmd_start(args: argparse.Namespace, settings: Settings) -> int:
    if args.event is not None:
        raw = sys.stdin.read() if args.event == "-" else _read(args.event)
        event = _parse(BillingEvent, raw)
    else:
        missing = [
            f"--{n}" for n in ("invoice", "customer", "amount", "currency") if not getattr(args, n)
        ]
        if missing:
            raise UserError(f"give an event file (or -) or the flags {', '.join(missing)}")
        event = _validate(
            BillingEvent,
            {
                "invoice_id": args.invoice,
                "customer": {
                    "customer_id": args.customer,
                    "name": args.name,
                    "email": args.email,
                    "phone": args.phone,
                    "locale": args.locale,
                    "time_zone": args.time_zone,
                    "payment_method": args.payment_method,
                },
                "amount_due": args.amount,
                "currency": args.currency,
                "decline_code": args.decline_code,
                "policy": args.policy,
                "policy_version": args.policy_version,
            },
        )
    store = _store(settings)
    result = await start_case(await _client(settings), settings, store, event)
    print(result.message)
    return 0 if result.started else 3


async def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    await run_demo(await _client(settings), settings, _store(settings))
    return 0


def _update_command(update: Callable, build: Callable[[argparse.Namespace], object], done: str):
    """A support command: an update the case answers with its status or refuses (exit 1)."""

    async def command(args: argparse.Namespace, settings: Settings) -> int:
        request = build(args)
        handle = await _open_case(settings, args.case)
        view = await _update(handle, update, request)
        print(f"{done} {handle.id}: {view.details}")
        return 0

    return command


cmd_pause = _update_command(
    DunningWorkflow.pause_case,
    lambda a: _validate(
        PauseRequest,
        {"reason": a.reason, "actor": a.actor, "until": _until(a.until) if a.until else None},
    ),
    "paused",
)
cmd_resume = _update_command(
    DunningWorkflow.resume_case, lambda a: ResumeRequest(actor=a.actor), "resumed"
)
cmd_payment_received = _update_command(
    DunningWorkflow.record_payment,
    lambda a: _validate(
        PaymentReceived, {"amount": a.amount, "reference": a.reference, "actor": a.actor}
    ),
    "recorded the payment on",
)
cmd_method_updated = _update_command(
    DunningWorkflow.record_payment_method,
    lambda a: _validate(
        PaymentMethodUpdated, {"payment_method": a.payment_method, "actor": a.actor}
    ),
    "recorded the new payment method on",
)
cmd_dispute_opened = _update_command(
    DunningWorkflow.open_dispute,
    lambda a: _validate(DisputeOpened, {"reason": a.reason, "actor": a.actor}),
    "opened a dispute on",
)
cmd_dispute_resolved = _update_command(
    DunningWorkflow.resolve_dispute,
    lambda a: DisputeResolved(won=a.outcome == "won", actor=a.actor),
    "resolved the dispute on",
)
cmd_cancel = _update_command(
    DunningWorkflow.cancel_case,
    lambda a: _validate(CancelRequest, {"reason": a.reason, "actor": a.actor}),
    "cancelled",
)
cmd_retry = _update_command(
    DunningWorkflow.retry_case, lambda a: RetryRequest(actor=a.actor), "retrying"
)


async def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    handle, status = await _case(settings, args.case)
    if status != WorkflowExecutionStatus.RUNNING:
        try:
            result = await handle.result()
        except WorkflowFailureError as err:
            ending = status.name.lower()
            raise UserError(f"case {handle.id} ended without an outcome ({ending})") from err
        if args.json:
            print(result.model_dump_json(indent=2))
        else:
            print(f"{handle.id}  {result.outcome}: {result.reason}")
            _print_stored_messages(_stored_messages(settings, result.case_id))
            _print_timeline(result.timeline)
        return 0
    view = await handle.query(DunningWorkflow.status)
    if args.json:
        print(view.model_dump_json(indent=2))
    else:
        _print_view(handle.id, view, _stored_messages(settings, view.case_id))
    return 0


def cmd_opt_out(args: argparse.Namespace, settings: Settings) -> int:
    channel, contact = _contact(args.contact, args.channel)
    source = f"support:{args.actor}"
    _store(settings).suppress(channel, contact, OPTED_OUT, source)
    print(f"opted out {contact}: no dunning {_CHANNEL_NAMES[channel]} to it ({source})")
    return 0


def cmd_opt_in(args: argparse.Namespace, settings: Settings) -> int:
    channel, contact = _contact(args.contact, args.channel)
    store = _store(settings)
    earlier = store.suppression(channel, contact)
    lifted = earlier is not None and store.lift_suppression(channel, contact)
    if not lifted:
        print(f"{contact} was not opted out of {_CHANNEL_NAMES[channel]}: nothing to lift")
        return 0
    print(
        f"opted in {contact}: dunning {_CHANNEL_NAMES[channel]} allowed again "
        f"(lifted {earlier.reason} from {earlier.source}, by support:{args.actor})"
    )
    return 0


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from analytics.cli import run_report

    return run_report(args, settings)


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from simulation.cli import main as simulate

    return simulate(args.rest)


def cmd_model_train(args: argparse.Namespace, settings: Settings) -> int:
    from activities.retry_training import main as train

    return train(args.rest)


def cmd_policies_check(args: argparse.Namespace, settings: Settings) -> int:
    """Load every policy, the decline table, the segments and the templates as a worker would."""
    policies = load_policies(settings.policies_dir, settings.declines_file)
    rules = load_segments(settings.segments_file, policies)
    templates = Templates(CONFIG_DIR / "templates")
    for policy in sorted(policies, key=lambda p: (p.name, p.version)):
        retries = ", ".join(_days(r) for r in policy.retries) or "none"
        print(
            f"ok  {policy.label}: retries at {retries}; "
            f"{len(policy.reminders)} reminders; collections at {_days(policy.collections_after)}"
        )
    for segment in rules.segments:
        print(f"ok  segment {segment.name} → {', '.join(segment.policies)}")
    print(f"ok  templates: {', '.join(sorted(templates.languages))}")
    return 0


def _days(offset) -> str:
    days = offset.total_seconds() / 86400
    return f"day {days:g}" if days >= 1 else f"{offset.total_seconds():g}s"


async def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    clauses = ["WorkflowType = 'DunningWorkflow'"]
    for attribute, value in (
        ("DunningStatus", args.status),
        ("CustomerId", args.customer),
        ("DunningPolicy", args.policy),
    ):
        if value is not None:
            clauses.append(f"{attribute} = '{value}'")
    query = " AND ".join(clauses)
    client = await _client(settings)
    rows = []
    async for execution in client.list_workflows(query, limit=args.limit):
        attributes = {key.name: value for key, value in execution.typed_search_attributes}
        rows.append(
            [
                # The case id the other commands take (the workflow id less its prefix).
                attributes.get("InvoiceId") or execution.id.removeprefix("dunning-"),
                attributes.get("CustomerId", ""),
                attributes.get("DunningStatus", ""),
                format_money(attributes.get("AmountDue", 0), attributes.get("Currency", "USD")),
                str(attributes.get("RetryCount", 0)),
                _when(attributes.get("NextActionAt")),
            ]
        )
    if args.json:
        keys = ["case", "customer", "status", "amount_due", "charges", "next_action_at"]
        print(json.dumps([dict(zip(keys, row, strict=True)) for row in rows], indent=2))
        return 0
    if not rows:
        print("no cases match")
        return 0
    _print_table(["CASE", "CUSTOMER", "STATUS", "DUE", "CHARGES", "NEXT ACTION"], rows)
    return 0


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    """Migrate the store's schema to the newest revision, as every worker and receiver start
    does, and say which revision it is at."""
    revision = _store(settings).upgrade()  # `_store` migrated it: this reads the revision
    print(f"store schema at revision {revision}")
    return 0


def cmd_events_list(args: argparse.Namespace, settings: Settings) -> int:
    events = _store(settings).find_webhook_events(
        statuses=args.status, invoice_id=args.invoice, limit=args.limit
    )
    if not events:
        print("no stored events match")
        return 0
    rows = [
        [
            e.provider,
            e.event_id,
            e.type,
            e.status,
            e.invoice_id or "-",
            str(e.deliveries),
            _when(e.received_at),
            _one_line(e.detail)[:100] or "-",
        ]
        for e in events
    ]
    header = ["PROVIDER", "EVENT", "TYPE", "STATUS", "INVOICE", "DELIVERIES", "RECEIVED", "DETAIL"]
    _print_table(header, rows)
    return 0


async def cmd_events_retry(args: argparse.Namespace, settings: Settings) -> int:
    """Carry out stored billing events no delivery finished, now, whatever their age and
    however often they were tried; say what became of each."""
    from webhooks.cases import CaseDesk
    from webhooks.sweeper import PROVIDERS, retry_all

    store = _store(settings)
    client = await _client(settings)  # unreachable: exit 5 before any event is claimed
    code = 0
    if args.all:
        events = store.webhook_events_to_retry(PROVIDERS, received_before=datetime.now(UTC))
        if not events:
            print("no pending or failed billing events")
    else:
        named = store.find_webhook_events(event_ids=args.event_ids, providers=PROVIDERS)
        for event_id in sorted(set(args.event_ids) - {e.event_id for e in named}):
            code = _fail(f"{event_id}: no stored billing event has this id")
        events = []
        for event in reversed(named):  # oldest first, as they came in
            if event.status in (WebhookEventStatus.PENDING, WebhookEventStatus.FAILED):
                events.append(event)
            else:
                code = _fail(f"{_event_name(event)}: already {event.status}, not retried")

    async def given_client() -> Client:
        return client

    results = await retry_all(CaseDesk(settings, given_client, store), events)
    for event, handled in results:
        if handled.claim is WebhookClaim.BUSY:
            print(f"{_event_name(event)}: being carried out by a delivery right now")
        else:
            print(f"{_event_name(event)}: {handled.status}, {_one_line(handled.detail)}")
        if handled.status not in (WebhookEventStatus.PROCESSED, WebhookEventStatus.IGNORED):
            code = code or 1
    for event in events[len(results) :]:
        print(f"{_event_name(event)}: not tried, Temporal became unreachable")
    if results and results[-1][1].status == WebhookEventStatus.PENDING:
        return TemporalUnreachable.exit_code
    return code


def _event_name(event: WebhookEvent) -> str:
    return f"{event.provider} {event.event_id} ({event.type})"


# Helpers -----------------------------------------------------------------------------------

OPTED_OUT = "opted_out"
_CHANNEL_NAMES = {"email": "email", "sms": "SMS"}
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_EMAIL = TypeAdapter(EmailStr)


def _contact(text: str, channel: str | None) -> tuple[str, str]:
    """The channel and the contact as the suppression table keys it: an email address, or a
    phone number in E.164 (spaces, dashes, dots and brackets dropped)."""
    text = text.strip()
    channel = channel or ("email" if "@" in text else "sms")
    if channel == "email":
        try:
            return channel, _EMAIL.validate_python(text)
        except ValidationError as err:
            reason = err.errors()[0]["msg"].removeprefix("value is not a valid email address: ")
            raise UserError(f"{text!r} is not an email address ({reason})") from err
    number = re.sub(r"[\s().-]", "", text)
    if not _E164.fullmatch(number):
        raise UserError(f"{text!r} is not a phone number in E.164 form, like +14155550100")
    return channel, number


def _store_trouble(err: SQLAlchemyError) -> str:
    """The store's error in one line, never its message (it may quote the statement)."""
    if isinstance(err, ArgumentError):
        return f"DATABASE_URL is unusable ({err}); e.g. sqlite:///.dunning/dunning.db"
    # The driver's own words (connection refused, database is locked) carry no values.
    reason = _one_line(err.orig)[:200] if isinstance(err, OperationalError) else ""
    return f"cannot use the store ({reason or type(err).__name__}); check DATABASE_URL"


def _temporal_trouble(settings: Settings, err: BaseException) -> str:
    address = settings.temporal_address or f"localhost:{settings.dev_server_port}"
    return f"cannot reach Temporal at {address} ({_one_line(err)}); check TEMPORAL_ADDRESS"


def _stored_messages(settings: Settings, case_id: str) -> list[Message] | None:
    """The case's message rows, with what providers reported; None when the store is down."""
    try:
        return _store(settings).messages(case_id)
    except (StoreUnavailable, SQLAlchemyError):
        return None


async def _client(settings: Settings) -> Client:
    """A connected client; `TemporalUnreachable` (exit 5) when there is none to be had."""
    from worker import connect

    try:
        return await connect(settings)
    except RuntimeError as err:
        raise TemporalUnreachable(
            f"{_temporal_trouble(settings, err)} or start `dunning worker`"
        ) from err


def _store(settings: Settings) -> CaseStore:
    """The store, its schema upgraded (under a lock); its trouble ends the command with
    exit 4."""
    try:
        store = CaseStore(settings.database_url)
        store.upgrade()
    except OSError as err:  # SQLite's folder or lock file cannot be made
        raise StoreUnavailable(
            f"cannot use the store ({err.strerror}: {err.filename}); check DATABASE_URL"
        ) from err
    except CommandError as err:  # e.g. a revision newer than this version of dunning knows
        raise StoreUnavailable(
            f"cannot upgrade the store's schema ({err}); a newer dunning may have migrated it"
        ) from err
    return store


async def _case(settings: Settings, case: str) -> tuple[WorkflowHandle, WorkflowExecutionStatus]:
    """A handle on the case (named by its case id, i.e. its invoice id), after checking it
    exists, with its run's status. An argument that looks like a workflow id is still a case
    id: invoice `dunning-in_1` has a case of its own."""
    if not re.fullmatch(ID_PATTERN, case):
        raise UserError(f"{case!r} is not a case or invoice id")
    client = await _client(settings)
    handle = client.get_workflow_handle_for(DunningWorkflow.run, workflow_id_for(case))
    status = await case_run_status(client, handle.id)
    if status is None:
        raise UserError(f"no case for {case} (looked for workflow {handle.id})")
    return handle, status


async def _open_case(settings: Settings, case: str) -> WorkflowHandle:
    """A handle on a case that is still running; a finished case is refused clearly."""
    handle, status = await _case(settings, case)
    if status != WorkflowExecutionStatus.RUNNING:
        try:
            ending = (await handle.result()).outcome
        except WorkflowFailureError:
            ending = status.name.lower()
        raise UserError(f"case {handle.id} is already finished ({ending})")
    return handle


async def _update(handle: WorkflowHandle, update: Callable, request: object) -> CaseView:
    """The case's answer to a support update, or `UserError` saying why it refused."""
    try:
        return await handle.execute_update(update, request)
    except WorkflowUpdateFailedError as err:
        reason = err.cause.message if isinstance(err.cause, ApplicationError) else err.cause
        raise UserError(f"refused: {_one_line(reason or err)}") from err
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        raise UserError(f"case {handle.id} finished meanwhile: nothing done") from err


def _validate(model: type, data: dict):
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise UserError(explain(err)) from err


def _parse(model: type, raw: str):
    try:
        return model.model_validate_json(raw)
    except ValidationError as err:
        raise UserError(explain(err)) from err


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror}") from err


_DURATION = re.compile(r"^(\d+)([mhd])$")


def _until(text: str) -> datetime:
    """`--until` as an ISO time (UTC when no zone is given) or a duration: 30m, 4h, 2d."""
    if match := _DURATION.match(text):
        unit = {"m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return datetime.now(UTC) + timedelta(**{unit: int(match.group(1))})
    try:
        moment = TypeAdapter(datetime).validate_python(text)
    except ValidationError as err:
        raise UserError(f"--until {text!r}: give an ISO time or a duration like 4h or 2d") from err
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "-"


def _one_line(err: object) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _print_view(workflow_id: str, view: CaseView, stored: list[Message] | None = None) -> None:
    due = format_money(view.amount_due, view.currency)
    print(f"{workflow_id}  {view.status}  {due} due  ({view.policy})")
    print(f"customer {view.customer_id}, invoice {view.invoice_id}")
    print(f"next: {view.details}")
    if view.paused_by:
        until = f" until {_when(view.paused_until)}" if view.paused_until else ""
        print(f"paused by {view.paused_by}{until}: {view.pause_reason}")
    if view.dispute_reason:
        print(f"dispute open: {view.dispute_reason}")
    for attempt in view.attempts:
        answer = "approved" if attempt.approved else f"declined {attempt.decline_code}"
        print(f"  charge {attempt.attempt}  {_when(attempt.at)}  {answer}")
    reported = {(row.step, row.channel): row.delivery for row in stored or []}
    for message in view.messages:
        channels = ", ".join(
            f"{d.channel} {d.status}{_reported(reported.get((message.step, d.channel)))}"
            for d in message.deliveries
        )
        print(f"  message {message.step}  {_when(message.at)}  {message.template}: {channels}")
    if stored is None:
        print("  (deliveries unknown: the store is unreachable)")
    _print_timeline(view.timeline)


def _print_stored_messages(stored: list[Message] | None) -> None:
    """A finished case's messages from the store, one line per step, with deliveries."""
    if stored is None:
        print("  (messages unknown: the store is unreachable)")
        return
    steps: dict[str, list[Message]] = {}
    for row in stored:
        steps.setdefault(row.step, []).append(row)
    for step, rows in steps.items():
        at = _when(rows[0].sent_at or rows[0].created_at)
        channels = ", ".join(f"{r.channel} {r.status}{_reported(r.delivery)}" for r in rows)
        print(f"  message {step}  {at}  {rows[0].template}: {channels}")


def _reported(delivery: str | None) -> str:
    """What the provider said later, after the workflow's own view: `` (delivered)``."""
    return f" ({delivery})" if delivery else ""


def _print_timeline(timeline) -> None:
    print("timeline:")
    for entry in timeline:
        detail = f": {entry.detail}" if entry.detail else ""
        print(f"  {_when(entry.at)}  {entry.kind} by {entry.actor}{detail}")


def _id(text: str) -> str:
    if not re.fullmatch(ID_PATTERN, text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid id")
    return text


class _Parser(argparse.ArgumentParser):
    """Argument errors as one line (not the whole usage), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"dunning: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dunning",
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(opens_store=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    actor = os.environ.get("USER") or "support"

    def command(name: str, run: Callable, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run)
        return sub

    def case_command(name: str, run: Callable, help: str) -> argparse.ArgumentParser:
        sub = command(name, run, help)
        sub.add_argument("case", help="the case id, which is the invoice id")
        sub.add_argument("--actor", default=actor, help="who does this (default: $USER)")
        return sub

    sub = command("worker", cmd_worker, "run a worker (and the dev server when none is set)")
    sub.set_defaults(opens_store=True)  # its activities open it once the worker starts
    sub.add_argument("--demo", action="store_true", help="also start the demo cases")
    sub.add_argument(
        "--serve", action="store_true", help="also serve the billing-event receiver (webhooks)"
    )

    command(
        "serve",
        cmd_serve,
        "serve the billing-event receiver: POST /webhooks/stripe, POST /events, GET /healthz",
    )

    sub = command("start", cmd_start, "start a case from a billing-event JSON or from flags")
    sub.add_argument("event", nargs="?", help="billing-event JSON file, or - for stdin")
    sub.add_argument("--invoice", type=_id)
    sub.add_argument("--customer", type=_id)
    sub.add_argument("--amount", type=int, help="amount due in minor units (cents, yen)")
    sub.add_argument("--currency", help="ISO-4217 code, e.g. USD")
    sub.add_argument("--decline-code")
    sub.add_argument("--payment-method", help="payment method token, e.g. pm_card_visa")
    sub.add_argument("--name")
    sub.add_argument("--email")
    sub.add_argument("--phone", help="E.164, e.g. +14155550100")
    sub.add_argument("--locale", default="en")
    sub.add_argument("--time-zone", help="IANA zone, e.g. Asia/Tokyo (messages keep its hours)")
    sub.add_argument("--policy")
    sub.add_argument("--policy-version", type=int)

    command("demo", cmd_demo, "start demo cases that take different paths")

    sub = case_command("pause", cmd_pause, "pause a case (no charges or messages)")
    sub.add_argument("--reason", required=True)
    sub.add_argument("--until", help="resume by itself at an ISO time or after 30m, 4h, 2d")
    case_command("resume", cmd_resume, "resume a paused case")

    sub = case_command("payment-received", cmd_payment_received, "record a payment made elsewhere")
    sub.add_argument("--amount", type=int, required=True, help="in minor units")
    sub.add_argument("--reference", default="")
    sub = case_command(
        "method-updated", cmd_method_updated, "the customer has a new payment method"
    )
    sub.add_argument("--payment-method", type=_id)
    sub = case_command("dispute-opened", cmd_dispute_opened, "stop charging during a dispute")
    sub.add_argument("--reason", default="")
    sub = case_command("dispute-resolved", cmd_dispute_resolved, "the dispute is won or lost")
    sub.add_argument("outcome", choices=["won", "lost"])
    sub = case_command("cancel", cmd_cancel, "stop dunning a case for good")
    sub.add_argument("--reason", required=True)
    case_command(
        "retry", cmd_retry, "charge a blocked case again, once its gateway configuration is fixed"
    )

    sub = command("status", cmd_status, "show a case: state, next step, attempts, messages")
    sub.add_argument("case", help="the case id, which is the invoice id")
    sub.add_argument("--json", action="store_true")

    for name, run, help in (
        ("opt-out", cmd_opt_out, "stop dunning messages to an email address or phone number"),
        ("opt-in", cmd_opt_in, "allow dunning messages to an opted-out address or number again"),
    ):
        sub = command(name, run, help)
        sub.add_argument("contact", help="email address, or phone number in E.164 (+14155550100)")
        sub.add_argument(
            "--channel", choices=["email", "sms"], help="default: email for an address, else sms"
        )
        sub.add_argument("--actor", default=actor, help="who does this (default: $USER)")

    from analytics.cli import add_report_arguments

    add_report_arguments(
        command("report", cmd_report, "recovery figures from the store: table, JSON, chart")
    )
    sub = command("simulate", cmd_simulate, "compare policies offline on a world model")
    sub.add_argument("rest", nargs=argparse.REMAINDER, help="see `dunning simulate --help`")
    model = commands.add_parser("model", help="the smart-retry model").add_subparsers(
        dest="model_command", required=True, metavar="COMMAND"
    )
    train = model.add_parser("train", help="fit a retry model on the recorded charge attempts")
    train.add_argument("rest", nargs=argparse.REMAINDER, help="see `dunning model train --help`")
    train.set_defaults(run=cmd_model_train)

    policies = commands.add_parser("policies", help="policy files").add_subparsers(
        dest="policies_command", required=True, metavar="COMMAND"
    )
    check = policies.add_parser(
        "check", help="validate every policy, segment and template file and explain errors"
    )
    check.set_defaults(run=cmd_policies_check)

    events = commands.add_parser("events", help="stored billing events").add_subparsers(
        dest="events_command", required=True, metavar="COMMAND"
    )
    sub = events.add_parser("list", help="stored billing events, newest first")
    sub.set_defaults(run=cmd_events_list)
    sub.add_argument("--status", action="append", choices=[s.value for s in WebhookEventStatus])
    sub.add_argument("--invoice", type=_id)
    sub.add_argument("--limit", type=int, default=50)
    sub = events.add_parser("retry", help="carry out stored pending or failed billing events now")
    sub.set_defaults(run=cmd_events_retry)
    which = sub.add_mutually_exclusive_group(required=True)
    which.add_argument("event_ids", nargs="*", default=[], metavar="EVENT_ID")
    which.add_argument("--all", action="store_true", help="every pending or failed one")

    db = commands.add_parser("db", help="the store's schema").add_subparsers(
        dest="db_command", required=True, metavar="COMMAND"
    )
    sub = db.add_parser(
        "upgrade", help="migrate the store's schema to the newest revision (every start does)"
    )
    sub.set_defaults(run=cmd_db_upgrade)

    sub = command("list", cmd_list, "list cases by status, customer or policy")
    sub.add_argument("--status", choices=[s.value for s in CaseStatus])
    sub.add_argument("--customer", type=_id)
    sub.add_argument("--policy", type=_id)
    sub.add_argument("--limit", type=int, default=50)
    sub.add_argument("--json", action="store_true")
    return parser
