"""Drift with error control: corrected p-values AND an effect-size floor, by simulation.

The sidecar's verdict for one check is `decide()` (mainsail.drift.detectors) on the per-feature
p-values and distances of alibi-detect's tests. Running alibi-detect on 200 windows of 50,000
rows and 20 features would take minutes, so the simulations here compute the same statistics
directly and vectorised (exact two-sample KS distance and alibi's asymptotic p-value; scipy's
chi-square contingency test with its Yates correction; the total variation distance), and feed
them to the library's own `decide()`. `test_direct_statistics_match_the_real_detectors` checks on
a smaller case, in the drift env, that the real detector path (alibi-detect's KSDrift and
ChiSquareDrift inside VersionDetectors) gives the same p-values, distances and verdicts.

Numeric features are uniform on [0, 1] (the KS test is distribution-free, so this is every
continuous feature); categorical ones have 2 to 6 categories. "Undrifted" means the window is
drawn from the reference's own population; "negligible" adds real but tiny differences (the
case of alibi-detect#197: with big samples everything is significant).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from mainsail.config.drift import DriftConfig
from mainsail.drift.detectors import adjust, decide, total_variation
from mainsail.drift.process import drift_python

WINDOWS, ROWS = 200, 50_000
NUMERIC, CATEGORICAL = 12, 8
DEFAULTS = DriftConfig(window_rows=ROWS)
FLOORS = np.array(
    [DEFAULTS.min_distance_numeric] * NUMERIC + [DEFAULTS.min_distance_categorical] * CATEGORICAL
)
SHARES = [np.array(s) / sum(s) for s in ([1, 1], [3, 1], [2, 2, 1], [1, 2, 3, 4], [5, 3, 1, 1, 1])]


def ks_windows(
    ref: np.ndarray, windows: np.ndarray, exact: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Exact two-sample KS distance of each window (rows) against `ref`, and the p-value as
    alibi-detect computes it (scipy's ks_2samp, mode='asymp'). Continuous data, no ties.

    Both ECDFs are steps; the largest gap is at a window value or just before one:
    |k/m - F_ref(w_(k))| and |(k-1)/m - F_ref(w_(k))|, k = 1..m."""
    r = np.sort(ref)
    n, m = r.size, windows.shape[1]
    w = np.sort(windows, axis=1)
    k = np.arange(1, m + 1)
    d = np.empty(len(w))
    for i, row in enumerate(w):
        f_ref = np.searchsorted(r, row, side="right") / n
        d[i] = max(np.abs(k / m - f_ref).max(), np.abs((k - 1) / m - f_ref).max())
    return d, ks_p_value(d, n, m, exact)


def ks_p_value(d: np.ndarray, n: int, m: int, exact: bool = False) -> np.ndarray:
    """alibi-detect's KS p-value (scipy's ks_2samp, mode='asymp': kstwo.sf(d, round(n m /
    (n + m)))). That distribution costs tens of milliseconds per value at these sizes, so
    unless `exact` it is computed only where it can change a verdict (asymptotic p between
    1e-8 and 0.1: no correction makes a p-value above the 0.05 level significant) and the
    asymptotic Kolmogorov value, on the same side of every threshold, is kept elsewhere."""
    big, small = max(n, m), min(n, m)
    en = np.round(big * small / (big + small))
    p = stats.kstwobign.sf(d * np.sqrt(en))
    near = np.ones_like(p, dtype=bool) if exact else (p > 1e-8) & (p < 0.1)
    p[near] = stats.kstwo.sf(d[near], en)
    return np.asarray(np.clip(p, 0, 1))


def chi2_windows(ref_counts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scipy's chi2_contingency (Yates-corrected for one degree of freedom) of the 2 x k table
    [reference counts; window counts] for each window (rows), on the categories present, and
    the total variation distance."""
    ref = np.broadcast_to(ref_counts, counts.shape).astype(float)
    obs = np.stack([ref, counts.astype(float)], axis=1)  # windows x 2 x k
    present = obs.sum(axis=1) > 0
    k = present.sum(axis=1)
    expected = (
        obs.sum(axis=2, keepdims=True)
        * obs.sum(axis=1, keepdims=True)
        / obs.sum(axis=(1, 2), keepdims=True)
    )
    dof = k - 1
    yates = (dof == 1)[:, None, None]
    diff = expected - obs
    adjusted = np.where(yates, obs + np.sign(diff) * np.minimum(0.5, np.abs(diff)), obs)
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(present[:, None, :], (adjusted - expected) ** 2 / expected, 0.0)
    stat = terms.sum(axis=(1, 2))
    return stats.chi2.sf(stat, dof), total_variation(ref_counts, counts)


@dataclass
class Windows:
    """Per-window, per-feature p-values and distances of one scenario."""

    p: np.ndarray
    d: np.ndarray


def scenario(
    seed: int,
    ref_rows: int,
    numeric_drift: list[float],
    cat_drift: list[float],
    windows: int = WINDOWS,
) -> Windows:
    """`numeric_drift[f]`: the window's values are shifted up by this (uniform on [s, 1 + s]);
    `cat_drift[c]`: this share of the mass moves from the first category to the last."""
    rng = np.random.default_rng(seed)
    numeric = len(numeric_drift)
    p = np.empty((windows, numeric + len(cat_drift)))
    d = np.empty_like(p)
    for f, shift in enumerate(numeric_drift):
        ref = rng.random(ref_rows)
        d[:, f], p[:, f] = ks_windows(ref, rng.random((windows, ROWS)) + shift)
    for c, move in enumerate(cat_drift):
        shares = SHARES[c % len(SHARES)]
        moved = shares.copy()
        moved[0] -= move
        moved[-1] += move
        ref_counts = rng.multinomial(ref_rows, shares)
        counts = rng.multinomial(ROWS, moved, size=windows)
        p[:, numeric + c], d[:, numeric + c] = chi2_windows(ref_counts, counts)
    return Windows(p, d)


def false_alarms(w: Windows, *, correction: str, floors: np.ndarray, windows: int = 3) -> dict:
    """Per-window drift rate and the alert's rate (`windows` drifted checks in a row, the
    MainsailDriftSustained rule's default)."""
    verdicts = decide(w.p, w.d, floors, alpha=DEFAULTS.p_value, correction=correction)
    drifted = verdicts.is_drift.any(axis=1)
    run = np.zeros(len(drifted), dtype=int)
    for i, flag in enumerate(drifted):
        run[i] = (run[i - 1] + 1 if i else 1) if flag else 0
    return {
        "window_rate": float(drifted.mean()),
        "alert_rate": float((run >= windows).mean()),
        "features": verdicts.is_drift,
    }


@pytest.fixture(scope="module")
def undrifted() -> Windows:
    # The defaults: 5,000 reference rows, windows of 50,000 rows.
    return scenario(31, DEFAULTS.reference_rows, [0.0] * NUMERIC, [0.0] * CATEGORICAL)


@pytest.fixture(scope="module")
def negligible() -> Windows:
    # A big reference as well (50,000 rows): now tiny real differences are significant. Mostly
    # categorical features here, only because their statistics are cheaper to simulate.
    shifts = [0.015, 0.02]
    moves = list(np.linspace(0.005, 0.015, NUMERIC + CATEGORICAL - len(shifts)))
    return scenario(32, 50_000, shifts, moves)


def test_defaults_are_fdr_with_an_effect_floor() -> None:
    assert DEFAULTS.correction == "fdr"
    assert DEFAULTS.min_distance_numeric == DEFAULTS.min_distance_categorical == 0.05


def test_20_undrifted_features_over_200_windows_of_50000_rows_stay_under_5_percent(
    undrifted: Windows,
) -> None:
    ours = false_alarms(undrifted, correction="fdr", floors=FLOORS)
    assert ours["window_rate"] <= 0.05, ours["window_rate"]
    assert ours["alert_rate"] <= 0.05
    # Without the floor, the correction alone holds the rate near its level (~5% of windows
    # under the complete null) and no better; with it, chance differences never reach 0.05.
    no_floor = false_alarms(undrifted, correction="fdr", floors=np.zeros_like(FLOORS))
    assert ours["window_rate"] <= no_floor["window_rate"]
    # Uncorrected per-feature tests (what "any feature below 0.05" means) alarm most windows.
    raw = (undrifted.p < DEFAULTS.p_value).any(axis=1).mean()
    assert raw > 0.5


def test_negligible_differences_alarm_without_the_floor_and_not_with_it(
    negligible: Windows,
) -> None:
    floors = np.full(NUMERIC + CATEGORICAL, 0.05)
    for correction in ("fdr", "bonferroni"):
        without = false_alarms(negligible, correction=correction, floors=floors * 0)
        assert without["window_rate"] > 0.5, (correction, without["window_rate"])
        with_floor = false_alarms(negligible, correction=correction, floors=floors)
        assert with_floor["window_rate"] <= 0.05 and with_floor["alert_rate"] <= 0.05


def test_a_real_shift_of_one_feature_is_still_caught() -> None:
    numeric = [0.0] * NUMERIC
    numeric[3] = 0.08  # KS distance 0.08: 8% of the values moved past the rest
    cats = [0.0] * CATEGORICAL
    w = scenario(33, DEFAULTS.reference_rows, numeric, cats, windows=50)
    result = false_alarms(w, correction="fdr", floors=FLOORS)
    assert result["window_rate"] == 1.0
    caught = result["features"]
    assert caught[:, 3].all() and not np.delete(caught, 3, axis=1).any()
    # A categorical shift of 8% of the rows, alone, likewise.
    cats[2] = 0.08
    w = scenario(34, DEFAULTS.reference_rows, [0.0] * NUMERIC, cats, windows=50)
    caught = false_alarms(w, correction="fdr", floors=FLOORS)["features"]
    assert caught[:, NUMERIC + 2].all() and not np.delete(caught, NUMERIC + 2, axis=1).any()


def test_corrected_p_values() -> None:
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216, np.nan])
    bh = adjust(p, "fdr")
    # BH adjusted p: min over j >= i of p_(j) n / j (n = 10 finite tests).
    assert bh[0] == pytest.approx(0.01) and bh[1] == pytest.approx(0.04)
    assert bh[2] == pytest.approx(0.084) and np.isnan(bh[-1])  # p_(5) * 10 / 5
    assert (
        (bh[:-1] <= 0.05)
        == decide(p[:-1], np.ones(10), 0.0, alpha=0.05, correction="fdr").significant
    ).all()
    bonf = adjust(p, "bonferroni")
    assert bonf[0] == pytest.approx(0.01) and bonf[5] == pytest.approx(0.6) and bonf[7] == 1.0
    # Significance without size is not drift, nor size without significance.
    v = decide(np.array([1e-9, 0.5]), np.array([0.01, 0.3]), 0.05, alpha=0.05, correction="fdr")
    assert v.significant.tolist() == [True, False] and v.is_drift.tolist() == [False, False]


SCRIPT = r"""
import json, sys
import numpy as np
from mainsail.drift.detectors import VersionDetectors
data = np.load(sys.argv[1])
det = VersionDetectors(["a", "b", "c"], ["x", "y"], data["ref_num"], data["ref_cat"],
                       alpha=0.05, correction="fdr", min_distance={"ks": 0.05, "chi2": 0.05})
out = []
for i in range(data["win_num"].shape[0]):
    r = det.check(data["win_num"][i], data["win_cat"][i])
    out.append({"p": [f.p_value for f in r.features], "d": [f.distance for f in r.features],
                "q": [f.corrected_p_value for f in r.features],
                "drift": [f.is_drift for f in r.features], "row": r.row_is_drift})
json.dump(out, sys.stdout)
"""


@pytest.mark.slow
def test_direct_statistics_match_the_real_detectors(tmp_path: Path) -> None:
    rng = np.random.default_rng(35)
    n_ref, n_win, k = 20_000, 20_000, 4
    ref_num = rng.random((n_ref, 3))
    ref_cat = np.stack([rng.choice(3, n_ref, p=[0.5, 0.3, 0.2]), rng.choice(2, n_ref)], axis=1)
    shift = np.array([0.0, 0.025, 0.1])  # none, significant but small, real
    win_num = rng.random((k, n_win, 3)) + shift
    win_cat = np.stack(
        [rng.choice(3, (k, n_win), p=[0.42, 0.3, 0.28]), rng.choice(2, (k, n_win))], axis=2
    )
    np.savez(
        tmp_path / "data.npz", ref_num=ref_num, ref_cat=ref_cat, win_num=win_num, win_cat=win_cat
    )
    proc = subprocess.run(
        [str(drift_python()), "-c", SCRIPT, str(tmp_path / "data.npz")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    real = json.loads(proc.stdout)
    p = np.empty((k, 5))
    d = np.empty((k, 5))
    for f in range(3):
        d[:, f], p[:, f] = ks_windows(ref_num[:, f], win_num[:, :, f], exact=True)
    for c in range(2):
        counts = np.stack([np.bincount(win_cat[i, :, c], minlength=3) for i in range(k)])
        ref_counts = np.bincount(ref_cat[:, c], minlength=3)
        if c == 1:
            counts, ref_counts = counts[:, :2], ref_counts[:2]
        p[:, 3 + c], d[:, 3 + c] = chi2_windows(ref_counts, counts)
    floors = np.full(5, 0.05)
    ours = decide(p, d, floors, alpha=0.05, correction="fdr")
    for i, r in enumerate(real):
        # alibi-detect returns float32 p-values
        np.testing.assert_allclose(r["p"], p[i], rtol=2e-5, atol=1e-30)
        np.testing.assert_allclose(r["d"], d[i], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(r["q"], ours.corrected[i], rtol=2e-5, atol=1e-30)
        assert r["drift"] == ours.is_drift[i].tolist()
        assert r["row"] == bool(ours.is_drift[i].any())
    # The cases the floor separates: b significant but small, c and x real.
    assert all(r["drift"] == [False, False, True, True, False] for r in real)
