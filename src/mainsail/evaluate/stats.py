"""Paired statistical comparisons of two models on the same folds / the same test rows."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CorrectedTTest:
    """Nadeau-Bengio corrected resampled t-test on per-fold score differences (a - b)."""

    mean_diff: float
    t: float
    df: int
    p_value: float
    """One-sided: the probability of a difference this large in favour of `a` by chance."""


def corrected_resampled_ttest(
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    n_train: int,
    n_test: int,
    *,
    greater_is_better: bool,
) -> CorrectedTTest:
    """One-sided test that `a` beats `b` over k CV folds (Nadeau & Bengio, 2003).

    The fold scores share training rows, so the plain paired t-test underestimates the variance;
    the correction inflates it by `n_test / n_train`.
    """
    a = np.asarray(scores_a, dtype=np.float64)
    b = np.asarray(scores_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError("need the same number (>= 2) of fold scores for both models")
    from scipy import stats

    d = a - b if greater_is_better else b - a
    k = len(d)
    mean = float(d.mean())
    var = float(d.var(ddof=1))
    se = math.sqrt((1.0 / k + n_test / n_train) * var)
    if se == 0.0:
        # Identical differences in every fold: certain in sign, no evidence when zero.
        t = math.inf if mean > 0 else (-math.inf if mean < 0 else 0.0)
        p = 0.0 if mean > 0 else 1.0
        return CorrectedTTest(mean, t, k - 1, p)
    t = mean / se
    p = float(stats.t.sf(t, df=k - 1))
    return CorrectedTTest(mean, float(t), k - 1, p)


@dataclass(frozen=True)
class BootstrapCI:
    """Percentile bootstrap confidence interval of a statistic."""

    estimate: float
    low: float
    high: float
    level: float


#: Above this many rows the number of resamples shrinks in proportion (never under
#: MIN_RESAMPLES): an interval on tens of thousands of rows is narrow and its percentiles settle
#: with fewer resamples, while each resample costs in proportion to the rows.
LARGE_N = 20_000
MIN_RESAMPLES = 200


def effective_resamples(resamples: int, n: int) -> int:
    """Resamples used for `n` rows (see LARGE_N)."""
    if n <= LARGE_N:
        return resamples
    return min(resamples, max(MIN_RESAMPLES, round(resamples * LARGE_N / n)))


def bootstrap_ci(
    stat: Callable[[np.ndarray], float], n: int, *, resamples: int, seed: int, level: float = 0.95
) -> BootstrapCI:
    """CI of `stat(indices)` over row resamples (pass a paired difference for comparisons);
    `resamples` shrinks for large `n` (:func:`effective_resamples`)."""
    resamples = effective_resamples(resamples, n)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        v = stat(rng.integers(0, n, n))
        if not math.isnan(v):
            values.append(v)
    est = stat(np.arange(n))
    if not values:
        return BootstrapCI(est, float("nan"), float("nan"), level)
    lo, hi = np.quantile(values, [(1 - level) / 2, 1 - (1 - level) / 2])
    return BootstrapCI(float(est), float(lo), float(hi), level)


@dataclass(frozen=True)
class McNemar:
    """McNemar's test on paired correctness: b = only `a` right, c = only `b` right."""

    a_only: int
    b_only: int
    statistic: float
    p_value: float
    """Two-sided; exact binomial when there are fewer than 25 discordant pairs."""


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """McNemar's test that two classifiers have the same error rate on the same rows."""
    from scipy import stats

    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    only_a = int(np.sum(a & ~b))
    only_b = int(np.sum(~a & b))
    n = only_a + only_b
    if n == 0:
        return McNemar(0, 0, 0.0, 1.0)
    if n < 25:
        p = float(stats.binomtest(only_a, n, 0.5).pvalue)
        return McNemar(only_a, only_b, float(min(only_a, only_b)), p)
    chi2 = (abs(only_a - only_b) - 1) ** 2 / n
    return McNemar(only_a, only_b, float(chi2), float(stats.chi2.sf(chi2, 1)))
