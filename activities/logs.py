"""How the worker and the receiver log: human text (the default) or, with LOG_FORMAT=json,
one JSON object per line for a log pipeline.

A JSON line holds time, level, logger, message and, inside a workflow or an activity, the
workflow id and the case id. Messages pass through the same scrubbing as stored text (no
email address, phone number or token survives), whatever the caller forgot.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

import temporalio.activity
import temporalio.workflow

from activities.notify.links import redact_tokens
from activities.scrub import scrubbed

TEXT_FORMAT = "%(asctime)s %(name)s %(message)s"
CASE_WORKFLOW_PREFIX = "dunning-"  # a case's workflow id is dunning-<case id> (intake/cases.py)


class JsonLines(logging.Formatter):
    """One JSON object per record: time, level, logger, message, [workflow_id, case_id],
    [error]."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": _clean(record.getMessage()),
        }
        workflow_id, workflow_type = _workflow_of(record)
        if workflow_id is not None:
            line["workflow_id"] = workflow_id
            if workflow_type == "DunningWorkflow":
                line["case_id"] = workflow_id.removeprefix(CASE_WORKFLOW_PREFIX)
        if record.exc_info:
            line["error"] = _clean(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False)


# Dates, times and IPv4 addresses look like phone numbers to the scrubber; they are kept.
_NOT_A_PHONE = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?!\d)"  # 2026-01-05 09:00
    r"|(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])"  # 127.0.0.1
)


def _clean(text: str) -> str:
    kept: list[str] = []

    def keep(match: re.Match[str]) -> str:
        kept.append(match.group())
        return chr(0xE000 + len(kept) - 1)  # a private-use character: no digit, no space

    text = scrubbed(redact_tokens(_NOT_A_PHONE.sub(keep, text)), limit=None)
    for index, original in enumerate(kept):
        text = text.replace(chr(0xE000 + index), original)
    return text


def _workflow_of(record: logging.LogRecord) -> tuple[str | None, str | None]:
    """The workflow a record was logged for: from the SDK's logger adapters' extra, else
    (a plain logger inside an activity) from the running activity."""
    for key in ("temporal_activity", "temporal_workflow"):
        info = getattr(record, key, None)
        if isinstance(info, dict) and info.get("workflow_id"):
            return info["workflow_id"], info.get("workflow_type")
    if temporalio.activity.in_activity():
        info = temporalio.activity.info()
        return info.workflow_id, info.workflow_type
    return None, None


def configure_logging(log_format: str, level: int = logging.INFO) -> None:
    """Log to stderr in `log_format` ("text" or "json"). In JSON, the SDK's adapters put
    workflow and activity details in the record's extra, not in the message."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonLines())
        temporalio.activity.logger.activity_info_on_message = False
        temporalio.workflow.logger.workflow_info_on_message = False
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
