"""The retry model: how likely a charge is to pass, fitted on this business's own attempts.

Gradient-boosted trees (scikit-learn's `HistGradientBoostingClassifier`): they learn how
features act together (insufficient funds clears near *this customer's* payday, a do-not-honor
does not care), handle missing values (a customer with no payment history) and categories
natively, and their log-loss fit gives chances, not just a ranking. Each attempt is weighed by
the inverse of the chance its time had of being chosen (capped at `MAX_WEIGHT`), so the few
explored times count for the many the greedy choice would have skipped.

Pure: no I/O and no Temporal import (files are `activities.retry_training`'s job). Not imported
by the workflow: the planner (`workflows.retry_planner`) takes a scorer, and the activity and
the simulator pass this one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

import numpy as np
from pydantic import AwareDatetime, BaseModel, Field
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from workflows.retry_planner import attempt_features
from workflows.smart_retry import CATEGORICAL, FEATURES, AttemptRecord, FeatureBlock

MAX_WEIGHT = 20.0
"""An explored attempt counts for at most this many: a handful of lucky draws cannot steer."""

MIN_CATEGORY = 20
"""A category seen fewer times than this is "other": too rare to learn on its own."""

MAX_CATEGORIES = 60
"""At most this many values per category feature (the rest are "other")."""

_OTHER = "other"


class RetryModelInfo(BaseModel):
    """What a model file says of itself: which version, fitted when, on what."""

    version: int = Field(ge=1)
    trained_at: AwareDatetime
    trained_on: int = Field(ge=0, description="Attempts in the history.")
    approved: int = Field(ge=0, description="Approved attempts in the history.")
    features: list[str] = Field(default_factory=lambda: list(FEATURES))
    categories: dict[str, list[str]] = Field(
        default_factory=dict, description="Category feature → the values it knows, in order."
    )


class RetryModel:
    """A fitted model: `success_chances` for the planner, `info` for people."""

    def __init__(self, info: RetryModelInfo, estimator: HistGradientBoostingClassifier) -> None:
        self.info = info
        self.estimator = estimator
        self._codes = {
            name: {value: float(i) for i, value in enumerate(values)}
            for name, values in info.categories.items()
        }

    @property
    def version(self) -> int:
        return self.info.version

    @property
    def trained_on(self) -> int:
        return self.info.trained_on

    def success_chances(self, blocks: Sequence[FeatureBlock]) -> list[float]:
        """The chance that each time of each block passes, blocks one after another."""
        matrix = self.encode(blocks)
        if not len(matrix):
            return []
        # One thread: OpenMP threads spin against each other on a busy machine (6x slower on
        # two shared cores), and planning is never one big batch in a worker.
        with threadpool_limits(limits=1, user_api="openmp"):
            return self.estimator.predict_proba(matrix)[:, 1].tolist()

    def encode(self, blocks: Sequence[FeatureBlock]) -> np.ndarray:
        """Blocks as the trees read them: categories as codes, one row per time."""
        table = [self._codes[name] for name in CATEGORICAL]
        width = len(CATEGORICAL)
        parts = []
        for case, times in blocks:
            codes = [table[i].get(case[i], table[i][_OTHER]) for i in range(width)]
            head = np.asarray([*codes, *case[width:]], dtype=np.float64)
            parts.append(np.hstack([np.broadcast_to(head, (len(times), len(head))), times]))
        if not parts:
            return np.empty((0, len(FEATURES)))
        return np.vstack(parts)


def fit(history: Sequence[AttemptRecord], version: int, now: datetime) -> RetryModel:
    """Fit a model on `history`; deterministic for a given history, whatever its order."""
    ordered = sorted(history, key=lambda r: (r.at, r.facts.case_id, r.facts.attempt))
    blocks = [attempt_features(record) for record in ordered]
    categories = {
        name: _vocabulary(block.case[i] for block in blocks) for i, name in enumerate(CATEGORICAL)
    }
    info = RetryModelInfo(
        version=version,
        trained_at=now,
        trained_on=len(ordered),
        approved=sum(record.approved for record in ordered),
        categories=categories,
    )
    estimator = HistGradientBoostingClassifier(
        learning_rate=0.08,
        max_iter=200,
        max_leaf_nodes=15,
        min_samples_leaf=40,
        l2_regularization=1.0,
        categorical_features=[name in CATEGORICAL for name in FEATURES],
        early_stopping=len(ordered) >= 2000,
        validation_fraction=0.15,
        n_iter_no_change=15,
        random_state=0,
    )
    model = RetryModel(info, estimator)
    labels = np.asarray([record.approved for record in ordered], dtype=np.int64)
    if labels.min(initial=1) == labels.max(initial=0):
        raise ValueError("training needs both approved and declined attempts")
    matrix = model.encode(blocks)
    # A feature no attempt knows (no customer with a payment history) cannot be binned.
    matrix[:, np.isnan(matrix).all(axis=0)] = 0.0
    estimator.fit(matrix, labels, sample_weight=weights(ordered))
    return model


def weights(history: Sequence[AttemptRecord]) -> np.ndarray:
    """Each attempt's weight: the inverse of its time's chance of being chosen, capped at
    `MAX_WEIGHT`, scaled to average 1."""
    raw = np.asarray([min(1 / r.propensity, MAX_WEIGHT) for r in history], dtype=np.float64)
    return raw / raw.mean() if len(raw) else raw


def _vocabulary(values: object) -> list[str]:
    counts = Counter(values)
    common = [v for v, n in counts.most_common(MAX_CATEGORIES) if n >= MIN_CATEGORY]
    return [*sorted(v for v in common if v != _OTHER), _OTHER]


class CalibrationBand(BaseModel):
    """Attempts whose predicted chance fell in one band: predicted against what happened."""

    low: float
    high: float
    attempts: int
    predicted: float = Field(description="Weighted mean predicted chance.")
    observed: float = Field(description="Weighted share approved.")


class Evaluation(BaseModel):
    """How well a model predicts held-out attempts, every figure weighed like training."""

    attempts: int
    approved: int
    log_loss: float = Field(description="Weighted mean log loss of the model (lower is better).")
    base_log_loss: float = Field(description="The same for always predicting the base rate.")
    auc: float | None = Field(description="Chance a passing attempt is rated above a failing one.")
    calibration: list[CalibrationBand]

    @property
    def skill(self) -> float:
        """Share of the base rate's log loss the model removes (0: no better; 1: perfect)."""
        return 1 - self.log_loss / self.base_log_loss if self.base_log_loss else 0.0


def evaluate(model: RetryModel, history: Sequence[AttemptRecord], bands: int = 5) -> Evaluation:
    """Score `model` on `history` (attempts it was not fitted on)."""
    if not history:
        raise ValueError("nothing to evaluate on: no attempts")
    w = weights(history)
    y = np.asarray([r.approved for r in history], dtype=np.float64)
    p = np.clip(
        np.asarray(model.success_chances([attempt_features(r) for r in history])), 1e-6, 1 - 1e-6
    )
    base = np.clip(np.average(y, weights=w), 1e-6, 1 - 1e-6)
    edges = np.quantile(p, np.linspace(0, 1, bands + 1))
    calibration = []
    for i in range(bands):
        inside = (p >= edges[i]) & ((p <= edges[i + 1]) if i == bands - 1 else (p < edges[i + 1]))
        if inside.any():
            calibration.append(
                CalibrationBand(
                    low=float(edges[i]),
                    high=float(edges[i + 1]),
                    attempts=int(inside.sum()),
                    predicted=float(np.average(p[inside], weights=w[inside])),
                    observed=float(np.average(y[inside], weights=w[inside])),
                )
            )
    return Evaluation(
        attempts=len(history),
        approved=int(y.sum()),
        log_loss=_log_loss(y, p, w),
        base_log_loss=_log_loss(y, np.full_like(p, base), w),
        auc=_auc(y, p, w),
        calibration=calibration,
    )


def _log_loss(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> float:
    return float(-np.average(y * np.log(p) + (1 - y) * np.log(1 - p), weights=w))


def _auc(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> float | None:
    """Weighted area under the ROC curve; None when one class is missing."""
    positive, negative = w[y == 1].sum(), w[y == 0].sum()
    if not positive or not negative:
        return None
    order = np.argsort(p, kind="stable")
    p, y, w = p[order], y[order], w[order]
    wins = 0.0
    below = 0.0  # weight of negatives with a lower score
    i = 0
    while i < len(p):
        j = i
        while j < len(p) and p[j] == p[i]:
            j += 1
        pos = w[i:j][y[i:j] == 1].sum()
        neg = w[i:j][y[i:j] == 0].sum()
        wins += pos * (below + neg / 2)  # ties count half
        below += neg
        i = j
    return float(wins / (positive * negative))
