"""Retry models on disk: the files, the attempt history they are fitted on, and how well
they predict it.

A model is `retry-model-v<N>.skops` in `RETRY_MODELS_DIR`, written by `dunning model train`
with skops (scikit-learn's secure format): loading trusts only the types a fitted
`HistGradientBoostingClassifier` holds, so a tampered file is refused instead of running what
it carries, as a pickle would. A file is written whole, then linked into place, and never
replaced: the version a case is pinned to stays what it was. Workers plan a new case with
the newest file, and a case keeps the version it was first planned with.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from activities.store import CaseStore, ChargeAttempt
from config.errors import explain, one_line
from workflows.smart_retry import MIN_HISTORY, AttemptRecord, PlanFacts

# scikit-learn and skops take seconds to import, and every process that imports the workflow
# (which names the activities) would pay it: they are imported where a model is read,
# written or fitted.
if TYPE_CHECKING:
    from workflows.retry_model import Evaluation, RetryModel

TRUSTED_TYPES = [
    "functools.partial",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
]
"""What a model file may hold beyond what skops trusts by itself (numpy arrays, scikit-learn
estimators): the fitted trees' own types. Anything else in a file refuses it."""


class TrainingError(Exception):
    """Too little to train on, or nowhere to write the model; the message says which."""


class ModelFileError(Exception):
    """A model file cannot be read as a model; the one-line message names the file."""


# Model files -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFiles:
    """One kind of model file: ``<stem>-v<N><suffix>`` in a models folder, one per version,
    written whole and never replaced (retry models, message models)."""

    stem: str
    suffix: str

    def versions(self, models_dir: Path) -> dict[int, Path]:
        """Version → file of every file of this kind in `models_dir` (none when missing)."""
        if not models_dir.is_dir():
            return {}
        found = {}
        for path in models_dir.iterdir():
            if (version := self.version_of(path)) is not None:
                found[version] = path
        return found

    def path(self, models_dir: Path, version: int) -> Path:
        """Where `version` lives: ``<dir>/<stem>-v<version><suffix>``."""
        return models_dir / f"{self.stem}-v{version}{self.suffix}"

    def version_of(self, path: Path) -> int | None:
        """The version a file's name says, or None when it is not this kind's."""
        name = rf"{re.escape(self.stem)}-v([1-9][0-9]*){re.escape(self.suffix)}"
        match = re.fullmatch(name, path.name)
        return int(match.group(1)) if match else None

    def next_version(self, models_dir: Path) -> int:
        """The version the next training run writes."""
        return max(self.versions(models_dir), default=0) + 1

    def write(self, models_dir: Path, version: int, dump: Callable[[Path], None]) -> Path:
        """Write `version` with `dump` (given a temporary file) and link it into place, never
        over an existing one, so a worker never reads half a model."""
        models_dir.mkdir(parents=True, exist_ok=True)
        path = self.path(models_dir, version)
        handle, temporary = tempfile.mkstemp(dir=models_dir, prefix=f".{self.stem}-", suffix=".tmp")
        os.close(handle)
        try:
            dump(Path(temporary))
            os.link(temporary, path)
        except FileExistsError as err:
            raise TrainingError(f"{path} already exists: another training run wrote it") from err
        finally:
            os.unlink(temporary)
        return path


RETRY_FILES = ModelFiles("retry-model", ".skops")
"""Retry models. Files of older releases (`retry-model-v<N>.json`) are not models any more:
retrain."""


def read_model(path: Path) -> RetryModel:
    """One model file, checked: only trusted types, a model's info and a fitted estimator."""
    import skops.io
    from sklearn.ensemble import HistGradientBoostingClassifier

    from workflows.retry_model import RetryModel, RetryModelInfo

    try:
        content = skops.io.load(path, trusted=TRUSTED_TYPES)
        info = RetryModelInfo.model_validate_json(content["info"])
        estimator = content["estimator"]
    except OSError as err:
        raise ModelFileError(f"{path}: cannot read: {err.strerror or err}") from err
    except ValidationError as err:
        raise ModelFileError(f"{path}: not a retry model: {explain(err)}") from err
    except Exception as err:  # skops refuses untrusted types; a damaged zip fails in many ways
        raise ModelFileError(f"{path}: not a retry model: {one_line(err, 200)}") from err
    if not isinstance(estimator, HistGradientBoostingClassifier):
        raise ModelFileError(f"{path}: not a retry model: holds {type(estimator).__name__}")
    if info.version != RETRY_FILES.version_of(path):
        raise ModelFileError(f"{path}: holds model v{info.version}, not the file's version")
    return RetryModel(info, estimator)


Reader = Callable[[Path], "RetryModel"]


def newest_model(models_dir: Path, read: Reader = read_model) -> RetryModel | None:
    """The highest-versioned model in `models_dir`, or None when there is none."""
    files = RETRY_FILES.versions(models_dir)
    return read(files[max(files)]) if files else None


def model_version(models_dir: Path, version: int, read: Reader = read_model) -> RetryModel:
    """Model `version` (the one a case is pinned to); `ModelFileError` when it is gone."""
    return read(RETRY_FILES.path(models_dir, version))


def write_model(model: RetryModel, models_dir: Path) -> Path:
    """Write `model` as its version's file, never over an existing one. Written whole, then
    linked into place, so a worker never reads half a model."""
    import skops.io

    content = {"info": model.info.model_dump_json(), "estimator": model.estimator}
    return RETRY_FILES.write(models_dir, model.version, lambda path: skops.io.dump(content, path))


class ModelCache:
    """Models read once per file version (path and modification time): loading one costs
    about 80 ms, and a worker plans after every declined retry. Safe across activity threads."""

    def __init__(self) -> None:
        self._models: dict[Path, tuple[int, RetryModel]] = {}
        self._lock = threading.Lock()

    def read(self, path: Path) -> RetryModel:
        """`read_model(path)`, from memory while the file is unchanged."""
        try:
            stamp = path.stat().st_mtime_ns
        except OSError as err:
            raise ModelFileError(f"{path}: cannot read: {err.strerror or err}") from err
        with self._lock:
            cached = self._models.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        model = read_model(path)
        with self._lock:
            self._models[path] = (stamp, model)
        return model


# Training and evaluation -------------------------------------------------------------------


def attempt_history(store: CaseStore) -> list[AttemptRecord]:
    """The store's scheduled retries of each case's original card, with the planner's facts
    from just before each charge, oldest first.

    A new card's charges nearly always pass: they would teach the model that late days are
    good days to retry the card that failed, so only the card of a case's first charge counts."""
    history = []
    first_card: dict[str, str | None] = {}
    for row in store.attempt_history():
        card = first_card.setdefault(row.case_id, row.payment_method)
        if row.scheduled and row.plan_facts is not None and row.payment_method == card:
            history.append(_record(row))
    return sorted(history, key=lambda r: r.at)


def _record(row: ChargeAttempt) -> AttemptRecord:
    return AttemptRecord(
        facts=PlanFacts.model_validate(row.plan_facts),
        at=row.at,
        approved=row.approved,
        propensity=row.propensity or 1.0,
    )


def check_history(history: Sequence[AttemptRecord]) -> None:
    """`TrainingError` unless `history` can teach a model: enough attempts, both outcomes."""
    if len(history) < MIN_HISTORY:
        raise TrainingError(
            f"only {len(history)} scheduled retries in the store; a model needs {MIN_HISTORY}"
        )
    _both_outcomes(history, "retries")


def _both_outcomes(history: Sequence[AttemptRecord], which: str) -> None:
    approved = sum(r.approved for r in history)
    if approved in (0, len(history)):
        outcome = "approved" if approved else "declined"
        raise TrainingError(f"all {len(history)} {which} were {outcome}: nothing to tell apart")


def split_by_time(
    history: Sequence[AttemptRecord], holdout: float
) -> tuple[list[AttemptRecord], list[AttemptRecord]]:
    """(older, newest): the newest `holdout` share of `history` held out, as the future is."""
    ordered = sorted(history, key=lambda r: r.at)
    cut = len(ordered) - round(len(ordered) * holdout)
    return ordered[:cut], ordered[cut:]


@dataclass(frozen=True)
class Trained:
    """What `train` did: the model written and where, and its figures on the held-out
    attempts (None when none were held out) after fitting on the `fitted_on` older ones."""

    model: RetryModel
    path: Path
    held_out: Evaluation | None
    fitted_on: int


def train(store: CaseStore, models_dir: Path, holdout: float, now: datetime) -> Trained:
    """Fit on all but the newest `holdout` share of the store's history and evaluate on it,
    then refit on all of it and write that as the next version."""
    from workflows.retry_model import evaluate, fit

    history = attempt_history(store)
    check_history(history)
    version = RETRY_FILES.next_version(models_dir)
    held_out = None
    older, newest = split_by_time(history, holdout)
    if newest:
        _both_outcomes(older, "retries before the held-out share")
        held_out = evaluate(fit(older, version, now), newest)
    model = fit(history, version, now)
    return Trained(model, write_model(model, models_dir), held_out, len(older))


def evaluate_on_store(store: CaseStore, model: RetryModel) -> Evaluation:
    """`model`'s figures on every scheduled retry in the store."""
    from workflows.retry_model import evaluate

    history = attempt_history(store)
    if not history:
        raise TrainingError("nothing to evaluate on: the store has no scheduled retries yet")
    return evaluate(model, history)


def describe(evaluation: Evaluation) -> list[str]:
    """The figures a person reads, one line each: attempts, log loss against the base rate,
    skill, AUC and calibration bands (every figure weighed by inverse propensity)."""
    share = evaluation.approved / evaluation.attempts
    auc = "n/a (one outcome only)" if evaluation.auc is None else f"{evaluation.auc:.3f}"
    lines = [
        f"attempts {evaluation.attempts}, approved {evaluation.approved} ({share:.1%})",
        f"log loss {evaluation.log_loss:.4f} (base rate {evaluation.base_log_loss:.4f}), "
        f"skill {evaluation.skill:.1%}",
        f"AUC {auc}",
        "calibration (chance band: attempts, predicted, observed):",
    ]
    lines += [
        f"  {band.low:.2f}-{band.high:.2f}: {band.attempts:>5}, "
        f"{band.predicted:6.1%}, {band.observed:6.1%}"
        for band in evaluation.calibration
    ]
    return lines
