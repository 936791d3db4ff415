"""Retry models on disk: train one from the store's attempt history, find the newest.

    dunning model train [--database-url URL] [--models-dir DIR]

reads every recorded charge attempt with its case's decline and its customer's time zone,
fits `workflows.smart_retry.fit`, and writes `retry-model-v<N>.json` (N one above the newest
already there). Workers pick the newest file up for each new smart-timed case; running
cases keep the plan they were given.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from activities.notify.contacts import contact_zones
from activities.store import CaseStore, utcnow
from config.errors import explain
from config.settings import Settings
from workflows.policy import DeclineClass
from workflows.smart_retry import MIN_HISTORY, AttemptRecord, RetryModel, fit

PROG = "dunning model train"
MODEL_FILE = re.compile(r"^retry-model-v([1-9][0-9]*)\.json$")

log = logging.getLogger("dunning.retry_models")


class TrainingError(Exception):
    """Nothing to train on, or nowhere to write the model; the message says which."""


class ModelFileError(Exception):
    """A retry-model file cannot be read as a model; the message names the file."""


# Model files -------------------------------------------------------------------------------


def model_files(models_dir: Path) -> dict[int, Path]:
    """Version → file of every retry-model file in `models_dir` (none when it is missing)."""
    if not models_dir.is_dir():
        return {}
    found = {}
    for path in models_dir.iterdir():
        if match := MODEL_FILE.match(path.name):
            found[int(match.group(1))] = path
    return found


def model_path(models_dir: Path, version: int) -> Path:
    """Where model `version` lives: ``<dir>/retry-model-v<version>.json``."""
    return models_dir / f"retry-model-v{version}.json"


def read_model(path: Path) -> RetryModel:
    """One model file, validated."""
    try:
        return RetryModel.model_validate_json(path.read_bytes())
    except ValidationError as err:
        raise ModelFileError(f"{path}: not a retry model: {explain(err)}") from err
    except OSError as err:
        raise ModelFileError(f"{path}: cannot read: {err.strerror or err}") from err


def newest_model(models_dir: Path) -> RetryModel | None:
    """The highest-versioned model in `models_dir`, or None when there is none."""
    files = model_files(models_dir)
    if not files:
        return None
    return read_model(files[max(files)])


def write_model(model: RetryModel, models_dir: Path) -> Path:
    """Write `model` as its version's file, never over an existing one. Written whole, then
    linked into place, so a worker never reads half a model."""
    models_dir.mkdir(parents=True, exist_ok=True)
    path = model_path(models_dir, model.version)
    with tempfile.NamedTemporaryFile(
        "w", dir=models_dir, prefix=".retry-model-", suffix=".tmp", delete=False, encoding="utf-8"
    ) as handle:
        handle.write(model.model_dump_json(indent=2))
    try:
        os.link(handle.name, path)
    except FileExistsError as err:
        raise TrainingError(f"{path} already exists: another training run wrote it") from err
    finally:
        os.unlink(handle.name)
    return path


# Training ----------------------------------------------------------------------------------


def attempt_history(store: CaseStore) -> list[AttemptRecord]:
    """Every recorded retry of a case's original card, with its case's opening decline and
    the customer's zone (their own, else their number's first; UTC when neither is known).

    The case row has no failure time or card brand: the case's opening time stands for the
    failure (a case opens within seconds of it) and the brand is unknown."""
    rows = store.attempt_history()
    history = []
    first_card: dict[str, str | None] = {}
    for attempt, case, customer in rows:
        # Charges of a new card nearly always pass: they would teach the model that late
        # days are good days to retry the card that failed. Only the original card counts.
        if first_card.setdefault(case.case_id, attempt.payment_method) != attempt.payment_method:
            continue
        zones = contact_zones(customer.time_zone, customer.phone) if customer else []
        history.append(
            AttemptRecord(
                case_id=case.case_id,
                at=attempt.at,
                approved=attempt.approved,
                attempt=attempt.attempt,
                failed_at=case.opened_at,
                decline_code=case.decline_code,
                decline_class=_decline_class(case.decline_class),
                amount=attempt.amount,
                currency=attempt.currency,
                time_zone=zones[0] if zones else None,
            )
        )
    return history


def train(store: CaseStore, models_dir: Path, now: datetime) -> Path:
    """Fit a model on the store's attempt history and write it as the next version."""
    history = attempt_history(store)
    if not history:
        raise TrainingError("nothing to train on: the store has no charge attempts yet")
    version = max(model_files(models_dir), default=0) + 1
    return write_model(fit(history, version, now), models_dir)


def _decline_class(value: str | None) -> DeclineClass | None:
    try:
        return DeclineClass(value) if value else None
    except ValueError:
        return None  # a class this version no longer knows: leave it unknown


# Command -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """`dunning model train`: the exit code; a mistake is one line on stderr."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Fit a retry model on the recorded charge attempts."
    )
    parser.add_argument("--database-url", help="the store to read (default: DATABASE_URL)")
    parser.add_argument(
        "--models-dir", type=Path, help="where models go (default: RETRY_MODELS_DIR)"
    )
    args = parser.parse_args(argv)
    try:
        if args.database_url is None or args.models_dir is None:
            settings = Settings()
            args.database_url = args.database_url or settings.database_url
            args.models_dir = args.models_dir or settings.retry_models_dir
        store = CaseStore(args.database_url)
        store.upgrade()
        path = train(store, args.models_dir, utcnow())
        model = read_model(path)
    except ValidationError as err:
        return _fail(f"invalid settings: {explain(err)}")
    except SQLAlchemyError as err:
        where = args.database_url.partition("://")[0] or "?"
        # Not the error's message: it may quote a statement's values.
        return _fail(f"cannot read the store ({where}: {type(err).__name__}); check the URL")
    except OSError as err:
        return _fail(f"cannot write the model: {err.strerror or err} ({err.filename or ''})")
    except (TrainingError, ModelFileError, ValueError) as err:
        return _fail(str(err))
    note = ""
    if model.trained_on < MIN_HISTORY:
        note = f"; below {MIN_HISTORY} attempts smart cases keep the fixed schedule"
    print(
        f"wrote {path}: model v{model.version} from {model.trained_on} attempts "
        f"(approved {model.base_rate:.1%}){note}"
    )
    return 0


def _fail(message: str) -> int:
    print(f"{PROG}: {' '.join(message.split())}", file=sys.stderr)
    return 1
