"""`dunning`: the commands engineers, operators and support type.

A user's mistake (unknown case, finished case, malformed argument, unreachable server) gets
one clear line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from pydantic import EmailStr, TypeAdapter, ValidationError
from sqlalchemy.exc import SQLAlchemyError
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
from activities.store import CaseStore, Message
from config.errors import explain
from config.policies import PolicyError, load_policies, load_segments
from config.settings import CONFIG_DIR, Settings
from starter import BillingEvent, run_demo, start_case, workflow_id_for
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
)
from workflows.money import format_money


class UserError(Exception):
    """A mistake the user can fix; printed as one line."""


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `dunning` console script."""
    parser = _parser()
    argv = sys.argv[1:] if argv is None else argv
    # These commands parse their own options (argparse cannot hand them on unparsed).
    for prefix in (("simulate",), ("model", "train")):
        if tuple(argv[: len(prefix)]) == prefix:
            argv = [*prefix, "--", *argv[len(prefix) :]]
            break
    args = parser.parse_args(argv)
    if getattr(args, "rest", None) and args.rest[0] == "--":
        args.rest = args.rest[1:]
    try:
        settings = Settings()
        code = args.run(args, settings)
        if asyncio.iscoroutine(code):
            code = asyncio.run(code)
    except KeyboardInterrupt:
        code = 130
    except ValidationError as err:
        print(f"dunning: invalid settings: {explain(err)}", file=sys.stderr)
        code = 1
    except (UserError, PolicyError, TemplateConfigError, ValueError, OSError) as err:
        print(f"dunning: {_one_line(err)}", file=sys.stderr)
        code = 1
    # The Temporal client's runtime can crash at interpreter exit (sdk-python#300); everything
    # is done and flushed here, so leave without running interpreter teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


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


async def cmd_pause(args: argparse.Namespace, settings: Settings) -> int:
    until = _until(args.until) if args.until else None
    request = _validate(PauseRequest, {"reason": args.reason, "actor": args.actor, "until": until})
    handle = await _open_case(settings, args.case)
    view = await _update(handle, DunningWorkflow.pause_case, request)
    print(f"paused {handle.id}: {view.details}")
    return 0


async def cmd_resume(args: argparse.Namespace, settings: Settings) -> int:
    handle = await _open_case(settings, args.case)
    view = await _update(handle, DunningWorkflow.resume_case, ResumeRequest(actor=args.actor))
    print(f"resumed {handle.id}: {view.details}")
    return 0


def _signal_command(method: Callable, build: Callable[[argparse.Namespace], object], done: str):
    async def command(args: argparse.Namespace, settings: Settings) -> int:
        payload = build(args)
        handle = await _open_case(settings, args.case)
        await handle.signal(method, payload)
        print(f"{done} {handle.id}")
        return 0

    return command


cmd_payment_received = _signal_command(
    DunningWorkflow.payment_received,
    lambda a: _validate(
        PaymentReceived, {"amount": a.amount, "reference": a.reference, "actor": a.actor}
    ),
    "recorded the payment on",
)
cmd_method_updated = _signal_command(
    DunningWorkflow.payment_method_updated,
    lambda a: _validate(
        PaymentMethodUpdated, {"payment_method": a.payment_method, "actor": a.actor}
    ),
    "recorded the new payment method on",
)
cmd_dispute_opened = _signal_command(
    DunningWorkflow.dispute_opened,
    lambda a: _validate(DisputeOpened, {"reason": a.reason, "actor": a.actor}),
    "opened a dispute on",
)
cmd_dispute_resolved = _signal_command(
    DunningWorkflow.dispute_resolved,
    lambda a: DisputeResolved(won=a.outcome == "won", actor=a.actor),
    "resolved the dispute on",
)
cmd_cancel = _signal_command(
    DunningWorkflow.cancel,
    lambda a: _validate(CancelRequest, {"reason": a.reason, "actor": a.actor}),
    "cancelled",
)


async def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    handle = await _case(settings, args.case)
    description = await handle.describe()
    if description.status != WorkflowExecutionStatus.RUNNING:
        try:
            result = await handle.result()
        except WorkflowFailureError as err:
            status = description.status.name.lower()
            raise UserError(f"case {handle.id} ended without an outcome ({status})") from err
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
    with _store_errors(settings):
        _store(settings).suppress(channel, contact, OPTED_OUT, source)
    print(f"opted out {contact}: no dunning {_CHANNEL_NAMES[channel]} to it ({source})")
    return 0


def cmd_opt_in(args: argparse.Namespace, settings: Settings) -> int:
    channel, contact = _contact(args.contact, args.channel)
    with _store_errors(settings):
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
                execution.id,
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


@contextmanager
def _store_errors(settings: Settings) -> Iterator[None]:
    """The store's errors as one line (not its message: it quotes the statement's values)."""
    try:
        yield
    except SQLAlchemyError as err:
        where = settings.database_url.partition("://")[0] or "?"
        raise UserError(
            f"cannot use the store ({where}: {type(err).__name__}); check DATABASE_URL"
        ) from err


def _stored_messages(settings: Settings, case_id: str) -> list[Message] | None:
    """The case's message rows, with what providers reported; None when the store is down."""
    try:
        return _store(settings).messages(case_id)
    except SQLAlchemyError:
        return None


async def _client(settings: Settings) -> Client:
    from worker import connect

    address = settings.temporal_address or f"localhost:{settings.dev_server_port}"
    try:
        return await connect(settings)
    except RuntimeError as err:
        raise UserError(
            f"cannot reach Temporal at {address} ({_one_line(err)}); is `dunning worker` running?"
        ) from err


def _store(settings: Settings) -> CaseStore:
    store = CaseStore(settings.database_url)
    store.create_schema()
    return store


async def _case(settings: Settings, case: str) -> WorkflowHandle:
    """A handle on the case, after checking it exists."""
    if not re.fullmatch(ID_PATTERN, case):
        raise UserError(f"{case!r} is not a case or invoice id")
    client = await _client(settings)
    handle = client.get_workflow_handle_for(DunningWorkflow.run, workflow_id_for(case))
    try:
        await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise UserError(f"no case for {case} (looked for workflow {handle.id})") from err
        raise UserError(f"cannot read case {handle.id}: {err.message}") from err
    return handle


async def _open_case(settings: Settings, case: str) -> WorkflowHandle:
    """A handle on a case that is still running; a finished case is refused clearly."""
    handle = await _case(settings, case)
    description = await handle.describe()
    if description.status != WorkflowExecutionStatus.RUNNING:
        status = _attribute(description, "DunningStatus") or description.status.name.lower()
        raise UserError(f"case {handle.id} is already finished ({status})")
    return handle


async def _update(handle: WorkflowHandle, update: Callable, request: object) -> CaseView:
    try:
        return await handle.execute_update(update, request)
    except WorkflowUpdateFailedError as err:
        reason = err.cause.message if isinstance(err.cause, ApplicationError) else err.cause
        raise UserError(f"refused: {_one_line(reason or err)}") from err


def _attribute(description, name: str) -> object:
    for key, value in description.typed_search_attributes:
        if key.name == name:
            return value
    return None


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


def _one_line(err: BaseException) -> str:
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dunning", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    actor = os.environ.get("USER") or "support"

    def command(name: str, run: Callable, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run)
        return sub

    def case_command(name: str, run: Callable, help: str) -> argparse.ArgumentParser:
        sub = command(name, run, help)
        sub.add_argument("case", help="invoice id or workflow id (dunning-<invoice>)")
        sub.add_argument("--actor", default=actor, help="who does this (default: $USER)")
        return sub

    sub = command("worker", cmd_worker, "run a worker (and the dev server when none is set)")
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

    sub = command("status", cmd_status, "show a case: state, next step, attempts, messages")
    sub.add_argument("case", help="invoice id or workflow id")
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

    sub = command("list", cmd_list, "list cases by status, customer or policy")
    sub.add_argument("--status", choices=[s.value for s in CaseStatus])
    sub.add_argument("--customer", type=_id)
    sub.add_argument("--policy", type=_id)
    sub.add_argument("--limit", type=int, default=50)
    sub.add_argument("--json", action="store_true")
    return parser
