"""The numpy MMD test of the drift sidecar: the statistic, its calibration and its power."""

from __future__ import annotations

import numpy as np

from mainsail.drift.mmd import MMDTest, median_sigma, mmd2_unbiased


def _mmd2_by_definition(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """Unbiased MMD² written as the textbook double sums (slow, obviously right)."""

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.exp(-((a - b) ** 2).sum() / (2 * sigma**2)))

    n, m = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    sxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return sxx + syy - 2 * sxy


def test_statistic_matches_its_definition() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 3)), rng.normal(0.5, 1.0, size=(9, 3))
    sigma = median_sigma(x)
    pooled = np.concatenate([x, y])
    d = ((pooled[:, None, :] - pooled[None, :, :]) ** 2).sum(-1)
    fast = mmd2_unbiased(np.exp(-d / (2 * sigma**2)), len(x))
    assert np.isclose(fast, _mmd2_by_definition(x, y, sigma))
    assert np.isclose(MMDTest(x, alpha=0.05).predict(y).distance, fast)


def test_no_drift_alarms_at_about_alpha_and_a_shift_is_caught() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(200, 4))
    test = MMDTest(ref, alpha=0.05, n_permutations=100, seed=7)
    alarms = [test.predict(rng.normal(size=(100, 4))).is_drift for _ in range(40)]
    # 40 windows at alpha 0.05: 2 alarms expected; 7 or more has probability < 1%.
    assert sum(alarms) <= 6
    shifted = rng.normal(size=(100, 4))
    shifted[:, 2] += 0.8
    result = test.predict(shifted)
    assert result.is_drift and result.p_value < 0.01 and result.distance > result.threshold
