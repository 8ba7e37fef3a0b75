"""k-fold cross-validation on train+validation rows, folded the way the data was split.

Grouped splits fold by entity (StratifiedGroupKFold / GroupKFold), time splits fold forward in
time (with an entity key, a fold's fitting rows lose every entity that its scoring rows hold, as
the split itself keeps entities apart), the others stratify (classification) or shuffle
(regression). The preprocessor is cloned and fitted inside every fold, so no fold's validation
rows leak into its preprocessing. Above `evaluate.cv_max_rows` the folds are cut from a seeded
sample of the rows (in time order for time splits), which keeps CV affordable on large data.
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
from mainsail.train.model import align_columns, to_dense
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
    recent: int | None = None
    """Time splits: the selection estimate is the mean of this many latest folds."""
    oof_rows: np.ndarray | None = None
    """Row positions scored by the folds, in fold order (a row at most once)."""
    oof_output: np.ndarray | None = None
    """The fold models' outputs on `oof_rows` (out-of-fold: each row scored by a model that did
    not see it); the served model's calibration is fitted on them."""

    def scores(self, metric: str) -> np.ndarray:
        return np.array([f[metric] for f in self.folds], dtype=np.float64)

    def estimate(self, metric: str) -> float:
        """What the selection ranks by: the mean over all folds, or over the `recent` latest
        folds of a time split (what predicts the most recent period)."""
        scores = self.scores(metric)
        if self.recent:
            scores = scores[-self.recent :]
        return float(np.mean(scores))

    def interval(self, metric: str, level: float = 0.95) -> tuple[float, float]:
        """Interval of the selection estimate: t-quantile times the standard error of a mean of
        the folds used (the recent ones for a time split), the spread taken from every fold and
        inflated by the Nadeau-Bengio n_test / n_train term (the folds share rows)."""
        from scipy import stats

        scores = self.scores(metric)
        k = len(scores)
        if k < 2:
            return (float("nan"), float("nan"))
        used = min(self.recent or k, k)
        sd = float(np.std(scores, ddof=1))
        se = sd * float(np.sqrt(1.0 / used + self.n_test / max(self.n_train, 1.0)))
        q = float(stats.t.ppf(0.5 + level / 2, df=k - 1))
        mid = self.estimate(metric)
        return (mid - q * se, mid + q * se)

    def summary(self) -> dict[str, dict[str, float]]:
        keys = self.folds[0].keys() if self.folds else []
        out = {
            k: {
                "mean": float(np.mean(self.scores(k))),
                "std": float(np.std(self.scores(k), ddof=1)),
            }
            for k in keys
        }
        if self.recent:
            for k in keys:
                out[k]["recent_mean"] = self.estimate(k)
        return out


def cv_rows(data: DataStageResult, max_rows: int | None = None, seed: int = 0) -> np.ndarray:
    """Row positions that cross-validation uses: train and validation (never test); a seeded
    sample of `max_rows` of them when there are more."""
    rows = np.sort(np.concatenate([data.split.train, data.split.valid]))
    if max_rows is not None and len(rows) > max_rows:
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(rows, max_rows, replace=False))
    return rows


def cv_folds(
    data: DataStageResult, n_splits: int, seed: int, max_rows: int | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit, score) positions into `data.frame`, matching the split strategy."""
    from sklearn.model_selection import (
        GroupKFold,
        KFold,
        StratifiedGroupKFold,
        StratifiedKFold,
        TimeSeriesSplit,
    )

    rows = cv_rows(data, max_rows, seed)
    y = data.frame[data.target].to_numpy()[rows]
    groups = data.split.groups[rows] if data.split.groups is not None else None
    clf = data.problem_type == "classification"
    splitter: Any
    if data.split.strategy == "time":
        ts_col = data.schema.event_timestamp
        if ts_col is not None and ts_col in data.frame:
            order = np.argsort(data.frame[ts_col].to_numpy()[rows], kind="stable")
            rows, y = rows[order], y[order]
            groups = groups[order] if groups is not None else None
        folds = TimeSeriesSplit(n_splits=n_splits).split(np.zeros(len(rows)))
        out = []
        for a, b in folds:
            if groups is not None:
                # The split's entity constraint, fold by fold: an entity scored in this fold
                # has none of its (older) rows among the fitting rows.
                a = a[~np.isin(groups[a], groups[b])]
                if len(a) == 0:
                    raise ValueError(
                        "a forward-in-time CV fold has no fitting rows left once the entities "
                        "of its scoring rows are removed; use fewer evaluate.cv_folds"
                    )
            out.append((rows[a], rows[b]))
        return out
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
            family,
            params,
            Xt,
            y,
            problem_type=data.problem_type,
            seed=seed,
            sample_weight=weights,
            threads=threads,
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
    recent: int | None = None,
) -> CVResult:
    """Metrics of one candidate on every fold (`recent`: see :attr:`CVResult.recent`)."""
    import time

    results, secs = [], []
    oof_rows, oof_out = [], []
    y_all = data.frame[data.target].to_numpy()
    for fit_rows, score_rows in folds:
        start = time.perf_counter()
        pre, model = fit_fold(data, family, params, fit_rows, seed, threads)
        secs.append(time.perf_counter() - start)
        Xs = to_dense(pre.transform(data.frame.iloc[score_rows][data.features]))
        out = model_output(model, Xs, data.problem_type)
        if classes is not None:
            out = align_columns(out, model.classes_, classes)
        results.append(all_metrics(data.problem_type, y_all[score_rows], out, classes))
        oof_rows.append(score_rows)
        oof_out.append(out)
        if on_fold is not None:
            on_fold()
    n_train = float(np.mean([len(a) for a, _ in folds]))
    n_test = float(np.mean([len(b) for _, b in folds]))
    return CVResult(
        family,
        results,
        n_train,
        n_test,
        secs,
        recent,
        np.concatenate(oof_rows) if oof_rows else None,
        np.concatenate(oof_out) if oof_out else None,
    )
