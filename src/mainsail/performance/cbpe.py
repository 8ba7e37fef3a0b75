"""Confidence-based performance estimation (CBPE) for binary classification.

When a score is calibrated, P(row i is positive) = p_i, so for a window of served rows with
predicted classes yhat_i the expected confusion counts are

    E[TP] = sum yhat_i p_i        E[FP] = sum yhat_i (1 - p_i)
    E[FN] = sum (1 - yhat_i) p_i  E[TN] = sum (1 - yhat_i)(1 - p_i)

from which the expected accuracy ((TP + TN) / n), F1 (2 TP / (2 TP + FP + FN), the ratio of
expectations as in NannyML's CBPE) and ROC AUC (the expected share of correctly ordered
positive-negative pairs among the expected pairs, ranking by the model's own score) follow,
without a single label. Calibration is learnt on the labelled reference sample (isotonic
regression; :mod:`mainsail.performance.calibration`), which also checks it.

The estimate is exact in expectation while the relation between features and target stays what
it was on the reference (covariate shift moves the estimate with the truth, see the tests); a
change of that relation (concept drift) is invisible to it. `accuracy_std` is the standard
deviation of the realised accuracy around the estimate (finite-window noise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mainsail.performance.calibration import (
    CalibrationCheck,
    Calibrator,
    calibration_check,
)

__all__ = ["CBPE", "expected_metrics"]


def expected_metrics(
    calibrated: np.ndarray, predicted: np.ndarray, scores: np.ndarray | None = None
) -> dict[str, float]:
    """Expected accuracy, F1 and ROC AUC of a window (see the module docstring).

    `calibrated`: P(positive) per row; `predicted`: 1 where the model predicted the positive
    class; `scores`: the model's raw scores for the ranking of ROC AUC (default: `calibrated`)."""
    p = np.asarray(calibrated, dtype=np.float64)
    yhat = np.asarray(predicted, dtype=np.float64)
    n = p.size
    if n == 0:
        return {}
    q = yhat * p + (1 - yhat) * (1 - p)  # P(prediction i is right)
    tp = float((yhat * p).sum())
    fp = float((yhat * (1 - p)).sum())
    fn = float(((1 - yhat) * p).sum())
    out = {
        "accuracy": float(q.mean()),
        "accuracy_std": float(np.sqrt((q * (1 - q)).sum()) / n),
        "f1": 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) > 0 else float("nan"),
        "roc_auc": _expected_auc(p, p if scores is None else np.asarray(scores, np.float64)),
        "positive_rate": float(p.mean()),
    }
    return out


def _expected_auc(p: np.ndarray, scores: np.ndarray) -> float:
    """E[correctly ordered positive-negative pairs] / E[positive-negative pairs]; ties half."""
    order = np.argsort(scores, kind="stable")
    s, pp = scores[order], p[order]
    neg = 1.0 - pp
    # For each row: the negative mass strictly below its score, and the mass tied with it.
    uniq, start = np.unique(s, return_index=True)
    group_neg = np.add.reduceat(neg, start)
    below = np.concatenate([[0.0], np.cumsum(group_neg)[:-1]])
    idx = np.searchsorted(uniq, s)
    tied = group_neg[idx] - neg  # the same score, other rows
    numerator = float((pp * (below[idx] + 0.5 * tied)).sum())
    denominator = float(pp.sum() * neg.sum() - (pp * neg).sum())
    return numerator / denominator if denominator > 0 else float("nan")


@dataclass
class CBPE:
    """A fitted estimator: the recalibration map and the reference's calibration check."""

    calibrator: Calibrator
    check: CalibrationCheck
    reference_metrics: dict[str, float]
    """The realised metrics on the labelled reference (what CBPE should find on clean data)."""

    @classmethod
    def fit(
        cls,
        scores: np.ndarray,
        labels: np.ndarray,
        predicted: np.ndarray | None = None,
        *,
        recalibrate: bool = True,
        seed: int = 0,
    ) -> CBPE:
        """Fit on the labelled reference: raw P(positive) scores, 0/1 labels, predicted 0/1
        classes (default: score >= 0.5)."""
        s = np.asarray(scores, dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64)
        yhat = (s >= 0.5).astype(np.float64) if predicted is None else np.asarray(predicted, float)
        calibrator = Calibrator().fit(s, y) if recalibrate else Calibrator()
        realised = {
            "accuracy": float((yhat == y).mean()),
            "f1": _f1(y, yhat),
            "roc_auc": _expected_auc(y, s),
        }
        return cls(calibrator, calibration_check(s, y, seed=seed), realised)

    def estimate(self, scores: np.ndarray, predicted: np.ndarray | None = None) -> dict[str, float]:
        """Expected metrics of a window of raw scores (and the predicted classes)."""
        s = np.asarray(scores, dtype=np.float64)
        keep = np.isfinite(s)
        yhat = (s >= 0.5) if predicted is None else np.asarray(predicted, dtype=bool)
        s, yhat = s[keep], yhat[keep]
        out = expected_metrics(self.calibrator.transform(s), yhat.astype(np.float64), s)
        out["rows"] = float(s.size)
        return out

    def describe(self) -> dict[str, Any]:
        return {"calibration": self.check.to_dict(), "reference": self.reference_metrics}


def _f1(y: np.ndarray, yhat: np.ndarray) -> float:
    tp = float((y * yhat).sum())
    denom = float(2 * tp + ((1 - y) * yhat).sum() + (y * (1 - yhat)).sum())
    return 2 * tp / denom if denom > 0 else float("nan")
