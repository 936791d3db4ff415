"""The recovery curve: the share of cases recovered by each day since the payment failed.

One line per policy (name and version) or per A/B variant (cases outside an experiment are
left out of the variant lines). Day `d` counts the cases recovered less than (d + 1) x 24 h
after the case opened (the failure): day 0 is the first 24 hours, and a case recovered 72 h
after opening counts from day 3. The share's denominator is every case of the line, open ones
included. `render_html` draws it as one self-contained
HTML file: inline SVG, inline CSS, no script and nothing fetched.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import date
from html import escape
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import func, select

from activities.store import CaseStore
from analytics.report import CASES, DAY, GROUPINGS, RECOVERED, Dimension, Period, group_order

CurveBy = Literal["policy", "variant"]


class CurveLine(BaseModel):
    """One policy's or variant's curve: `recovered[d]` cases recovered by day d, and their
    share of the line's cases."""

    label: str
    key: dict[str, str | int | None]
    cases: int
    recovered: list[int]
    shares: list[float]


class Curve(BaseModel):
    """Recovery curves for days 0..`days` of the cases opened in `period`."""

    period: Period
    by: CurveBy
    days: int = Field(ge=1)
    lines: list[CurveLine]


def recovery_curve(
    store: CaseStore,
    since: date | None = None,
    until: date | None = None,
    by: CurveBy = "policy",
    days: int | None = None,
) -> Curve:
    """The curves of the cases opened from `since` to `until` (UTC days, both included).

    `days` defaults to the last day on which any of these cases was recovered (at least 1)."""
    period = Period(since=since, until=until)
    grouping = GROUPINGS[Dimension(by)]
    keys = grouping.case_keys
    where = period.conditions()
    if by == "variant":
        where.append(CASES.c.variant.is_not(None))
    with store.engine.connect() as connection:
        totals = {
            tuple(row[:-1]): row[-1]
            for row in connection.execute(select(*keys, func.count()).where(*where).group_by(*keys))
        }
        # Whole days between two instants differ by dialect in SQL: one row per recovery.
        recoveries = Counter(
            (tuple(row[:-2]), math.floor((row[-1] - row[-2]) / DAY))
            for row in connection.execute(
                select(*keys, CASES.c.opened_at, CASES.c.closed_at).where(
                    *where, CASES.c.status == RECOVERED, CASES.c.closed_at.is_not(None)
                )
            )
        )
    if days is None:
        days = max([1, *(day for _, day in recoveries)])
    lines = []
    for key in sorted(totals, key=group_order):
        named = dict(zip(grouping.names, key, strict=True))
        recovered, running = [], 0
        for day in range(days + 1):
            running += recoveries[(key, day)]
            recovered.append(running)
        lines.append(
            CurveLine(
                label=grouping.label(named),
                key=named,
                cases=totals[key],
                recovered=recovered,
                shares=[count / totals[key] for count in recovered],
            )
        )
    return Curve(period=period, by=by, days=days, lines=lines)


# Rendering ---------------------------------------------------------------------------------

# Okabe-Ito: told apart by colour-blind readers too; dashes take over after seven lines.
COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]
DASHES = ["", "6 3", "2 3", "8 3 2 3"]
WIDTH, PLOT_HEIGHT = 860, 336
LEFT, RIGHT, TOP, BOTTOM = 64, 270, 52, 56
LEGEND_ROW = 36


def render_html(curve: Curve) -> str:
    """The curve as a self-contained HTML page: title with the date range, axes, gridlines,
    a legend and a table of the shares at a few days."""
    title = f"Recovery curve by {curve.by}, {curve.period.label}"
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f"<title>{escape(title)}</title>",
            "<style>",
            "body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }",
            "h1 { font-size: 18px; margin: 0 0 12px; }",
            "svg { max-width: 100%; height: auto; }",
            "svg text { font: 12px system-ui, sans-serif; fill: #333; }",
            "svg text.title { font-size: 15px; font-weight: 600; }",
            "svg text.sub { font-size: 11px; fill: #666; }",
            "table { border-collapse: collapse; margin-top: 16px; }",
            "th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: right; }",
            "th:first-child, td:first-child { text-align: left; }",
            ".note { color: #666; font-size: 12px; max-width: 820px; }",
            "</style>",
            "</head>",
            "<body>",
            f"<h1>{escape(title)}</h1>",
            _svg(curve, title),
            _table(curve),
            '<p class="note">Share of the cases opened in the range that were recovered by '
            "the end of each day after the payment failed (day 0 is the first 24 hours). "
            f"Cases opened in the last {curve.days} days may not have had time to recover "
            "yet, so the latest curves read low.</p>",
            "</body>",
            "</html>",
            "",
        ]
    )


def _svg(curve: Curve, title: str) -> str:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, PLOT_HEIGHT
    # A long legend makes the picture taller, never the lines flatter.
    height = max(TOP + plot_h + BOTTOM, TOP + len(curve.lines) * LEGEND_ROW + 8)

    def x(day: float) -> float:
        return LEFT + day / curve.days * plot_w

    def y(share: float) -> float:
        return TOP + (1 - share) * plot_h

    parts = [
        f'<svg viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
        f'role="img" aria-label="{escape(title)}">',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fff"/>',
        f'<text x="{LEFT}" y="22" class="title">{escape(title)}</text>',
    ]
    for tenth in range(0, 11, 2):
        share = tenth / 10
        parts.append(
            f'<line x1="{LEFT}" y1="{y(share):.1f}" x2="{LEFT + plot_w}" y2="{y(share):.1f}" '
            f'stroke="{"#888" if tenth == 0 else "#e3e3e3"}"/>'
        )
        parts.append(
            f'<text x="{LEFT - 8}" y="{y(share) + 4:.1f}" text-anchor="end">{tenth * 10}%</text>'
        )
    step = _day_step(curve.days)
    for day in range(0, curve.days + 1, step):
        parts.append(
            f'<line x1="{x(day):.1f}" y1="{TOP}" x2="{x(day):.1f}" y2="{TOP + plot_h}" '
            f'stroke="{"#888" if day == 0 else "#eeeeee"}"/>'
        )
        parts.append(
            f'<text x="{x(day):.1f}" y="{TOP + plot_h + 18}" text-anchor="middle">{day}</text>'
        )
    parts.append(
        f'<text x="{LEFT + plot_w / 2:.1f}" y="{TOP + plot_h + 44}" text-anchor="middle">'
        "days since the payment failed</text>"
    )
    parts.append(
        f'<text transform="translate(16 {TOP + plot_h / 2:.1f}) rotate(-90)" '
        'text-anchor="middle">cases recovered</text>'
    )
    if not curve.lines:
        parts.append(
            f'<text x="{LEFT + plot_w / 2:.1f}" y="{TOP + plot_h / 2:.1f}" '
            'text-anchor="middle">No cases in this range</text>'
        )
    for index, line in enumerate(curve.lines):
        colour, dash = _style(index)
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        points = " ".join(f"{x(d):.1f},{y(s):.1f}" for d, s in enumerate(line.shares))
        name = escape(line.label)
        parts.append(f'<g class="line"><title>{name}</title>')
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2.5"'
            f'{dashes} stroke-linejoin="round"/>'
        )
        if curve.days <= 31:  # hover targets, one per day, while they stay apart
            for day, (share, count) in enumerate(zip(line.shares, line.recovered, strict=True)):
                parts.append(
                    f'<circle cx="{x(day):.1f}" cy="{y(share):.1f}" r="2.5" fill="{colour}">'
                    f"<title>{name}, day {day}: {share:.1%} ({count} of {line.cases})</title>"
                    "</circle>"
                )
        parts.append("</g>")
        legend_y = TOP + 8 + index * LEGEND_ROW
        legend_x = LEFT + plot_w + 20
        parts.append(
            f'<line x1="{legend_x}" y1="{legend_y}" x2="{legend_x + 24}" y2="{legend_y}" '
            f'stroke="{colour}" stroke-width="2.5"{dashes}/>'
        )
        parts.append(f'<text x="{legend_x + 32}" y="{legend_y + 4}">{name}</text>')
        parts.append(
            f'<text x="{legend_x + 32}" y="{legend_y + 19}" class="sub">'
            f"{line.shares[-1]:.1%} of {line.cases} by day {curve.days}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _table(curve: Curve) -> str:
    """The shares at days 7, 14, 30 and the last day, for readers who want the figures."""
    days = sorted({d for d in (7, 14, 30) if d < curve.days} | {curve.days})
    head = "".join(f"<th>day {d}</th>" for d in days)
    rows = [
        f"<tr><td>{escape(line.label)}</td><td>{line.cases}</td>"
        + "".join(f"<td>{line.shares[d]:.1%}</td>" for d in days)
        + "</tr>"
        for line in curve.lines
    ]
    return "\n".join(
        ["<table>", f"<tr><th>{escape(curve.by)}</th><th>cases</th>{head}</tr>", *rows, "</table>"]
    )


def _style(index: int) -> tuple[str, str]:
    return COLOURS[index % len(COLOURS)], DASHES[index // len(COLOURS) % len(DASHES)]


def _day_step(days: int) -> int:
    """Gridline spacing in days: at most about ten vertical lines."""
    return next((s for s in (1, 2, 5, 7, 14, 30, 60, 90) if days / s <= 10), math.ceil(days / 10))
