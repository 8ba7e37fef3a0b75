"""The drift tests of one model version, built on alibi-detect (drift env only).

Detectors are chosen by feature kind from the FeatureSchema:

* numeric features: `KSDrift` (two-sample Kolmogorov-Smirnov). Reference columns without missing
  values share one detector, used whenever the window's columns are complete too (one call for
  all of them); a column with missing values is tested on its present values by a detector of
  its own, so a missing value never enters a KS test (the missing share is exported apart).
* categorical and boolean features: `ChiSquareDrift` on category codes (categories from the
  schema, plus `unseen` and `missing` codes, so new categories and missing values count).
* the whole row: the per-feature p-values under the configured correction (Bonferroni or FDR),
  which is exactly how alibi-detect's `TabularDrift` decides; `row_test="tabular"` runs
  `TabularDrift` itself instead.
* predictions: `KSDrift` for scores and regression values, `ChiSquareDrift` for labels.
* MMD on the numeric features, on demand only (it is far costlier): alibi-detect's `MMDDrift`
  statistic computed in numpy (:mod:`mainsail.drift.mmd`), so the drift env needs no torch.

alibi-detect is imported when a :class:`VersionDetectors` is built, never at module import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["CheckResult", "FeatureResult", "VersionDetectors"]

#: A test needs at least this many present values on each side.
MIN_VALUES = 10


@dataclass
class FeatureResult:
    """One feature's test in one check."""

    name: str
    test: str
    """`ks` or `chi2`."""
    p_value: float
    """NaN when the test could not run (too few present values)."""
    distance: float
    is_drift: bool
    missing_ratio: float


@dataclass
class CheckResult:
    """Everything one check found."""

    features: list[FeatureResult]
    row_is_drift: bool
    threshold: float
    """p-value threshold after the multiple-testing correction."""
    window_rows: int
    prediction: FeatureResult | None = None
    mmd: dict[str, float] | None = None
    duration_s: float = 0.0
    timestamp: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def drifted_features(self) -> list[str]:
        return [f.name for f in self.features if f.is_drift]

    def as_json(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return None if math.isnan(x) else float(x)

        out: dict[str, Any] = {
            "row_is_drift": self.row_is_drift,
            "threshold": self.threshold,
            "window_rows": self.window_rows,
            "drifted_features": self.drifted_features,
            "duration_s": self.duration_s,
            "timestamp": self.timestamp,
            "features": {
                f.name: {
                    "test": f.test,
                    "p_value": num(f.p_value),
                    "distance": num(f.distance),
                    "is_drift": f.is_drift,
                    "missing_ratio": f.missing_ratio,
                }
                for f in self.features
            },
        }
        if self.prediction is not None:
            p = self.prediction
            out["prediction"] = {
                "test": p.test,
                "p_value": num(p.p_value),
                "distance": num(p.distance),
                "is_drift": p.is_drift,
            }
        if self.mmd is not None:
            out["mmd"] = self.mmd
        return out


def correct(p_values: np.ndarray, alpha: float, correction: str) -> tuple[np.ndarray, float]:
    """Per-test verdicts and the threshold under Bonferroni or FDR, as alibi-detect decides."""
    finite = np.isfinite(p_values)
    n = int(finite.sum())
    verdict = np.zeros(len(p_values), dtype=bool)
    if n == 0:
        return verdict, alpha
    if correction == "bonferroni":
        threshold = alpha / n
    else:
        # Benjamini-Hochberg, as alibi_detect.utils.statstest.fdr: the largest i with
        # p_(i) < alpha * i / n; every p-value up to p_(i) is a discovery.
        p_sorted = np.sort(p_values[finite])
        q = alpha * np.arange(1, n + 1) / n
        below = np.flatnonzero(p_sorted < q)
        if len(below) == 0:
            return verdict, alpha / n
        threshold = float(q[below.max()])
        verdict[finite] = p_values[finite] <= p_sorted[below.max()]
        return verdict, threshold
    verdict[finite] = p_values[finite] < threshold
    return verdict, float(threshold)


class _NumericTests:
    """KS tests of the numeric block (see the module docstring)."""

    def __init__(self, ref: np.ndarray, alpha: float) -> None:
        from alibi_detect.cd import KSDrift

        self._ks = KSDrift
        self.ref = ref
        self.alpha = alpha
        ref_nan = np.isnan(ref)
        self.complete = np.flatnonzero(~ref_nan.any(axis=0))
        self.block = (
            KSDrift(np.ascontiguousarray(ref[:, self.complete]), p_val=alpha)
            if len(self.complete)
            else None
        )
        self._single: dict[int, Any] = {}

    def _single_detector(self, j: int) -> Any | None:
        if j not in self._single:
            col = self.ref[:, j]
            col = col[~np.isnan(col)]
            self._single[j] = (
                self._ks(col.reshape(-1, 1), p_val=self.alpha) if len(col) >= MIN_VALUES else None
            )
        return self._single[j]

    def run(self, win: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = np.full(win.shape[1], np.nan)
        d = np.full(win.shape[1], np.nan)
        todo = set(range(win.shape[1]))
        if self.block is not None:
            sub = win[:, self.complete]
            if not np.isnan(sub).any():
                res = self.block.predict(sub, drift_type="feature")["data"]
                p[self.complete] = res["p_val"]
                d[self.complete] = res["distance"]
                todo -= set(self.complete.tolist())
        for j in sorted(todo):
            col = win[:, j]
            col = col[~np.isnan(col)]
            det = self._single_detector(j)
            if det is None or len(col) < MIN_VALUES:
                continue
            res = det.predict(col.reshape(-1, 1), drift_type="feature")["data"]
            p[j] = res["p_val"][0]
            d[j] = res["distance"][0]
        return p, d


def _label(value: Any) -> str:
    """A class label as text; 1, 1.0 and "1" are the same class."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float) and float(value).is_integer():
        return str(int(value))
    return str(value)


class _PredictionTest:
    """Prediction drift: KS on scores / values, chi-square on labels."""

    def __init__(self, reference: list[Any], alpha: float) -> None:
        from alibi_detect.cd import ChiSquareDrift, KSDrift

        values = [v for v in reference if v is not None]
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        # Integer labels (classes) are categories, not a continuous score.
        labels = numbers and len(set(values)) <= 20 and all(float(v).is_integer() for v in values)
        self.numeric = numbers and not labels
        if self.numeric:
            arr = np.asarray(values, dtype=np.float64)
            arr = arr[np.isfinite(arr)]
            self.test = "ks"
            self.detector = KSDrift(arr.reshape(-1, 1), p_val=alpha)
        else:
            keys = sorted({_label(v) for v in values})
            self.labels = {k: i for i, k in enumerate(keys)}
            codes = np.asarray([self.labels[_label(v)] for v in values], dtype=np.int64)
            self.test = "chi2"
            self.detector = ChiSquareDrift(codes.reshape(-1, 1), p_val=alpha)

    def run(self, predictions: list[Any]) -> tuple[float, float] | None:
        values = [v for v in predictions if v is not None]
        if self.numeric:
            if any(isinstance(v, str | bool) for v in values):
                return None
            arr = np.asarray(values, dtype=np.float64)
            arr = arr[np.isfinite(arr)]
        else:
            unseen = len(self.labels)
            arr = np.asarray([self.labels.get(_label(v), unseen) for v in values], dtype=np.int64)
        if len(arr) < MIN_VALUES:
            return None
        res = self.detector.predict(arr.reshape(-1, 1), drift_type="feature")["data"]
        return float(res["p_val"][0]), float(res["distance"][0])


class VersionDetectors:
    """All detectors of one model version, fitted on its reference matrices."""

    def __init__(
        self,
        numeric_names: list[str],
        categorical_names: list[str],
        ref_num: np.ndarray,
        ref_cat: np.ndarray,
        *,
        alpha: float,
        correction: str,
        row_test: str = "derived",
        missing_codes: list[int] | None = None,
        ref_predictions: list[Any] | None = None,
        mmd_permutations: int = 100,
        mmd_max_rows: int = 500,
        seed: int = 42,
    ) -> None:
        from alibi_detect.cd import ChiSquareDrift

        self.numeric_names = numeric_names
        self.categorical_names = categorical_names
        self.alpha = alpha
        self.correction = correction
        self.row_test = row_test
        self.ref_num = ref_num
        self.ref_cat = ref_cat
        # The code that stands for a missing value, per categorical feature.
        self.missing_codes = missing_codes or [-1] * len(categorical_names)
        self.seed = seed
        self.mmd_permutations = mmd_permutations
        self.mmd_max_rows = mmd_max_rows
        self._numeric = _NumericTests(ref_num, alpha) if numeric_names else None
        self._categorical = (
            ChiSquareDrift(ref_cat, p_val=alpha, correction=correction)
            if categorical_names
            else None
        )
        self._tabular: Any = None
        self._mmd: Any = None
        self.prediction: _PredictionTest | None = None
        if ref_predictions:
            self.set_prediction_reference(ref_predictions)

    def set_prediction_reference(self, predictions: list[Any]) -> None:
        self.prediction = _PredictionTest(predictions, self.alpha)

    def check(
        self,
        win_num: np.ndarray,
        win_cat: np.ndarray,
        predictions: list[Any] | None = None,
        *,
        mmd: bool = False,
    ) -> CheckResult:
        n = max(len(win_num), len(win_cat))
        p_num = d_num = np.empty(0)
        if self._numeric is not None:
            p_num, d_num = self._numeric.run(win_num)
        p_cat = d_cat = np.empty(0)
        if self._categorical is not None:
            res = self._categorical.predict(win_cat, drift_type="feature")["data"]
            p_cat = np.asarray(res["p_val"], dtype=np.float64)
            d_cat = np.asarray(res["distance"], dtype=np.float64)
        p_all = np.concatenate([p_num, p_cat]).astype(np.float64)
        verdict, threshold = correct(p_all, self.alpha, self.correction)
        if self.row_test == "tabular":
            row_is_drift = self._tabular_verdict(win_num, win_cat)
        else:
            row_is_drift = bool(verdict.any())

        features = []
        for j, name in enumerate(self.numeric_names):
            missing = float(np.isnan(win_num[:, j]).mean()) if n else 0.0
            features.append(
                FeatureResult(
                    name, "ks", float(p_num[j]), float(d_num[j]), bool(verdict[j]), missing
                )
            )
        offset = len(self.numeric_names)
        for j, name in enumerate(self.categorical_names):
            code = self.missing_codes[j]
            missing = float((win_cat[:, j] == code).mean()) if n else 0.0
            features.append(
                FeatureResult(
                    name,
                    "chi2",
                    float(p_cat[j]),
                    float(d_cat[j]),
                    bool(verdict[offset + j]),
                    missing,
                )
            )
        result = CheckResult(
            features=features, row_is_drift=row_is_drift, threshold=threshold, window_rows=n
        )
        if predictions is not None and self.prediction is not None:
            out = self.prediction.run(predictions)
            if out is not None:
                p, d = out
                result.prediction = FeatureResult(
                    "prediction", self.prediction.test, p, d, p < self.alpha, 0.0
                )
        if mmd:
            result.mmd = self._mmd_check(win_num)
        return result

    def _tabular_verdict(self, win_num: np.ndarray, win_cat: np.ndarray) -> bool:
        from alibi_detect.cd import TabularDrift

        # TabularDrift cannot take missing numeric values: it sees complete rows only.
        ref = np.hstack([self.ref_num, self.ref_cat.astype(np.float64)])
        ref = ref[~np.isnan(ref).any(axis=1)]
        win = np.hstack([win_num, win_cat.astype(np.float64)])
        win = win[~np.isnan(win).any(axis=1)]
        if len(win) < MIN_VALUES or len(ref) < MIN_VALUES:
            return False
        if self._tabular is None:
            k = len(self.numeric_names)
            cats: dict[int, None] = {k + j: None for j in range(len(self.categorical_names))}
            self._tabular = TabularDrift(
                ref, p_val=self.alpha, categories_per_feature=cats, correction=self.correction
            )
        return bool(self._tabular.predict(win, drift_type="batch")["data"]["is_drift"])

    def _mmd_check(self, win_num: np.ndarray) -> dict[str, float]:
        if not self.numeric_names:
            raise ValueError("MMD needs numeric features; this model has none")
        rng = np.random.default_rng(self.seed)
        # Standardise with reference statistics and fill missing values with the reference
        # median, so the kernel compares shapes, not units.
        med = np.nanmedian(self.ref_num, axis=0)
        std = np.nanstd(self.ref_num, axis=0)
        std[~np.isfinite(std) | (std == 0)] = 1.0
        med[~np.isfinite(med)] = 0.0

        def prep(x: np.ndarray) -> np.ndarray:
            x = np.where(np.isnan(x), med, x)
            return ((x - med) / std).astype(np.float32)

        if self._mmd is None:
            from mainsail.drift.mmd import MMDTest

            ref = self.ref_num
            if len(ref) > self.mmd_max_rows:
                ref = ref[rng.choice(len(ref), self.mmd_max_rows, replace=False)]
            self._mmd = MMDTest(
                prep(ref), alpha=self.alpha, n_permutations=self.mmd_permutations, seed=self.seed
            )
        win = win_num
        if len(win) > self.mmd_max_rows:
            win = win[rng.choice(len(win), self.mmd_max_rows, replace=False)]
        res = self._mmd.predict(prep(win))
        return {
            "p_value": res.p_value,
            "distance": res.distance,
            "is_drift": float(res.is_drift),
        }
