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

import functools
import inspect
import os
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

# Everything heavy (Temporal, SQLAlchemy, pydantic models, the workflows and activities) is
# imported inside the command that needs it: `dunning --help` answers in a fraction of a second.
if TYPE_CHECKING:
    from sqlalchemy.exc import SQLAlchemyError
    from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

    from activities.store import CaseStore, Message, WebhookEvent
    from config.settings import Settings
    from workflows.dunning import DunningWorkflow
    from workflows.models import CaseView


class UserError(Exception):
    """A mistake the user can fix, or an action the case refused: one line, exit 1."""

    exit_code = 1


class StoreUnavailable(UserError):
    """The store cannot be opened or used: exit 4."""

    exit_code = 4


class TemporalUnreachable(UserError):
    """Temporal cannot be reached: exit 5."""

    exit_code = 5


EXIT_BAD_ARGUMENTS = 2
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
    try:
        # Not standalone: Click hands back bad arguments instead of printing a usage box.
        code = typer.main.get_command(app).main(argv, prog_name="dunning", standalone_mode=False)
        return code or 0
    except typer.TyperException as err:  # Click's: bad arguments (exit 2)
        where = err.ctx.command_path if getattr(err, "ctx", None) else "dunning"
        return _bad_arguments(err.format_message(), where, err.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader has gone (`dunning list | head -1`): stop quietly
        return EXIT_CLOSED_PIPE
    except UserError as err:
        return _fail(str(err), err.exit_code)
    except Exception as err:
        return _trouble(err)


def _trouble(err: Exception) -> int:
    """The exit code of an error from the libraries a command used, after its one line.

    Imported here, on the way out: a command that failed this way has loaded them already."""
    from pydantic import ValidationError
    from sqlalchemy.exc import SQLAlchemyError
    from temporalio.service import RPCError

    from activities.notify.templates import TemplateConfigError
    from config.errors import explain
    from config.policies import PolicyError
    from config.settings import Settings

    if isinstance(err, ValidationError):
        return _fail(f"invalid settings: {explain(err)}")
    if isinstance(err, SQLAlchemyError):
        return _fail(_store_trouble(err), StoreUnavailable.exit_code)
    if isinstance(err, RPCError):
        return _fail(f"Temporal refused: {err.message}", TemporalUnreachable.exit_code)
    if isinstance(err, RuntimeError) and str(err).startswith("Failed client connect"):
        # The SDK's words for an unreachable server; settings were read before any connect.
        return _fail(_temporal_trouble(Settings(), err), TemporalUnreachable.exit_code)
    if isinstance(err, PolicyError | TemplateConfigError | ValueError | OSError):
        return _fail(str(err))
    raise err


def _fail(message: str, code: int = 1) -> int:
    print(f"dunning: {_line(message)}", file=sys.stderr)
    return code


def _bad_arguments(message: str, command: str, code: int = EXIT_BAD_ARGUMENTS) -> int:
    """Bad arguments as one line (never the usage box), pointing at the command's help."""
    # Click's wording less its full stop and pydantic's "Value error, " (Typer converts by it).
    message = _line(message).removesuffix(".").replace("Value error, ", "")
    return _fail(f"{message[:1].lower()}{message[1:]} (see {command} --help)", code)


def _usage(ctx: typer.Context, message: str) -> typer.Exit:
    """Arguments a command checks itself (Click cannot say "one of these"): one line, exit 2."""
    _bad_arguments(message, ctx.command_path)
    return typer.Exit(EXIT_BAD_ARGUMENTS)


# The command line --------------------------------------------------------------------------

app = typer.Typer(
    name="dunning",
    help=__doc__.splitlines()[0],
    # Prose unwrapped (the help wraps it to the terminal), the exit-code table as written.
    epilog="\n\n".join(
        p if p.startswith("    ") else " ".join(p.split()) for p in __doc__.split("\n\n")[1:]
    ),
    no_args_is_help=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
model_app = typer.Typer(name="model", help="the smart-retry model")
policies_app = typer.Typer(name="policies", help="policy files")
events_app = typer.Typer(name="events", help="stored billing events")
db_app = typer.Typer(name="db", help="the store's schema")
customer_app = typer.Typer(name="customer", help="a customer's conversation over their cases")
collections_app = typer.Typer(name="collections", help="cases handed to collections")
tasks_app = typer.Typer(name="tasks", help="agent call tasks: whom to phone, and how calls went")
webhooks_app = typer.Typer(name="webhooks", help="outbound case events for the product")


def _command(group: typer.Typer, name: str, help: str, **options) -> Callable:
    """Register `function` as command `name` of `group`. It returns its exit code (None: 0),
    or is a coroutine function run to its end."""

    def register(function: Callable) -> Callable:
        @functools.wraps(function)
        def run(**params) -> int:
            try:
                code = function(**params)
                if inspect.iscoroutine(code):
                    import asyncio

                    code = asyncio.run(code)
            except BrokenPipeError:  # before Click's handling, which would make it exit 1
                return EXIT_CLOSED_PIPE
            return code or 0

        group.command(name, help=help, **options)(run)
        return function

    return register


def _settings() -> Settings:
    """The settings, read first by every command: bad ones end it before anything starts."""
    from config.settings import Settings

    return Settings()


def _checked_id(text: str | None) -> str | None:
    """An id option (invoice, customer, policy, payment method) as workflows accept it."""
    from workflows.models import ID_PATTERN

    if text is not None and not re.fullmatch(ID_PATTERN, text):
        raise typer.BadParameter(f"{text!r} is not a valid id")
    return text


# Choices as the enums in workflows.models, activities.store and analytics.report spell them,
# written out so that parsing arguments imports none of them (tests/cli/test_cli.py compares).
CASE_STATUSES = Literal[
    "active",
    "awaiting_payment_method",
    "awaiting_customer_action",
    "paused",
    "disputed",
    "blocked",
    "recovered",
    "cancelled",
    "collections",
]
# An enum where the option repeats (Typer takes no list of Literal).
EventStatus = StrEnum(
    "EventStatus", {s: s for s in ("pending", "processed", "ignored", "failed", "rejected")}
)
OutboundStatus = StrEnum(
    "OutboundStatus", {s: s for s in ("pending", "delivered", "failed", "stored")}
)
REPORT_DIMENSIONS = Literal["policy", "variant", "segment", "decline_class", "channel"]
CALL_OUTCOMES = Literal[
    "no_answer", "voicemail", "wrong_number", "promise", "plan", "paid", "refused"
]

_ACTOR = os.environ.get("USER") or "support"
Case = Annotated[str, typer.Argument(help="the case id, which is the invoice id")]
Actor = Annotated[str, typer.Option(help="who does this (default: $USER)", show_default=False)]
Id = Annotated[str | None, typer.Option(callback=_checked_id)]
Json = Annotated[bool, typer.Option("--json")]
Limit = Annotated[int, typer.Option()]
# `simulate` parses its own options, `--help` included: pass them on.
PASSED_ON = {"ignore_unknown_options": True, "allow_extra_args": True}


# Commands ----------------------------------------------------------------------------------


@_command(app, "worker", "run a worker (and the dev server when none is set)")
def cmd_worker(
    demo: Annotated[bool, typer.Option("--demo", help="also start the demo cases")] = False,
    serve: Annotated[
        bool, typer.Option("--serve", help="also serve the billing-event receiver (webhooks)")
    ] = False,
) -> None:
    from worker import main as run_worker

    settings = _settings()
    _store(settings)  # name the store's trouble before anything else starts
    if demo:
        settings = settings.in_demo_mode()
    settings.check_secrets(serving=serve)  # SecretsProblem: one line, exit 1
    run_worker(settings, demo=demo, serve=serve)


@_command(
    app,
    "serve",
    "serve the billing-event receiver: POST /webhooks/stripe, POST /events, GET /healthz",
)
async def cmd_serve() -> int:
    from webhooks.app import connect_lazily, serve

    settings = _settings()
    settings.check_secrets(serving=True)  # SecretsProblem: one line, exit 1
    await serve(settings, connect_lazily(settings), _store(settings))
    return 0


@_command(app, "start", "start a case from a billing-event JSON or from flags")
async def cmd_start(
    event: Annotated[
        str | None, typer.Argument(help="billing-event JSON file, or - for stdin")
    ] = None,
    invoice: Id = None,
    customer: Id = None,
    amount: Annotated[
        int | None, typer.Option(help="amount due in minor units (cents, yen)")
    ] = None,
    currency: Annotated[str | None, typer.Option(help="ISO-4217 code, e.g. USD")] = None,
    decline_code: Annotated[str | None, typer.Option()] = None,
    payment_method: Annotated[
        str | None, typer.Option(help="payment method token, e.g. pm_card_visa")
    ] = None,
    name: Annotated[str | None, typer.Option()] = None,
    email: Annotated[str | None, typer.Option()] = None,
    phone: Annotated[str | None, typer.Option(help="E.164, e.g. +14155550100")] = None,
    locale: Annotated[str, typer.Option()] = "en",
    time_zone: Annotated[
        str | None,
        typer.Option(help="IANA zone, e.g. Asia/Tokyo (messages keep its hours)"),
    ] = None,
    policy: Annotated[str | None, typer.Option()] = None,
    policy_version: Annotated[int | None, typer.Option()] = None,
) -> int:
    from intake.cases import start_case
    from intake.events import BillingEvent

    settings = _settings()
    if event is not None:
        raw = sys.stdin.read() if event == "-" else _read(event)
        billing_event = _parse(BillingEvent, raw)
    else:
        given = {"invoice": invoice, "customer": customer, "amount": amount, "currency": currency}
        missing = [f"--{flag}" for flag, value in given.items() if not value]
        if missing:
            raise UserError(f"give an event file (or -) or the flags {', '.join(missing)}")
        billing_event = _validate(
            BillingEvent,
            {
                "invoice_id": invoice,
                "customer": {
                    "customer_id": customer,
                    "name": name,
                    "email": email,
                    "phone": phone,
                    "locale": locale,
                    "time_zone": time_zone,
                    "payment_method": payment_method,
                },
                "amount_due": amount,
                "currency": currency,
                "decline_code": decline_code,
                "policy": policy,
                "policy_version": policy_version,
            },
        )
    store = _store(settings)
    result = await start_case(await _client(settings), settings, store, billing_event)
    print(result.message)
    return 0 if result.started else 3


@_command(app, "demo", "start demo cases that take different paths")
async def cmd_demo() -> int:
    from intake.demo import run_demo

    settings = _settings()
    await run_demo(await _client(settings), settings, _store(settings))
    return 0


@_command(app, "pause", "pause a case (no charges or messages)")
async def cmd_pause(
    case: Case,
    reason: Annotated[str, typer.Option()],
    until: Annotated[
        str | None, typer.Option(help="resume by itself at an ISO time or after 30m, 4h, 2d")
    ] = None,
    actor: Actor = _ACTOR,
) -> None:
    from workflows.models import PauseRequest

    request = {"reason": reason, "actor": actor, "until": _until(until) if until else None}
    await _support_update(
        case, lambda wf: wf.pause_case, _validate(PauseRequest, request), "paused"
    )


@_command(app, "resume", "resume a paused case")
async def cmd_resume(case: Case, actor: Actor = _ACTOR) -> None:
    from workflows.models import ResumeRequest

    await _support_update(case, lambda wf: wf.resume_case, ResumeRequest(actor=actor), "resumed")


@_command(app, "payment-received", "record a payment made elsewhere")
async def cmd_payment_received(
    case: Case,
    amount: Annotated[int, typer.Option(help="in minor units")],
    reference: Annotated[str, typer.Option()] = "",
    actor: Actor = _ACTOR,
) -> None:
    from workflows.models import PaymentReceived

    request = _validate(PaymentReceived, {"amount": amount, "reference": reference, "actor": actor})
    await _support_update(case, lambda wf: wf.record_payment, request, "recorded the payment on")


@_command(app, "method-updated", "the customer has a new payment method")
async def cmd_method_updated(case: Case, payment_method: Id = None, actor: Actor = _ACTOR) -> None:
    from workflows.models import PaymentMethodUpdated

    request = _validate(PaymentMethodUpdated, {"payment_method": payment_method, "actor": actor})
    await _support_update(
        case, lambda wf: wf.record_payment_method, request, "recorded the new payment method on"
    )


@_command(app, "dispute-opened", "stop charging during a dispute")
async def cmd_dispute_opened(
    case: Case, reason: Annotated[str, typer.Option()] = "", actor: Actor = _ACTOR
) -> None:
    from workflows.models import DisputeOpened

    request = _validate(DisputeOpened, {"reason": reason, "actor": actor})
    await _support_update(case, lambda wf: wf.open_dispute, request, "opened a dispute on")


@_command(app, "dispute-resolved", "the dispute is won or lost")
async def cmd_dispute_resolved(
    case: Case, outcome: Annotated[Literal["won", "lost"], typer.Argument()], actor: Actor = _ACTOR
) -> None:
    from workflows.models import DisputeResolved

    request = DisputeResolved(won=outcome == "won", actor=actor)
    await _support_update(case, lambda wf: wf.resolve_dispute, request, "resolved the dispute on")


@_command(app, "cancel", "stop dunning a case for good")
async def cmd_cancel(
    case: Case, reason: Annotated[str, typer.Option()], actor: Actor = _ACTOR
) -> None:
    from workflows.models import CancelRequest

    request = _validate(CancelRequest, {"reason": reason, "actor": actor})
    await _support_update(case, lambda wf: wf.cancel_case, request, "cancelled")


@_command(app, "retry", "charge a blocked case again, once its gateway configuration is fixed")
async def cmd_retry(case: Case, actor: Actor = _ACTOR) -> None:
    from workflows.models import RetryRequest

    await _support_update(case, lambda wf: wf.retry_case, RetryRequest(actor=actor), "retrying")


async def _support_update(
    case: str, update: Callable[[type[DunningWorkflow]], Callable], request: object, done: str
) -> None:
    """A support command: the case answers `update` (picks the `DunningWorkflow` update
    method, so the name is typed once, and Temporal is imported only now) with its status,
    printed after `done`, or refuses (exit 1)."""
    from workflows.dunning import DunningWorkflow

    handle = await _open_case(_settings(), case)
    view = await _update(handle, update(DunningWorkflow), request)
    print(f"{done} {handle.id}: {view.details}")


@_command(app, "status", "show a case: state, next step, attempts, messages")
async def cmd_status(case: Case, as_json: Json = False) -> int:
    from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError

    from workflows.dunning import DunningWorkflow

    settings = _settings()
    handle, status = await _case(settings, case)
    if status != WorkflowExecutionStatus.RUNNING:
        try:
            result = await handle.result()
        except WorkflowFailureError as err:
            ending = status.name.lower()
            raise UserError(f"case {handle.id} ended without an outcome ({ending})") from err
        if as_json:
            print(result.model_dump_json(indent=2))
        else:
            print(f"{handle.id}  {result.outcome}: {result.reason}")
            _print_stored_messages(_stored_messages(settings, result.case_id))
            _print_timeline(result.timeline)
        return 0
    view = await handle.query(DunningWorkflow.status)
    if as_json:
        print(view.model_dump_json(indent=2))
    else:
        _print_view(handle.id, view, _stored_messages(settings, view.case_id))
    return 0


@_command(customer_app, "show", "a customer's open cases, what they owe, messages, next contact")
async def cmd_customer_show(
    customer: Annotated[str, typer.Argument(help="the customer id")], as_json: Json = False
) -> int:
    from temporalio.client import WorkflowExecutionStatus

    from activities.conversation import conversation_id
    from intake.client import case_run_status
    from workflows.customer import CustomerWorkflow
    from workflows.models import ID_PATTERN

    if not re.fullmatch(ID_PATTERN, customer):
        raise UserError(f"{customer!r} is not a customer id")
    settings = _settings()
    client = await _client(settings)
    handle = client.get_workflow_handle_for(CustomerWorkflow.run, conversation_id(customer))
    status = await case_run_status(client, handle.id)
    if status is None:
        raise UserError(
            f"no conversation with customer {customer}: none of their cases joined one "
            "(a policy with `conversation = true` starts it)"
        )
    if status == WorkflowExecutionStatus.RUNNING:
        view = await handle.query(CustomerWorkflow.summary)
    elif status == WorkflowExecutionStatus.COMPLETED:
        view = await handle.result()
    else:
        raise UserError(f"customer {customer}'s conversation ended ({status.name.lower()})")
    if as_json:
        print(view.model_dump_json(indent=2))
        return 0
    from workflows.money import format_money

    owed = ", ".join(format_money(amount, currency) for currency, amount in view.owed.items())
    count = len(view.open_invoices)
    print(f"{handle.id}  {count} open invoice{'s' if count != 1 else ''}, owed {owed or '0'}")
    print(f"messages this week: {view.messages_this_week} of {view.messages_per_week}")
    waiting = f" (waiting: {', '.join(view.waiting_reminders)})" if view.waiting_reminders else ""
    print(f"next contact: {_when(view.next_contact_at)}{waiting}")
    print(f"next step: {view.next_step}")
    if view.open_invoices:
        print()
        rows = [
            [i.invoice_id, format_money(i.amount_due, i.currency), _when(i.deadline)]
            for i in view.open_invoices
        ]
        _print_table(["INVOICE", "DUE", "COLLECTIONS"], rows)
    return 0


Contact = Annotated[
    str, typer.Argument(help="email address, or phone number in E.164 (+14155550100)")
]
ContactChannel = Annotated[
    Literal["email", "sms"] | None,
    typer.Option(help="default: email for an address, else sms", show_default=False),
]


@_command(app, "opt-out", "stop dunning messages to an email address or phone number")
def cmd_opt_out(contact: Contact, channel: ContactChannel = None, actor: Actor = _ACTOR) -> None:
    settings = _settings()
    channel, contact = _contact(contact, channel)
    source = f"support:{actor}"
    _store(settings).suppress(channel, contact, OPTED_OUT, source)
    print(f"opted out {contact}: no dunning {_CHANNEL_NAMES[channel]} to it ({source})")


@_command(app, "opt-in", "allow dunning messages to an opted-out address or number again")
def cmd_opt_in(contact: Contact, channel: ContactChannel = None, actor: Actor = _ACTOR) -> None:
    settings = _settings()
    channel, contact = _contact(contact, channel)
    store = _store(settings)
    earlier = store.suppression(channel, contact)
    lifted = earlier is not None and store.lift_suppression(channel, contact)
    if not lifted:
        print(f"{contact} was not opted out of {_CHANNEL_NAMES[channel]}: nothing to lift")
        return
    print(
        f"opted in {contact}: dunning {_CHANNEL_NAMES[channel]} allowed again "
        f"(lifted {earlier.reason} from {earlier.source}, by support:{actor})"
    )


@_command(app, "report", "recovery figures from the store: table, JSON, chart")
def cmd_report(
    since: Annotated[
        str | None, typer.Option(help="first day of case opening, YYYY-MM-DD (UTC)")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="last day of case opening, included, YYYY-MM-DD (UTC)")
    ] = None,
    by: Annotated[
        REPORT_DIMENSIONS | None,
        typer.Option(
            help="show one grouping (default: all); the chart draws lines by policy or variant"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the full report as JSON")] = False,
    chart: Annotated[
        Path | None, typer.Option(metavar="OUT.html", help="write the recovery curve")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="the store (default: DATABASE_URL or settings)")
    ] = None,
) -> int:
    from types import SimpleNamespace

    from analytics.cli import run_report

    settings = _settings()
    args = SimpleNamespace(
        since=since, until=until, by=by, json=as_json, chart=chart, database_url=database_url
    )
    return run_report(args, settings)


@_command(
    app,
    "simulate",
    "compare policies offline on a world model (options: dunning simulate --help)",
    context_settings=PASSED_ON,
    add_help_option=False,
)
def cmd_simulate(ctx: typer.Context) -> int:
    from simulation.cli import main as simulate

    _settings()
    return simulate(ctx.args)


StoreUrl = Annotated[str | None, typer.Option(help="the store (default: DATABASE_URL or settings)")]
ModelsDir = Annotated[
    Path | None, typer.Option(help="where models are (default: RETRY_MODELS_DIR or settings)")
]


@_command(
    model_app,
    "train",
    "fit a retry model on the store's retries and a message model on its reminders; write "
    "the next versions",
)
def cmd_model_train(
    database_url: StoreUrl = None,
    models_dir: ModelsDir = None,
    holdout: Annotated[
        float, typer.Option(min=0.0, max=0.5, help="the newest share held out to evaluate on")
    ] = 0.2,
) -> None:
    """Fit on all but the newest `--holdout` of the scheduled retries, print how well that
    predicts the held-out ones, then refit on all of them and write the next version; then
    fit the message model on every reminder that reached a customer and write its next
    version (with little history it advises sending reminders as written)."""
    from activities.message_training import advised_segments, train_messages
    from activities.retry_training import TrainingError, describe, train
    from activities.store import utcnow

    settings = _settings()
    store = _store(_with_store(settings, database_url))
    folder = models_dir or settings.retry_models_dir
    try:
        trained = train(store, folder, holdout, utcnow())
        messages, message_path = train_messages(store, folder, utcnow())
    except TrainingError as err:
        raise UserError(str(err)) from err
    if trained.held_out is not None:
        print(
            f"held out: the newest {trained.held_out.attempts} retries, "
            f"predicted by a model fitted on the {trained.fitted_on} before them"
        )
        for line in describe(trained.held_out):
            print(f"  {line}")
    info = trained.model.info
    print(f"wrote {trained.path}: model v{info.version}, refitted on all {info.trained_on} retries")
    advised = ", ".join(advised_segments(messages)) or "none: reminders go out as written"
    print(
        f"wrote {message_path}: message model v{messages.version}, learned from "
        f"{messages.trained_on} reminders; segments it changes: {advised}"
    )


@_command(model_app, "evaluate", "a retry model's figures on the store's retries")
def cmd_model_evaluate(
    ctx: typer.Context,
    model: Annotated[Path | None, typer.Option(help="a model file")] = None,
    version: Annotated[int | None, typer.Option(min=1, help="a model version")] = None,
    database_url: StoreUrl = None,
    models_dir: ModelsDir = None,
) -> None:
    """How well a model (the newest by default) predicts the store's scheduled retries:
    every figure weighed by the inverse of the chance its time had of being chosen."""
    if model is not None and version is not None:
        raise _usage(ctx, "give --model or --version, not both")

    from activities.retry_training import (
        ModelFileError,
        TrainingError,
        describe,
        evaluate_on_store,
        model_version,
        newest_model,
        read_model,
    )

    settings = _settings()
    folder = models_dir or settings.retry_models_dir
    try:
        if model is not None:
            chosen = read_model(model)
        elif version is not None:
            chosen = model_version(folder, version)
        elif (chosen := newest_model(folder)) is None:
            raise UserError(f"no retry model in {folder}: `dunning model train` makes one")
        evaluation = evaluate_on_store(_store(_with_store(settings, database_url)), chosen)
    except (ModelFileError, TrainingError) as err:
        raise UserError(str(err)) from err
    info = chosen.info
    print(
        f"model v{info.version} (fitted {info.trained_at:%Y-%m-%d} on {info.trained_on} "
        f"retries) on the store's {evaluation.attempts} scheduled retries:"
    )
    for line in describe(evaluation):
        print(f"  {line}")


def _with_store(settings: Settings, database_url: str | None) -> Settings:
    """`settings` with `--database-url`, when given."""
    if database_url is None:
        return settings
    return settings.model_copy(update={"database_url": database_url})


@_command(
    policies_app, "check", "validate every policy, segment and template file and explain errors"
)
def cmd_policies_check() -> None:
    """Load every policy, the decline table, the segments, the pre-dunning windows and the
    templates as a worker would."""
    from activities.notify.templates import Templates
    from config.policies import load_policies, load_pre_dunning, load_segments
    from config.settings import CONFIG_DIR

    settings = _settings()
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
    notices = load_pre_dunning(settings.pre_dunning_file)
    print(
        f"ok  pre-dunning: cards {', '.join(f'{d}d' for d in notices.card_windows)} ahead, "
        f"renewals {', '.join(f'{d}d' for d in notices.renewal_windows)} ahead"
    )
    print(f"ok  templates: {', '.join(sorted(templates.languages))}")


def _days(offset) -> str:
    days = offset.total_seconds() / 86400
    return f"day {days:g}" if days >= 1 else f"{offset.total_seconds():g}s"


@_command(app, "list", "list cases by status, customer or policy")
async def cmd_list(
    status: Annotated[CASE_STATUSES | None, typer.Option()] = None,
    customer: Id = None,
    policy: Id = None,
    limit: Limit = 50,
    as_json: Json = False,
) -> None:
    import json

    from workflows.money import format_money

    settings = _settings()
    clauses = ["WorkflowType = 'DunningWorkflow'"]
    for attribute, value in (
        ("DunningStatus", status),
        ("CustomerId", customer),
        ("DunningPolicy", policy),
    ):
        if value is not None:
            clauses.append(f"{attribute} = '{value}'")
    query = " AND ".join(clauses)
    client = await _client(settings)
    rows = []
    async for execution in client.list_workflows(query, limit=limit):
        attributes = {key.name: value for key, value in execution.typed_search_attributes}
        rows.append(
            [
                # The case id the other commands take (the workflow id less its prefix).
                attributes.get("InvoiceId") or execution.id.removeprefix("dunning-"),
                attributes.get("CustomerId", ""),
                attributes.get("DunningStatus", ""),
                format_money(attributes.get("AmountDue", 0), attributes.get("Currency", "USD")),
                str(attributes.get("RetryCount", 0)),
                # Cases no longer upsert their next step's time (an action each on Temporal
                # Cloud): it is in `dunning status CASE` and the UI's current details.
                _when(execution.start_time),
            ]
        )
    if as_json:
        keys = ["case", "customer", "status", "amount_due", "charges", "opened_at"]
        print(json.dumps([dict(zip(keys, row, strict=True)) for row in rows], indent=2))
        return
    if not rows:
        print("no cases match")
        return
    _print_table(["CASE", "CUSTOMER", "STATUS", "DUE", "CHARGES", "OPENED"], rows)


@_command(db_app, "upgrade", "migrate the store's schema to the newest revision (every start does)")
def cmd_db_upgrade() -> None:
    """Migrate the store's schema to the newest revision, as every worker and receiver start
    does, and say which revision it is at."""
    revision = _store(_settings()).upgrade()  # `_store` migrated it: this reads the revision
    print(f"store schema at revision {revision}")


@_command(events_app, "list", "stored billing events, newest first")
def cmd_events_list(
    status: Annotated[list[EventStatus] | None, typer.Option()] = None,
    invoice: Id = None,
    limit: Limit = 50,
) -> None:
    events = _store(_settings()).find_webhook_events(
        statuses=status, invoice_id=invoice, limit=limit
    )
    if not events:
        print("no stored events match")
        return
    rows = [
        [
            e.provider,
            e.event_id,
            e.type,
            e.status,
            e.invoice_id or "-",
            str(e.deliveries),
            _when(e.received_at),
            _line(e.detail)[:100] or "-",
        ]
        for e in events
    ]
    header = ["PROVIDER", "EVENT", "TYPE", "STATUS", "INVOICE", "DELIVERIES", "RECEIVED", "DETAIL"]
    _print_table(header, rows)


@_command(events_app, "retry", "carry out stored pending or failed billing events now")
async def cmd_events_retry(
    ctx: typer.Context,
    event_ids: Annotated[list[str] | None, typer.Argument(metavar="EVENT_ID")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every pending or failed one")] = False,
) -> int:
    """Carry out stored billing events no delivery finished, now, whatever their age and
    however often they were tried; say what became of each."""
    if event_ids and all_:
        raise _usage(ctx, "argument --all: not allowed with argument EVENT_ID")
    if not event_ids and not all_:
        raise _usage(ctx, "one of the arguments EVENT_ID --all is required")

    from activities.store import WebhookClaim, WebhookEventStatus
    from webhooks.cases import CaseDesk
    from webhooks.sweeper import PROVIDERS, retry_all

    settings = _settings()
    store = _store(settings)
    client = await _client(settings)  # unreachable: exit 5 before any event is claimed
    code = 0
    if all_:
        events = store.webhook_events_to_retry(PROVIDERS, received_before=datetime.now(UTC))
        if not events:
            print("no pending or failed billing events")
    else:
        named = store.find_webhook_events(event_ids=event_ids, providers=PROVIDERS)
        for event_id in sorted(set(event_ids) - {e.event_id for e in named}):
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
            print(f"{_event_name(event)}: {handled.status}, {_line(handled.detail)}")
        if handled.status not in (WebhookEventStatus.PROCESSED, WebhookEventStatus.IGNORED):
            code = code or 1
    for event in events[len(results) :]:
        print(f"{_event_name(event)}: not tried, Temporal became unreachable")
    if results and results[-1][1].status == WebhookEventStatus.PENDING:
        return TemporalUnreachable.exit_code
    return code


@_command(webhooks_app, "list", "outbound case events and their deliveries, newest first")
def cmd_webhooks_list(
    status: Annotated[list[OutboundStatus] | None, typer.Option()] = None,
    case: Id = None,
    limit: Limit = 50,
    as_json: Json = False,
) -> None:
    import json

    events = _store(_settings()).find_outbound_events(statuses=status, case_id=case, limit=limit)
    if as_json:
        keys = {"event_id", "type", "case_id", "status", "attempts", "created_at"}
        keys |= {"next_attempt_at", "delivered_at", "last_error"}
        print(json.dumps([e.model_dump(mode="json", include=keys) for e in events], indent=2))
        return
    if not events:
        print("no outbound events match")
        return
    rows = [
        [
            e.event_id,
            e.type,
            e.status,
            str(e.attempts),
            _when(e.created_at),
            _when(e.next_attempt_at),
            _line(e.last_error)[:80] if e.last_error else "-",
        ]
        for e in events
    ]
    _print_table(["EVENT", "TYPE", "STATUS", "ATTEMPTS", "CREATED", "NEXT ATTEMPT", "ERROR"], rows)


@_command(webhooks_app, "redeliver", "send a stored outbound case event again now")
def cmd_webhooks_redeliver(
    event_id: Annotated[str, typer.Argument(metavar="EVENT_ID")],
) -> int:
    """Send the event now, signed afresh; the attempt joins its delivery log."""
    from activities.outbound import EventPublisher

    settings = _settings()
    if not settings.outbound_webhook_url:
        raise UserError("OUTBOUND_WEBHOOK_URL is not set: there is nowhere to deliver to")
    row = EventPublisher.from_settings(settings, _store(settings)).redeliver(event_id)
    if row is None:
        raise UserError(f"{event_id}: no outbound event has this id")
    error = f": {_line(row.last_error)}" if row.last_error else ""
    print(f"{row.event_id} ({row.type}): {row.status} after attempt {row.attempts}{error}")
    return 0 if row.status == "delivered" else 1


def _event_name(event: WebhookEvent) -> str:
    return f"{event.provider} {event.event_id} ({event.type})"


@_command(collections_app, "export", "every case sent to collections, as an agency needs it")
def cmd_collections_export(
    format_: Annotated[
        Literal["csv", "json"],
        typer.Option("--format", help="csv: one row per case; json: the full records"),
    ],
    since: Annotated[
        str | None, typer.Option(help="only cases sent on or after this day, YYYY-MM-DD (UTC)")
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="write to this file (default: stdout)")
    ] = None,
) -> None:
    """Every case sent to collections (from `--since`), with amounts, dates, charge attempts,
    messages and the customer's contact: CSV (header only when none) or JSON (``[]``)."""
    if since is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", since):
        raise UserError(f"--since {since!r} is not a date: use YYYY-MM-DD")
    try:
        start = datetime.fromisoformat(since).replace(tzinfo=UTC) if since else None
    except ValueError:
        raise UserError(f"--since {since!r} is not a date: use YYYY-MM-DD") from None

    from analytics.collections import export

    text = export(_store(_settings()).sent_to_collections(start), format_)
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as err:
        raise UserError(f"cannot write {output}: {err.strerror}") from err


@_command(tasks_app, "list", "open call tasks, the soonest to call first")
def cmd_tasks_list(
    all_: Annotated[bool, typer.Option("--all", help="also the done and cancelled ones")] = False,
    customer: Id = None,
    as_json: Json = False,
) -> None:
    """The tasks to call, with the customer's name and phone (for the agent's own eyes), the
    amount due, the best time to call in the customer's zone and their calls this week."""
    import json

    from intake.calls import calls_this_week, task_lines

    lines = task_lines(
        _store(_settings()), datetime.now(UTC), customer_id=customer, include_closed=all_
    )
    if as_json:
        print(json.dumps([line.model_dump(mode="json") for line in lines], indent=2))
        return
    if not lines:
        print("no call tasks match")
        return
    header = ["TASK", "CASE", "CUSTOMER", "NAME", "PHONE", "DUE", "CALL FROM", "CALLS/7D"]
    if all_:
        header.append("STATUS")
    rows = []
    for line in lines:
        row = [
            str(line.task),
            line.case,
            line.customer,
            line.name or "-",
            line.phone or "-",
            line.amount_due,
            line.call_after_local,
            calls_this_week(line),
        ]
        rows.append([*row, line.status] if all_ else row)
    _print_table(header, rows)


@_command(tasks_app, "complete", "log a call made now on a task; the case hears how it went")
async def cmd_tasks_complete(
    ctx: typer.Context,
    task: Annotated[int, typer.Argument(help="the task's id (dunning tasks list)")],
    outcome: Annotated[CALL_OUTCOMES, typer.Option()],
    pay_on: Annotated[
        str | None, typer.Option(help="promise: the day the customer will pay, YYYY-MM-DD")
    ] = None,
    plan: Annotated[
        int | None, typer.Option(min=2, max=12, help="plan: the offered plan's installments")
    ] = None,
    amount: Annotated[
        int | None, typer.Option(min=1, help="paid: minor units taken (default: all due)")
    ] = None,
    note: Annotated[str, typer.Option(help="what was said; stays in the store")] = "",
    actor: Actor = _ACTOR,
) -> None:
    """Log a call just made: refused (nothing written) on an unknown or closed task, for the
    customer's 8th call in 7 days or in their quiet hours, or when the case refuses what the
    call agreed; else the case hears it (a promise, plan or payment acts as on the recovery
    page) and the call is stored: the task stays open for another try after no answer or a
    voicemail, while attempts are left."""
    from datetime import date

    from config.policies import load_policies
    from intake.calls import CallRefused, case_request, check_call, describe_task, log_call
    from workflows.dunning import DunningWorkflow
    from workflows.models import CallOutcome

    needs = {"promise": ("--pay-on", pay_on), "plan": ("--plan", plan)}
    for kind, (flag, value) in needs.items():
        if (outcome == kind) != (value is not None):
            raise _usage(ctx, f"{flag} goes with --outcome {kind}, and only with it")
    if amount is not None and outcome != "paid":
        raise _usage(ctx, "--amount goes with --outcome paid, and only with it")
    try:
        day = date.fromisoformat(pay_on) if pay_on else None
    except ValueError:
        raise _usage(ctx, f"--pay-on {pay_on!r}: give a day as YYYY-MM-DD") from None
    if len(note) > NOTE_LIMIT:
        raise _usage(ctx, f"--note: at most {NOTE_LIMIT} characters")

    settings = _settings()
    store = _store(settings)
    policies = load_policies(settings.policies_dir, settings.declines_file)
    now = datetime.now(UTC)
    try:
        call = check_call(store, policies, task, now)
    except CallRefused as err:
        raise UserError(str(err)) from err
    handle = await _open_case(settings, call.task.case_id)
    if outcome == "paid" and amount is None:
        amount = (await handle.query(DunningWorkflow.status)).amount_due
    outcome = CallOutcome(outcome)
    request = case_request(call, outcome, actor, day, plan, amount)
    update = {
        CallOutcome.PROMISE: DunningWorkflow.promise_payment,
        CallOutcome.PLAN: DunningWorkflow.choose_plan,
        CallOutcome.PAID: DunningWorkflow.record_payment,
    }.get(outcome, DunningWorkflow.note_call)
    view = await _update(handle, update, request)
    done = log_call(store, call, outcome, actor, note, now)
    print(f"{outcome} logged on {handle.id}: {view.details}; {describe_task(done, call.zones)}")


@_command(
    app,
    "codec-server",
    "decrypt payloads for the Temporal UI and CLI: POST /decode, /encode (bearer token, CORS)",
)
async def cmd_codec_server(
    no_token: Annotated[
        bool,
        typer.Option(
            "--no-token",
            help="serve without CODEC_SERVER_TOKEN (the dev UI sends none): loopback only",
        ),
    ] = False,
) -> None:
    from webhooks.codec_server import serve_codec

    await serve_codec(_settings(), without_token=no_token)  # CodecServerProblem: one line


@_command(app, "ui-links", "print saved-view links of the Temporal UI (collections, paused, ...)")
def cmd_ui_links(customer: Id = None) -> None:
    from intake.ui_links import ui_link, ui_views

    settings = _settings()
    for title, query in ui_views(datetime.now(UTC), customer):
        print(f"{title}:\n  {ui_link(settings.ui_url, settings.temporal_namespace, query)}")


app.add_typer(model_app)
app.add_typer(policies_app)
app.add_typer(events_app)
app.add_typer(db_app)
app.add_typer(customer_app)
app.add_typer(collections_app)
app.add_typer(tasks_app)
app.add_typer(webhooks_app)


# Helpers -----------------------------------------------------------------------------------

OPTED_OUT = "opted_out"
NOTE_LIMIT = 1000
_CHANNEL_NAMES = {"email": "email", "sms": "SMS"}
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def _contact(text: str, channel: str | None) -> tuple[str, str]:
    """The channel and the contact as the suppression table keys it: an email address, or a
    phone number in E.164 (spaces, dashes, dots and brackets dropped)."""
    from pydantic import EmailStr, TypeAdapter, ValidationError

    text = text.strip()
    channel = channel or ("email" if "@" in text else "sms")
    if channel == "email":
        try:
            return channel, TypeAdapter(EmailStr).validate_python(text)
        except ValidationError as err:
            reason = err.errors()[0]["msg"].removeprefix("value is not a valid email address: ")
            raise UserError(f"{text!r} is not an email address ({reason})") from err
    number = re.sub(r"[\s().-]", "", text)
    if not _E164.fullmatch(number):
        raise UserError(f"{text!r} is not a phone number in E.164 form, like +14155550100")
    return channel, number


def _store_trouble(err: SQLAlchemyError) -> str:
    """The store's error in one line, never its message (it may quote the statement)."""
    from sqlalchemy.exc import ArgumentError, OperationalError

    if isinstance(err, ArgumentError):
        return f"DATABASE_URL is unusable ({err}); e.g. sqlite:///.dunning/dunning.db"
    # The driver's own words (connection refused, database is locked) carry no values.
    reason = _line(err.orig)[:200] if isinstance(err, OperationalError) else ""
    return f"cannot use the store ({reason or type(err).__name__}); check DATABASE_URL"


def _temporal_trouble(settings: Settings, err: BaseException) -> str:
    address = settings.temporal_address or f"localhost:{settings.dev_server_port}"
    return f"cannot reach Temporal at {address} ({_line(err)}); check TEMPORAL_ADDRESS"


def _stored_messages(settings: Settings, case_id: str) -> list[Message] | None:
    """The case's message rows, with what providers reported; None when the store is down."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return _store(settings).messages(case_id)
    except (StoreUnavailable, SQLAlchemyError):
        return None


async def _client(settings: Settings) -> Client:
    """A connected client; `TemporalUnreachable` (exit 5) when there is none to be had."""
    from intake.client import connect

    try:
        return await connect(settings)
    except RuntimeError as err:
        raise TemporalUnreachable(
            f"{_temporal_trouble(settings, err)} or start `dunning worker`"
        ) from err


def _store(settings: Settings) -> CaseStore:
    """The store, its schema upgraded (under a lock); its trouble ends the command with
    exit 4."""
    from alembic.util.exc import CommandError

    from activities.store import CaseStore

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
    from intake.cases import workflow_id_for
    from intake.client import case_run_status
    from workflows.dunning import DunningWorkflow
    from workflows.models import ID_PATTERN

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
    from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError

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
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.exceptions import ApplicationError
    from temporalio.service import RPCError, RPCStatusCode

    try:
        return await handle.execute_update(update, request)
    except WorkflowUpdateFailedError as err:
        reason = err.cause.message if isinstance(err.cause, ApplicationError) else err.cause
        raise UserError(f"refused: {_line(reason or err)}") from err
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        raise UserError(f"case {handle.id} finished meanwhile: nothing done") from err


def _validate(model: type, data: dict):
    from pydantic import ValidationError

    from config.errors import explain

    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise UserError(explain(err)) from err


def _parse(model: type, raw: str):
    from pydantic import ValidationError

    from config.errors import explain

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
    from pydantic import TypeAdapter, ValidationError

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


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _print_view(workflow_id: str, view: CaseView, stored: list[Message] | None = None) -> None:
    from workflows.money import format_money

    due = format_money(view.amount_due, view.currency)
    print(f"{workflow_id}  {view.status}  {due} due  ({view.policy})")
    print(f"customer {view.customer_id}, invoice {view.invoice_id}")
    print(f"next: {view.details}")
    if view.retry_plan is not None:
        model = f"model v{view.retry_model_version}" if view.retry_model_version else "no model"
        print(f"retry plan ({model}): {view.retry_plan}")
    if view.message_plan is not None:
        print(f"message plan: {view.message_plan}")
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


def _line(err: object) -> str:
    """`err` on one line, whole (the CLI prints the full reason)."""
    from config.errors import one_line

    return one_line(err, limit=10_000)
