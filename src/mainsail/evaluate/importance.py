"""Permutation importance on raw features, and the native importance a model may have."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mainsail.evaluate.metrics import greater_is_better, metric_fn, model_output


def permutation_importance(
    model: Any,
    X: pd.DataFrame,
    y: np.ndarray,
    *,
    metric: str,
    problem_type: str,
    repeats: int,
    seed: int,
) -> pd.DataFrame:
    """Drop of `metric` when one raw feature column is shuffled (mean and std over repeats).

    Works on the raw frame, so a categorical column counts once however many one-hot columns
    the preprocessor makes of it. Positive = the model relies on the feature.
    """
    classes = getattr(model, "classes_", None)
    fn = metric_fn(metric, problem_type, classes)
    sign = 1.0 if greater_is_better(metric) else -1.0
    base = fn(y, model_output(model, X, problem_type))
    rng = np.random.default_rng(seed)
    rows = []
    for col in X.columns:
        drops = []
        for _ in range(repeats):
            shuffled = X.copy()
            shuffled[col] = X[col].to_numpy()[rng.permutation(len(X))]
            drops.append(sign * (base - fn(y, model_output(model, shuffled, problem_type))))
        rows.append(
            {"feature": col, "importance": float(np.mean(drops)), "std": float(np.std(drops))}
        )
    return (
        pd.DataFrame(rows)
        .sort_values(["importance", "feature"], ascending=[False, True], kind="stable")
        .reset_index(drop=True)
    )


def native_importance(model: Any) -> pd.DataFrame | None:
    """Impurity importance (forests) or |coefficient| (linear), on preprocessed columns."""
    est = getattr(model, "estimator", model)
    pre = getattr(model, "preprocessor", None)
    if hasattr(est, "feature_importances_"):
        values = np.asarray(est.feature_importances_, dtype=np.float64)
        kind = "impurity"
    elif hasattr(est, "coef_"):
        coef = np.atleast_2d(np.asarray(est.coef_, dtype=np.float64))
        values = np.abs(coef).mean(axis=0)
        kind = "abs_coefficient"
    else:
        return None
    try:
        names = [str(n) for n in pre.get_feature_names_out()] if pre is not None else []
    except (AttributeError, ValueError):
        names = []
    if len(names) != len(values):
        names = [f"x{i}" for i in range(len(values))]
    frame = pd.DataFrame({"feature": names, "importance": values, "kind": kind})
    return frame.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)
