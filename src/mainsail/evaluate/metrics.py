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


def label_metrics(y_true: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    """F1 (of the positive class, the last; macro for multiclass), accuracy and balanced
    accuracy of predicted labels."""
    from sklearn import metrics as skm

    codes, pred = _encode(y_true, classes), _encode(labels, classes)
    binary = len(classes) == 2
    return {
        "f1": float(
            skm.f1_score(codes, pred, average="binary" if binary else "macro", zero_division=0)
        ),
        "accuracy": float(skm.accuracy_score(codes, pred)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(codes, pred)),
    }


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


class MetricFn:
    """`f(y_true, output) -> float` for one metric, with a fast path for bootstrap resamples.

    :meth:`on` fixes the rows and returns `stat(idx)`, the metric of the resample `idx`: the
    value `f(y[idx], out[idx])` would give, computed from per-row terms (log loss, errors,
    correctness) or, for a binary ROC AUC, from resample weights over the rows sorted once by
    score, instead of re-ranking every resample (thousands of them on tens of thousands of
    test rows took minutes).
    """

    def __init__(self, name: str, problem_type: str, classes: np.ndarray | None) -> None:
        self.name, self.problem_type, self.classes = name, problem_type, classes

    def __call__(self, y: np.ndarray, out: np.ndarray) -> float:
        if self.problem_type == "classification":
            assert self.classes is not None
            return classification_metric(self.name, y, out, self.classes)
        return regression_metric(self.name, y, out)

    def on(self, y: np.ndarray, out: np.ndarray) -> Callable[[np.ndarray], float]:
        """`stat(idx)`: this metric on the rows `idx` (with repeats) of `y` and `out`."""
        name, n = self.name, len(y)
        if self.problem_type == "classification":
            assert self.classes is not None
            codes = _encode(y, self.classes)
            if name == "roc_auc" and out.shape[1] == 2:
                return _weighted_auc(codes, out[:, 1])
            if name == "log_loss":
                p = np.clip(out, 1e-15, 1.0)
                p = p / p.sum(1, keepdims=True)
                losses = -np.log(p[np.arange(n), codes])
                return lambda idx: float(losses[idx].mean())
            if name == "accuracy":
                right = (out.argmax(axis=1) == codes).astype(np.float64)
                return lambda idx: float(right[idx].mean())
            return lambda idx: self(y[idx], out[idx])
        yv = np.asarray(y, dtype=np.float64)
        err = yv - np.asarray(out, dtype=np.float64)
        if name == "rmse":
            sq = err**2
            return lambda idx: float(np.sqrt(sq[idx].mean()))
        if name == "mae":
            ab = np.abs(err)
            return lambda idx: float(ab[idx].mean())
        return lambda idx: self(y[idx], out[idx])


_LAST: list[Any] = [None, None]


def _multiplicities(idx: np.ndarray, n: int) -> np.ndarray:
    """How often each row is in the resample `idx` (the last one is kept: a paired
    comparison asks twice for the same resample)."""
    if _LAST[0] is not idx:
        _LAST[0], _LAST[1] = idx, np.bincount(idx, minlength=n).astype(np.float64)
    return np.asarray(_LAST[1])


def _weighted_auc(codes: np.ndarray, score: np.ndarray) -> Callable[[np.ndarray], float]:
    """ROC AUC of resamples as weights (row multiplicities) over the rows sorted by score;
    ties count half, as in the Mann-Whitney U statistic."""
    n = len(codes)
    order = np.argsort(score, kind="stable")
    s = score[order]
    pos = (codes[order] == 1).astype(np.float64)
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])

    def stat(idx: np.ndarray) -> float:
        w = _multiplicities(idx, n)[order]
        wp, wn = w * pos, w * (1.0 - pos)
        gp, gn = np.add.reduceat(wp, starts), np.add.reduceat(wn, starts)
        total_p, total_n = float(gp.sum()), float(gn.sum())
        if total_p == 0 or total_n == 0:
            return float("nan")
        below = np.cumsum(gn) - gn
        return float(np.sum(gp * (below + 0.5 * gn)) / (total_p * total_n))

    return stat


def metric_fn(name: str, problem_type: str, classes: np.ndarray | None) -> MetricFn:
    """`f(y_true, output) -> float` for one metric (see :class:`MetricFn`)."""
    return MetricFn(name, problem_type, classes)


def model_output(model: Any, X: Any, problem_type: str) -> np.ndarray:
    """What metrics consume: predict_proba for classification, predict for regression."""
    if problem_type == "classification":
        return np.asarray(model.predict_proba(X), dtype=np.float64)
    return np.asarray(model.predict(X), dtype=np.float64)
