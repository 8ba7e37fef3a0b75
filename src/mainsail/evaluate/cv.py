"""k-fold cross-validation on train+validation rows, folded the way the data was split.

Grouped splits fold by entity (StratifiedGroupKFold / GroupKFold), time splits fold forward in
time, the others stratify (classification) or shuffle (regression). The preprocessor is cloned
and fitted inside every fold, so no fold's validation rows leak into its preprocessing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mainsail.data.prepared import DataStageResult
from mainsail.evaluate.metrics import all_metrics, model_output
from mainsail.train.candidates import fit_arrays, oversample_indices, sample_weights
from mainsail.train.model import to_dense
from mainsail.train.threads import limit_threads


@dataclass
class CVResult:
    """Per-fold metrics of one candidate."""

    family: str
    folds: list[dict[str, float]]
    n_train: float
    """Mean training rows per fold (for the Nadeau-Bengio correction)."""
    n_test: float
    """Mean validation rows per fold."""
    fit_seconds: list[float] = field(default_factory=list)

    def scores(self, metric: str) -> np.ndarray:
        return np.array([f[metric] for f in self.folds], dtype=np.float64)

    def summary(self) -> dict[str, dict[str, float]]:
        keys = self.folds[0].keys() if self.folds else []
        return {
            k: {
                "mean": float(np.mean(self.scores(k))),
                "std": float(np.std(self.scores(k), ddof=1)),
            }
            for k in keys
        }


def cv_rows(data: DataStageResult) -> np.ndarray:
    """Row positions that cross-validation uses: train and validation (never test)."""
    return np.sort(np.concatenate([data.split.train, data.split.valid]))


def cv_folds(
    data: DataStageResult, n_splits: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit, score) positions into `data.frame`, matching the split strategy."""
    from sklearn.model_selection import (
        GroupKFold,
        KFold,
        StratifiedGroupKFold,
        StratifiedKFold,
        TimeSeriesSplit,
    )

    rows = cv_rows(data)
    y = data.frame[data.target].to_numpy()[rows]
    groups = data.split.groups[rows] if data.split.groups is not None else None
    clf = data.problem_type == "classification"
    splitter: Any
    if data.split.strategy == "time":
        ts_col = data.schema.event_timestamp
        if ts_col is not None and ts_col in data.frame:
            order = np.argsort(data.frame[ts_col].to_numpy()[rows], kind="stable")
            rows, y = rows[order], y[order]
            groups = None
        splitter = TimeSeriesSplit(n_splits=n_splits)
    elif groups is not None:
        n_groups = len(pd.unique(groups))
        if n_groups < n_splits:
            raise ValueError(
                f"cross-validation needs at least {n_splits} entities, the data has {n_groups}"
            )
        splitter = (
            StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed)
            if clf
            else GroupKFold(n_splits)
        )
    else:
        splitter = (
            StratifiedKFold(n_splits, shuffle=True, random_state=seed)
            if clf
            else KFold(n_splits, shuffle=True, random_state=seed)
        )
    return [(rows[a], rows[b]) for a, b in splitter.split(np.zeros(len(rows)), y, groups)]


def fit_fold(
    data: DataStageResult,
    family: str,
    params: dict[str, Any],
    rows: np.ndarray,
    seed: int,
    threads: int = 1,
) -> tuple[Any, Any]:
    """Clone and fit the preprocessor on `rows`, then the family; returns both."""
    from sklearn.base import clone

    pre = clone(data.preprocessor)
    X = data.frame.iloc[rows][data.features]
    y = data.frame[data.target].to_numpy()[rows]
    Xt = to_dense(pre.fit_transform(X, y))
    weights = (
        sample_weights(y, data.class_weight) if data.problem_type == "classification" else None
    )
    if data.oversample and data.problem_type == "classification":
        keep = oversample_indices(y, seed)
        Xt, y = Xt[keep], y[keep]
        weights = None if weights is None else weights[keep]
    with limit_threads(threads, torch_too=family == "mlp"):
        model = fit_arrays(
            family, params, Xt, y, problem_type=data.problem_type, seed=seed, sample_weight=weights
        )
    return pre, model


def cross_validate(
    data: DataStageResult,
    family: str,
    params: dict[str, Any],
    folds: list[tuple[np.ndarray, np.ndarray]],
    *,
    seed: int,
    classes: np.ndarray | None,
    on_fold: Callable[[], None] | None = None,
    threads: int = 1,
) -> CVResult:
    """Metrics of one candidate on every fold."""
    import time

    results, secs = [], []
    y_all = data.frame[data.target].to_numpy()
    for fit_rows, score_rows in folds:
        start = time.perf_counter()
        pre, model = fit_fold(data, family, params, fit_rows, seed, threads)
        secs.append(time.perf_counter() - start)
        Xs = to_dense(pre.transform(data.frame.iloc[score_rows][data.features]))
        out = model_output(model, Xs, data.problem_type)
        if classes is not None:
            out = _align_proba(out, np.asarray(model.classes_), classes)
        results.append(all_metrics(data.problem_type, y_all[score_rows], out, classes))
        if on_fold is not None:
            on_fold()
    n_train = float(np.mean([len(a) for a, _ in folds]))
    n_test = float(np.mean([len(b) for _, b in folds]))
    return CVResult(family, results, n_train, n_test, secs)


def _align_proba(proba: np.ndarray, have: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Put probability columns in the order of `want` (a fold may miss a rare class)."""
    if len(have) == len(want) and np.array_equal(have, want):
        return proba
    out = np.zeros((len(proba), len(want)))
    index = {c: i for i, c in enumerate(want.tolist())}
    for j, c in enumerate(have.tolist()):
        out[:, index[c]] = proba[:, j]
    return out
