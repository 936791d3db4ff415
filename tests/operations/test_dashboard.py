"""The Grafana dashboard in the repo reads the metrics that /metrics exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from activities import metrics

DASHBOARD = Path(__file__).parents[2] / "ops" / "grafana" / "dunning.json"


def test_the_dashboard_reads_only_dunning_metrics_that_exist() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    read = {name.removesuffix("_total") for q in queries for name in re.findall(r"dunning_\w+", q)}
    exposed = {family.name for family in metrics.COUNTERS.collect()} | {"dunning_cases_open"}

    assert read == exposed  # every metric is on the dashboard, and nothing else
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {"Workflow task latency p95 (SDK)", "Activity failures (SDK)"} <= titles
