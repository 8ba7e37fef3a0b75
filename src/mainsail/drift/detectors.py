"""The drift tests of one model version, built on alibi-detect (drift env only).

Detectors are chosen by feature kind from the FeatureSchema:

* numeric features: `KSDrift` (two-sample Kolmogorov-Smirnov). Reference columns without missing
  values share one detector, used whenever the window's columns are complete too (one call for
  all of them); a column with missing values is tested on its present values by a detector of
  its own, so a missing value never enters a KS test (the missing share is exported apart).
* categorical and boolean features: `ChiSquareDrift` on category codes (categories from the
  schema, plus `unseen` and `missing` codes, so new categories and missing values count).
* the whole row: the per-feature p-values under the configured correction for multiple
  comparisons (Benjamini-Hochberg FDR by default, Bonferroni as an option), which is exactly how
  alibi-detect's `TabularDrift` decides; `row_test="tabular"` runs `TabularDrift` itself instead.
* predictions: `KSDrift` for scores and regression values, `ChiSquareDrift` for labels.

Significance alone is not drift: with windows of tens of thousands of rows every feature differs
"significantly" from its reference by some negligible amount (alibi-detect#197). So each test
also has an effect-size floor (`min_distance`): a feature is drifted only when its corrected
p-value is significant AND its distance reaches the floor. The distance is an effect size that
does not grow with the sample: the KS statistic (largest gap between the two empirical CDFs)
for numeric features and predicted scores, the total variation distance (half the L1 distance
between the category shares) for categorical features and predicted labels. The chi-square
statistic itself is kept as `statistic`.
* MMD on the numeric features, on demand only (it is far costlier): alibi-detect's `MMDDrift`
  statistic computed in numpy (:mod:`mainsail.drift.mmd`), so the drift env needs no torch.

alibi-detect is imported when a :class:`VersionDetectors` is built, never at module import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["CheckResult", "FeatureResult", "VersionDetectors", "class_label"]

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
    """Effect size: KS statistic (numeric) or total variation distance (categorical)."""
    is_drift: bool
    """Significant after the correction AND distance at least `min_distance`."""
    missing_ratio: float
    corrected_p_value: float = math.nan
    """p-value after the multiple-testing correction (compare with the significance level)."""
    min_distance: float = 0.0
    """The effect-size floor of this test."""
    significant: bool = False
    """Significant after the correction, whatever the distance."""
    statistic: float = math.nan
    """The test's own statistic (KS distance, chi-square)."""


@dataclass
class CheckResult:
    """Everything one check found."""

    features: list[FeatureResult]
    row_is_drift: bool
    threshold: float
    """Raw p-value threshold after the multiple-testing correction."""
    window_rows: int
    alpha: float = 0.05
    """Significance level the corrected p-values are compared with."""
    correction: str = "fdr"
    prediction: FeatureResult | None = None
    mmd: dict[str, float] | None = None
    performance: dict[str, Any] | None = None
    """The label-free performance estimate of the window (mainsail.drift.performance)."""
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
            "alpha": self.alpha,
            "correction": self.correction,
            "window_rows": self.window_rows,
            "drifted_features": self.drifted_features,
            "duration_s": self.duration_s,
            "timestamp": self.timestamp,
            "features": {
                f.name: {
                    "test": f.test,
                    "p_value": num(f.p_value),
                    "corrected_p_value": num(f.corrected_p_value),
                    "significant": f.significant,
                    "distance": num(f.distance),
                    "min_distance": f.min_distance,
                    "statistic": num(f.statistic),
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
                "min_distance": p.min_distance,
                "statistic": num(p.statistic),
                "is_drift": p.is_drift,
            }
        if self.mmd is not None:
            out["mmd"] = self.mmd
        if self.performance is not None:
            out["performance"] = self.performance
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


def adjust(p_values: np.ndarray, correction: str) -> np.ndarray:
    """Corrected p-values (NaN stays NaN): Bonferroni's min(1, n p), or Benjamini-Hochberg's
    adjusted p-values (the smallest FDR level at which each test is a discovery)."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    n = int(finite.sum())
    if n == 0:
        return out
    if correction == "bonferroni":
        out[finite] = np.minimum(1.0, p[finite] * n)
        return out
    values = p[finite]
    order = np.argsort(values, kind="stable")
    scaled = values[order] * n / np.arange(1, n + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    back = np.empty(n)
    back[order] = np.minimum(1.0, adjusted)
    out[finite] = back
    return out


@dataclass(frozen=True)
class Verdicts:
    """The decision of one check over all its tests."""

    corrected: np.ndarray
    """Corrected p-values."""
    significant: np.ndarray
    """Significant after the correction."""
    is_drift: np.ndarray
    """Significant AND distance at least the floor."""
    threshold: float
    """Raw p-value threshold after the correction."""


def decide(
    p_values: np.ndarray,
    distances: np.ndarray,
    floors: np.ndarray,
    *,
    alpha: float,
    correction: str,
) -> Verdicts:
    """Per-test verdicts: the correction for multiple comparisons, then the effect-size floor.
    Vectorised over leading axes of `p_values` / `distances` (one row per check)."""
    p = np.asarray(p_values, dtype=np.float64)
    d = np.asarray(distances, dtype=np.float64)
    if p.ndim == 2:
        rows = [
            decide(pi, di, floors, alpha=alpha, correction=correction)
            for pi, di in zip(p, d, strict=True)
        ]
        return Verdicts(
            np.stack([r.corrected for r in rows]),
            np.stack([r.significant for r in rows]),
            np.stack([r.is_drift for r in rows]),
            float("nan"),
        )
    significant, threshold = correct(p, alpha, correction)
    large = np.isfinite(d) & (d >= np.asarray(floors, dtype=np.float64))
    return Verdicts(adjust(p, correction), significant, significant & large, threshold)


def total_variation(ref_counts: np.ndarray, win_counts: np.ndarray) -> np.ndarray:
    """Total variation distance between the category shares of two count tables (last axis:
    categories); NaN where a side has no values."""
    ref = np.asarray(ref_counts, dtype=np.float64)
    win = np.asarray(win_counts, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = ref / ref.sum(axis=-1, keepdims=True)
        q = win / win.sum(axis=-1, keepdims=True)
    return np.asarray(0.5 * np.abs(p - q).sum(axis=-1))


def _code_counts(codes: np.ndarray, size: int) -> np.ndarray:
    """Counts of each code 0..size-1 (negative codes: none)."""
    c = codes[codes >= 0].astype(np.int64)
    return np.bincount(c, minlength=size)[:size] if c.size else np.zeros(size, dtype=np.int64)


def _tv_codes(ref_counts: np.ndarray, codes: np.ndarray) -> float:
    """Total variation distance between reference code counts and a window's codes."""
    size = max(len(ref_counts), int(codes.max(initial=-1)) + 1)
    ref = np.zeros(size, dtype=np.int64)
    ref[: len(ref_counts)] = ref_counts
    return float(total_variation(ref, _code_counts(codes, size)))


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


def class_label(value: Any) -> str:
    """A class label as text; 1, 1.0 and "1" are the same class."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float) and float(value).is_integer():
        return str(int(value))
    return str(value)


class _PredictionTest:
    """Prediction drift: KS on scores / values, chi-square on labels (with the total variation
    distance as effect size)."""

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
            keys = sorted({class_label(v) for v in values})
            self.labels = {k: i for i, k in enumerate(keys)}
            codes = np.asarray([self.labels[class_label(v)] for v in values], dtype=np.int64)
            self.test = "chi2"
            self.detector = ChiSquareDrift(codes.reshape(-1, 1), p_val=alpha)
            self.ref_counts = _code_counts(codes, len(self.labels) + 1)

    def run(self, predictions: list[Any]) -> tuple[float, float, float] | None:
        """(p-value, distance, statistic), or None when too few values."""
        values = [v for v in predictions if v is not None]
        if self.numeric:
            if any(isinstance(v, str | bool) for v in values):
                return None
            arr = np.asarray(values, dtype=np.float64)
            arr = arr[np.isfinite(arr)]
        else:
            unseen = len(self.labels)
            arr = np.asarray(
                [self.labels.get(class_label(v), unseen) for v in values], dtype=np.int64
            )
        if len(arr) < MIN_VALUES:
            return None
        res = self.detector.predict(arr.reshape(-1, 1), drift_type="feature")["data"]
        p_value, statistic = float(res["p_val"][0]), float(res["distance"][0])
        if self.numeric:
            return p_value, statistic, statistic
        return p_value, _tv_codes(self.ref_counts, arr), statistic


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
        min_distance: dict[str, float] | None = None,
        feature_min_distance: dict[str, float] | None = None,
    ) -> None:
        """`min_distance` is the effect-size floor per test (`ks`, `chi2`; absent: 0, i.e.
        significance alone decides), `feature_min_distance` overrides it per feature name (or
        `prediction`)."""
        from alibi_detect.cd import ChiSquareDrift

        self.min_distance = dict(min_distance or {})
        self.feature_min_distance = dict(feature_min_distance or {})
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
        # Reference counts per category code, for the total variation distance.
        self._ref_cat_counts = [
            _code_counts(ref_cat[:, j], int(ref_cat[:, j].max(initial=-1)) + 1)
            for j in range(len(categorical_names))
        ]
        self.floors = np.array(
            [self._floor(n, "ks") for n in numeric_names]
            + [self._floor(n, "chi2") for n in categorical_names],
            dtype=np.float64,
        )
        self._tabular: Any = None
        self._mmd: Any = None
        self.prediction: _PredictionTest | None = None
        if ref_predictions:
            self.set_prediction_reference(ref_predictions)

    def _floor(self, name: str, test: str) -> float:
        return float(self.feature_min_distance.get(name, self.min_distance.get(test, 0.0)))

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
        p_cat = d_cat = stat_cat = np.empty(0)
        if self._categorical is not None:
            res = self._categorical.predict(win_cat, drift_type="feature")["data"]
            p_cat = np.asarray(res["p_val"], dtype=np.float64)
            stat_cat = np.asarray(res["distance"], dtype=np.float64)
            d_cat = np.array(
                [
                    _tv_codes(self._ref_cat_counts[j], win_cat[:, j])
                    for j in range(len(self.categorical_names))
                ],
                dtype=np.float64,
            )
        p_all = np.concatenate([p_num, p_cat]).astype(np.float64)
        d_all = np.concatenate([d_num, d_cat]).astype(np.float64)
        stat_all = np.concatenate([d_num, stat_cat]).astype(np.float64)
        verdicts = decide(p_all, d_all, self.floors, alpha=self.alpha, correction=self.correction)
        if self.row_test == "tabular":
            # TabularDrift decides significance; the effect floor still has to be met.
            row_is_drift = self._tabular_verdict(win_num, win_cat) and bool(
                (np.isfinite(d_all) & (d_all >= self.floors)).any()
            )
        else:
            row_is_drift = bool(verdicts.is_drift.any())

        features = []
        tests = ["ks"] * len(self.numeric_names) + ["chi2"] * len(self.categorical_names)
        for j, name in enumerate([*self.numeric_names, *self.categorical_names]):
            if j < len(self.numeric_names):
                missing = float(np.isnan(win_num[:, j]).mean()) if n else 0.0
            else:
                k = j - len(self.numeric_names)
                code = self.missing_codes[k]
                missing = float((win_cat[:, k] == code).mean()) if n else 0.0
            features.append(
                FeatureResult(
                    name,
                    tests[j],
                    float(p_all[j]),
                    float(d_all[j]),
                    bool(verdicts.is_drift[j]),
                    missing,
                    corrected_p_value=float(verdicts.corrected[j]),
                    min_distance=float(self.floors[j]),
                    significant=bool(verdicts.significant[j]),
                    statistic=float(stat_all[j]),
                )
            )
        result = CheckResult(
            features=features,
            row_is_drift=row_is_drift,
            threshold=verdicts.threshold,
            window_rows=n,
            alpha=self.alpha,
            correction=self.correction,
        )
        if predictions is not None and self.prediction is not None:
            out = self.prediction.run(predictions)
            if out is not None:
                p, d, stat = out
                floor = self._floor("prediction", self.prediction.test)
                result.prediction = FeatureResult(
                    "prediction",
                    self.prediction.test,
                    p,
                    d,
                    bool(p < self.alpha and d >= floor),
                    0.0,
                    corrected_p_value=p,
                    min_distance=floor,
                    significant=p < self.alpha,
                    statistic=stat,
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
