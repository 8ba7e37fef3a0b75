"""Metrics per problem type, computed from labels and predictions (numpy + scikit-learn)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

CLASSIFICATION = ("roc_auc", "pr_auc", "f1", "log_loss", "accuracy", "balanced_accuracy", "ece")
REGRESSION = ("rmse", "mae", "r2")
#: Metrics where a smaller value is better.
LOWER_IS_BETTER = frozenset({"log_loss", "ece", "rmse", "mae"})


def greater_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, bins: int = 10) -> float:
    """ECE with equal-width bins on the predicted probability of the top class."""
    conf = proba.max(axis=1)
    pred = proba.argmax(axis=1)
    correct = (pred == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return float(ece)


def binary_roc_auc(codes: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney U statistic (ties count half): the same value as
    scikit-learn's, without its input checks, which dominate thousands of bootstrap calls."""
    from scipy.stats import rankdata

    pos = codes == 1
    n_pos = int(pos.sum())
    n_neg = len(codes) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _encode(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes.tolist())}
    try:
        return np.array([index[v] for v in np.asarray(y).tolist()], dtype=np.int64)
    except KeyError as err:
        raise ValueError(f"label {err.args[0]!r} is not one of the model's classes") from None


def classification_metric(
    name: str, y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray
) -> float:
    """One classification metric; `proba` columns follow `classes`."""
    from sklearn import metrics as skm

    codes = _encode(y_true, classes)
    pred = proba.argmax(axis=1)
    binary = proba.shape[1] == 2
    if name == "roc_auc":
        if len(np.unique(codes)) < 2:
            return float("nan")
        if binary:
            return binary_roc_auc(codes, proba[:, 1])
        return float(skm.roc_auc_score(codes, proba, multi_class="ovr", labels=range(len(classes))))
    if name == "pr_auc":
        if binary:
            return float(skm.average_precision_score(codes, proba[:, 1]))
        onehot = np.eye(len(classes))[codes]
        return float(skm.average_precision_score(onehot, proba, average="macro"))
    if name == "f1":
        return float(
            skm.f1_score(codes, pred, average="binary" if binary else "macro", zero_division=0)
        )
    if name == "log_loss":
        clipped = np.clip(proba, 1e-15, 1.0)
        return float(
            skm.log_loss(codes, clipped / clipped.sum(1, keepdims=True), labels=range(len(classes)))
        )
    if name == "accuracy":
        return float(skm.accuracy_score(codes, pred))
    if name == "balanced_accuracy":
        return float(skm.balanced_accuracy_score(codes, pred))
    if name == "ece":
        return expected_calibration_error(codes, proba)
    raise ValueError(f"unknown classification metric {name!r}; expected one of {CLASSIFICATION}")


def regression_metric(name: str, y_true: np.ndarray, pred: np.ndarray) -> float:
    """One regression metric."""
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    if name == "rmse":
        return float(np.sqrt(np.mean((y - p) ** 2)))
    if name == "mae":
        return float(np.mean(np.abs(y - p)))
    if name == "r2":
        ss = float(np.sum((y - y.mean()) ** 2))
        return float(1.0 - np.sum((y - p) ** 2) / ss) if ss > 0 else float("nan")
    raise ValueError(f"unknown regression metric {name!r}; expected one of {REGRESSION}")


def all_metrics(
    problem_type: str, y_true: np.ndarray, output: np.ndarray, classes: np.ndarray | None
) -> dict[str, float]:
    """Every metric of the problem type; `output` is proba (classification) or values."""
    if problem_type == "classification":
        assert classes is not None
        return {m: classification_metric(m, y_true, output, classes) for m in CLASSIFICATION}
    return {m: regression_metric(m, y_true, output) for m in REGRESSION}


def per_class_metrics(
    y_true: np.ndarray, labels: np.ndarray, classes: np.ndarray
) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support of every class, from predicted labels."""
    from sklearn import metrics as skm

    precision, recall, f1, support = skm.precision_recall_fscore_support(
        np.asarray(y_true).tolist(),
        np.asarray(labels).tolist(),
        labels=np.asarray(classes).tolist(),
        zero_division=0,
    )
    return [
        {
            "class": str(c),
            "precision": float(p),
            "recall": float(r),
            "f1": float(f),
            "support": int(s),
        }
        for c, p, r, f, s in zip(classes.tolist(), precision, recall, f1, support, strict=True)
    ]


def metric_fn(
    name: str, problem_type: str, classes: np.ndarray | None
) -> Callable[[np.ndarray, np.ndarray], float]:
    """`f(y_true, output) -> float` for one metric."""
    if problem_type == "classification":
        assert classes is not None
        return lambda y, out: classification_metric(name, y, out, classes)
    return lambda y, out: regression_metric(name, y, out)


def model_output(model: Any, X: Any, problem_type: str) -> np.ndarray:
    """What metrics consume: predict_proba for classification, predict for regression."""
    if problem_type == "classification":
        return np.asarray(model.predict_proba(X), dtype=np.float64)
    return np.asarray(model.predict(X), dtype=np.float64)
