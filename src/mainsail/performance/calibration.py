"""Calibration of binary scores: the check on the reference sample and the recalibration map.

CBPE reads a calibrated score as the probability that the row is positive, so its estimates are
only as good as that calibration. The check measures the expected calibration error (ECE: the
row-weighted mean gap between the mean score and the positive share in ten equal-width score
bins) of the raw scores on the labelled reference sample, and of the scores after an isotonic
regression fitted on that sample; the second is cross-fitted (two folds, each scored by the map
fitted on the other), so a map cannot look calibrated just because it saw the rows it is
checked on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["CalibrationCheck", "Calibrator", "calibration_check", "expected_calibration_error"]

#: Fewer labelled reference rows than this: no recalibration (identity map).
MIN_ROWS = 100


def expected_calibration_error(scores: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """ECE of P(positive) scores against 0/1 labels, equal-width bins on [0, 1]."""
    p = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if p.size == 0:
        return float("nan")
    which = np.clip((p * bins).astype(np.int64), 0, bins - 1)
    count = np.bincount(which, minlength=bins).astype(np.float64)
    gap = np.bincount(which, weights=y - p, minlength=bins)
    return float(np.abs(gap).sum() / p.size) if count.sum() else float("nan")


class Calibrator:
    """Isotonic map from raw scores to calibrated probabilities (identity when unfitted)."""

    def __init__(self) -> None:
        self._iso: Any = None

    def fit(self, scores: np.ndarray, labels: np.ndarray) -> Calibrator:
        s = np.asarray(scores, dtype=np.float64)
        if s.size < MIN_ROWS or len(np.unique(labels)) < 2:
            self._iso = None
            return self
        from sklearn.isotonic import IsotonicRegression

        self._iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
            s, np.asarray(labels, dtype=np.float64)
        )
        return self

    @property
    def fitted(self) -> bool:
        return self._iso is not None

    def transform(self, scores: np.ndarray) -> np.ndarray:
        s = np.asarray(scores, dtype=np.float64)
        if self._iso is None:
            return np.clip(s, 0.0, 1.0)
        return np.asarray(self._iso.predict(s), dtype=np.float64)


@dataclass(frozen=True)
class CalibrationCheck:
    """The calibration of a model's scores on its labelled reference sample."""

    rows: int
    raw_ece: float
    """ECE of the model's own scores."""
    calibrated_ece: float
    """ECE after the isotonic recalibration (two-fold cross-fitted)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibration_check(scores: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> CalibrationCheck:
    """Raw and (cross-fitted) recalibrated ECE of `scores` on the labelled sample."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    raw = expected_calibration_error(s, y)
    fold = np.random.default_rng(seed).permutation(s.size) % 2 == 0
    out = np.empty_like(s)
    for part in (fold, ~fold):
        out[part] = Calibrator().fit(s[~part], y[~part]).transform(s[part])
    return CalibrationCheck(
        rows=int(s.size), raw_ece=raw, calibrated_ece=expected_calibration_error(out, y)
    )
