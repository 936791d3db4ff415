"""`dunning report`: recovery figures as a text table, as JSON, and as a chart to open.

    dunning report [--since YYYY-MM-DD] [--until YYYY-MM-DD]
                   [--by policy|variant|segment|decline_class|channel]
                   [--json] [--chart out.html] [--database-url URL]

A mistake (a bad date, a store that cannot be read, a chart that cannot be written) is one
line on stderr and exit status 1. To wire it into another parser: `add_report_arguments`
on a subparser, then `run_report(args)`.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import date
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy import make_url
from sqlalchemy.exc import SQLAlchemyError

from activities.store import CaseStore
from analytics.ab import ABComparison
from analytics.curve import recovery_curve, render_html
from analytics.report import (
    CurrencyFigures,
    Dimension,
    FeedbackCounts,
    Figures,
    Report,
    recovery_report,
)
from config.settings import Settings
from workflows.models import FeedbackReason
from workflows.money import format_money


class ReportError(Exception):
    """A mistake the user can fix; printed as one line."""


def main(argv: list[str]) -> int:
    """Run `report ...` from `argv` (without the program name); the exit status."""
    parser = argparse.ArgumentParser(prog="dunning", description="Dunning recovery analytics.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_report_arguments(commands.add_parser("report", help=__doc__.splitlines()[0]))
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # argparse has printed its usage line (or --help)
        return stop.code if isinstance(stop.code, int) else 2
    return run_report(args)


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `report`, on `parser`."""
    parser.add_argument("--since", help="first day of case opening, YYYY-MM-DD (UTC)")
    parser.add_argument("--until", help="last day of case opening, included, YYYY-MM-DD (UTC)")
    parser.add_argument(
        "--by",
        choices=[d.value for d in Dimension],
        help="show one grouping (default: all); the chart draws lines by policy or variant",
    )
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    parser.add_argument("--chart", type=Path, metavar="OUT.html", help="write the recovery curve")
    parser.add_argument("--database-url", help="the store (default: DATABASE_URL or settings)")


def run_report(args: argparse.Namespace, settings: Settings | None = None) -> int:
    """Print the report `args` ask for (and write the chart); the exit status.

    Without `--database-url` the store is `settings.database_url` (default: `Settings()`)."""
    try:
        since, until = _day(args.since, "--since"), _day(args.until, "--until")
        if since and until and since > until:
            raise ReportError(f"--since {since} is after --until {until}")
        chart_by = args.by or "policy"
        if args.chart and chart_by not in ("policy", "variant"):
            raise ReportError("--chart draws one line per policy or per variant: use --by either")
        store = _store(args.database_url or _database_url(settings))
        try:
            report = recovery_report(store, since, until)
            curve = recovery_curve(store, since, until, by=chart_by) if args.chart else None
        except SQLAlchemyError as err:
            raise ReportError(
                f"cannot read the store ({store.engine.url.drivername}: {_why(err)}); "
                "check DATABASE_URL or --database-url"
            ) from err
        finally:
            store.engine.dispose()
        if curve is not None:
            try:
                args.chart.write_text(render_html(curve), encoding="utf-8")
            except OSError as err:
                raise ReportError(f"cannot write {args.chart}: {err.strerror or err}") from err
    except ReportError as err:
        print(f"dunning report: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        print(render_text(report, Dimension(args.by) if args.by else None))
    if curve is not None:
        print(f"chart: {args.chart}", file=sys.stderr)
    return 0


def _day(value: str | None, flag: str) -> date | None:
    if value is None:
        return None
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise ReportError(f"{flag} {value!r} is not a date: use YYYY-MM-DD") from None


def _why(err: SQLAlchemyError) -> str:
    """The driver's first line (refused, no such table), never the statement: it may quote
    values."""
    reason = str(getattr(err, "orig", None) or "").strip().splitlines()
    return f"{type(err).__name__}: {reason[0][:160]}" if reason else type(err).__name__


def _database_url(settings: Settings | None) -> str:
    if settings is None:
        try:
            settings = Settings()
        except ValidationError as err:
            raise ReportError(f"invalid settings: {err.errors()[0]['msg']}") from None
    return settings.database_url


def _store(url: str) -> CaseStore:
    """The store at `url`, which must exist: a report never creates one."""
    if url.startswith("sqlite:///") and ":memory:" not in url:
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists():
            raise ReportError(f"no store at {path}: check DATABASE_URL or --database-url")
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
            # An unreachable server: a clear line in seconds, not a long TCP timeout.
            url = parsed.update_query_dict({"connect_timeout": "10"}).render_as_string(
                hide_password=False
            )
        return CaseStore(url)
    except (SQLAlchemyError, ImportError) as err:
        raise ReportError(f"cannot use the database URL ({type(err).__name__})") from err


# Text --------------------------------------------------------------------------------------

HEADER = [
    "",
    "Currency",
    "Cases",
    "Recovered",
    "Rate",
    "Due at opening",
    "Recovered amount",
    "Median days",
    "Msgs/recovered",
    "Msgs sent",
]
TITLES = {
    Dimension.POLICY: "By policy",
    Dimension.VARIANT: "By A/B variant (segment/variant)",
    Dimension.SEGMENT: "By segment",
    Dimension.DECLINE_CLASS: "By decline class",
    Dimension.CHANNEL: "By channel (cases with a message sent on it; its messages)",
}


def render_text(report: Report, by: Dimension | None = None) -> str:
    """The report as aligned text tables: all cases, then `by` (or every grouping), then the
    A/B comparisons when variants are shown, the reasons customers gave (overall, by policy,
    by segment) and, without `by`, what the recovery page's actions recovered."""
    outcomes = report.totals.outcomes
    lines = [
        f"Recovery report: {report.period.label} (UTC)",
        f"Outcomes: {outcomes.recovered} recovered, {outcomes.cancelled} cancelled, "
        f"{outcomes.collections} collections, {outcomes.open} open",
        "",
        *_table("", [("All cases", report.totals)]),
    ]
    for dimension in [by] if by else list(Dimension):
        rows = [(group.label, group) for group in report.groups[dimension]]
        lines += ["", TITLES[dimension], *(_table("", rows) if rows else ["  no cases"])]
    if by in (None, Dimension.VARIANT):
        for experiment in report.experiments:
            lines += ["", *_experiment(experiment)]
    feedback = report.feedback
    if by is None:
        lines += ["", FEEDBACK_TITLE, *_feedback_table([feedback.totals])]
    if by in (None, Dimension.POLICY):
        lines += ["", f"{FEEDBACK_TITLE}, by policy", *_feedback_table(feedback.by_policy)]
    if by in (None, Dimension.SEGMENT):
        lines += ["", f"{FEEDBACK_TITLE}, by segment", *_feedback_table(feedback.by_segment)]
    if by is None:
        lines += ["", ACTIONS_TITLE, *_actions_table(report)]
    return "\n".join(lines)


FEEDBACK_TITLE = "Why customers have not paid (cases that answered; cases per reason given)"
ACTIONS_TITLE = "Recovered through the recovery page (credited to the customer's last step)"


def _feedback_table(groups: list[FeedbackCounts]) -> list[str]:
    if not groups:
        return ["  no answers"]
    reasons = list(FeedbackReason)
    rows = [
        [group.label, str(group.answered), *(str(group.reasons[r]) for r in reasons)]
        for group in groups
    ]
    return _aligned(["", "Answered", *reasons], rows)


def _actions_table(report: Report) -> list[str]:
    rows = [
        [
            action.action.value,
            str(action.cases),
            str(action.recovered),
            _percent(action.share_of_cases),
            _percent(action.share_of_recovered),
        ]
        for action in report.page_actions
    ]
    header = ["Action", "Cases", "Recovered", "Of all cases", "Of recovered"]
    return _aligned(header, rows)


def _table(first: str, groups: list[tuple[str, Figures]]) -> list[str]:
    """A row per group; a group in several currencies gets a row per currency under it."""
    rows = []
    for label, figures in groups:
        single = figures.currencies[0] if len(figures.currencies) == 1 else None
        rows.append(
            [
                label,
                single.currency if single else "all",
                *_counts(figures),
                *_money(single),
                _number(figures.median_days_to_recover, 1),
                _number(figures.messages_per_recovered_case, 2),
                str(figures.messages_sent),
            ]
        )
        if single is None:
            rows += [
                ["", m.currency, *_counts(m), *_money(m), "", "", ""] for m in figures.currencies
            ]
    return _aligned([first, *HEADER[1:]], rows)


def _counts(figures: Figures | CurrencyFigures) -> list[str]:
    return [str(figures.cases), str(figures.recovered_cases), _percent(figures.recovery_rate)]


def _money(figures: CurrencyFigures | None) -> list[str]:
    if figures is None:
        return ["", ""]  # never a sum across currencies
    return [
        format_money(figures.amount_due, figures.currency),
        format_money(figures.amount_recovered, figures.currency),
    ]


def _experiment(experiment: ABComparison) -> list[str]:
    rows = []
    for arm in experiment.arms:
        if arm.difference is None:
            interval = ""
        else:
            interval = (
                f"{_points(arm.difference)} pts [{_points(arm.ci_low)}, {_points(arm.ci_high)}]"
            )
        rows.append(
            [
                arm.variant,
                str(arm.cases),
                str(arm.recovered),
                _percent(arm.recovery_rate),
                interval,
                str(arm.verdict),
            ]
        )
    header = ["Variant", "Cases", "Recovered", "Rate", "vs control (95% CI)", "Verdict"]
    title = f"A/B test in segment {experiment.segment} (control: {experiment.control})"
    return [title, *_aligned(header, rows)]


def _aligned(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    numeric = {
        i for i, name in enumerate(header) if name not in ("", "Currency", "Variant", "Action")
    }
    numeric -= {len(header) - 1} if header[-1] == "Verdict" else set()
    return [
        "  ".join(
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in [header, *rows]
    ]


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share:.1%}"


def _points(share: float | None) -> str:
    return f"{share * 100:+.1f}"


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
