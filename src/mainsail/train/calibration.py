"""Probability calibration and decision thresholds, both chosen on held-out predictions.

Class weights and oversampling move a classifier's probabilities away from the real class
frequencies (the log loss of a weighted model can be worse than a constant's); the served
probabilities, the thresholds and anything estimated from scores (label-free performance
estimates) need calibrated ones. :func:`fit_calibration` fits sigmoid (Platt) and isotonic maps
on held-out predictions (out-of-fold, see `mainsail.train.final`) and keeps the simplest whose
cross-validated log loss on those rows is within a tolerance of the lowest (none is a
candidate too when nothing distorted the probabilities). :func:`choose_threshold` then picks
the binary decision threshold for the configured objective. The fitted map is a
:class:`mainsail.train.model.Calibrator` (numpy only).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mainsail.train.model import Calibrator

METHODS = ("none", "sigmoid", "isotonic")
#: Isotonic regression is tried only from this many held-out rows: a step function learnt
#: from fewer overfits (and ties scores, which lowers the ROC AUC).
ISOTONIC_MIN_ROWS = 1000
#: A more flexible method must lower the cross-validated log loss by more than this to be
#: chosen over a simpler one (none < sigmoid < isotonic).
LOSS_TOLERANCE = 0.002


def _codes(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    index = {c: i for i, c in enumerate(np.asarray(classes).tolist())}
    return np.array([index[v] for v in np.asarray(y).tolist()], dtype=np.int64)


def log_loss(codes: np.ndarray, proba: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (probabilities clipped at 1e-15)."""
    p = np.clip(proba[np.arange(len(codes)), codes], 1e-15, 1.0)
    return float(-np.mean(np.log(p)))


def _fit_column(method: str, p: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if method == "sigmoid":
        from sklearn.linear_model import LogisticRegression

        q = np.clip(p, 1e-12, 1 - 1e-12)
        z = np.log(q / (1 - q)).reshape(-1, 1)
        if len(np.unique(truth)) < 2:
            return np.array([1.0]), np.array([0.0])
        lr = LogisticRegression(C=1e4, max_iter=1000).fit(z, truth)
        return np.array([float(lr.coef_[0, 0])]), np.array([float(lr.intercept_[0])])
    from sklearn.isotonic import IsotonicRegression

    # Never exactly 0 or 1: a step at 0 learnt from a few hundred rows would give an error on a
    # new row an unbounded log loss. Half a row's worth of probability stays on either side.
    eps = 0.5 / max(len(p), 1)
    iso = IsotonicRegression(y_min=eps, y_max=1 - eps, out_of_bounds="clip").fit(p, truth)
    return np.asarray(iso.X_thresholds_, dtype=np.float64), np.asarray(
        iso.y_thresholds_, dtype=np.float64
    )


def fit_map(method: str, proba: np.ndarray, codes: np.ndarray) -> Calibrator | None:
    """A calibrator of `method` fitted on (`proba`, `codes`); None for `none`."""
    if method == "none":
        return None
    cols = [1] if proba.shape[1] == 2 else list(range(proba.shape[1]))
    maps = [_fit_column(method, proba[:, k], (codes == k).astype(np.float64)) for k in cols]
    return Calibrator(method, maps)


def _cv_loss(method: str, proba: np.ndarray, codes: np.ndarray, seed: int, folds: int) -> float:
    """Log loss of `method` fitted on k-1 folds of the rows and applied to the k-th."""
    rng = np.random.default_rng(seed)
    fold = rng.permutation(len(codes)) % folds
    out = np.empty_like(proba)
    for k in range(folds):
        fit, held = fold != k, fold == k
        cal = fit_map(method, proba[fit], codes[fit])
        out[held] = proba[held] if cal is None else cal.transform(proba[held])
    return log_loss(codes, out)


@dataclass
class CalibrationChoice:
    """Which calibration was chosen on the held-out rows, and the evidence."""

    method: str
    calibrator: Calibrator | None
    cv_log_loss: dict[str, float] = field(default_factory=dict)
    """Cross-validated log loss on the held-out rows of each method tried."""
    reason: str = ""


def fit_calibration(
    proba: np.ndarray,
    y: np.ndarray,
    classes: np.ndarray,
    *,
    setting: str,
    reweighted: bool,
    seed: int,
) -> CalibrationChoice:
    """Choose and fit the calibration (see the module docstring) on validation predictions.

    `setting` is `evaluate.calibration`; `reweighted` says whether class weights or
    oversampling shaped the model (then `auto` always calibrates)."""
    codes = _codes(y, classes)
    if setting != "auto":
        cal = fit_map(setting, proba, codes)
        return CalibrationChoice(setting, cal, {}, f"evaluate.calibration is {setting}")
    tried = ["sigmoid", "isotonic"] if reweighted else list(METHODS)
    if len(codes) < ISOTONIC_MIN_ROWS:
        tried.remove("isotonic")
    folds = 3 if len(codes) >= 60 else 2
    losses = {m: _cv_loss(m, proba, codes, seed, folds) for m in tried}
    lowest = min(losses.values())
    best = next(m for m in tried if losses[m] <= lowest + LOSS_TOLERANCE)  # the simplest
    why = (
        "class weights / oversampling distort probabilities, so a calibration is always fitted; "
        if reweighted
        else ""
    ) + (
        f"{best} is the simplest method within {LOSS_TOLERANCE} of the lowest {folds}-fold log "
        f"loss on {len(codes)} held-out rows"
        + (f" (isotonic needs {ISOTONIC_MIN_ROWS} rows)" if len(codes) < ISOTONIC_MIN_ROWS else "")
    )
    return CalibrationChoice(best, fit_map(best, proba, codes), losses, why)


@dataclass
class ThresholdChoice:
    """The binary decision threshold and what it optimises on the held-out rows."""

    objective: str
    threshold: float | None
    value: float | None = None
    """The objective's value at the threshold on the held-out rows (F1, or mean cost)."""


def choose_threshold(
    p_positive: np.ndarray,
    is_positive: np.ndarray,
    *,
    objective: str,
    cost_fp: float = 1.0,
    cost_fn: float = 1.0,
) -> ThresholdChoice:
    """The threshold on the positive class's probability that maximises F1 (`f1`) or
    minimises the mean cost (`cost`) on held-out rows; None for `none`."""
    if objective == "none" or len(p_positive) == 0:
        return ThresholdChoice(objective, None)
    order = np.argsort(-p_positive, kind="stable")
    p_sorted, pos_sorted = p_positive[order], is_positive[order].astype(np.float64)
    tp = np.cumsum(pos_sorted)  # predicting positive for the top i+1 rows
    fp = np.cumsum(1.0 - pos_sorted)
    total_pos = float(pos_sorted.sum())
    fn = total_pos - tp
    # Only cut between distinct probabilities: a threshold cannot split tied rows.
    last = np.r_[p_sorted[1:] != p_sorted[:-1], True]
    if objective == "f1":
        f1 = np.where(tp > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
        f1 = np.where(last, f1, -1.0)
        i = int(np.argmax(f1))
        return ThresholdChoice("f1", float(p_sorted[i]), float(f1[i]))
    cost = (cost_fp * fp + cost_fn * fn) / len(p_sorted)
    none_cost = cost_fn * total_pos / len(p_sorted)  # predict no positive at all
    cost = np.where(last, cost, np.inf)
    i = int(np.argmin(cost))
    if none_cost <= cost[i]:
        return ThresholdChoice("cost", float(np.nextafter(1.0, 2.0)), float(none_cost))
    return ThresholdChoice("cost", float(p_sorted[i]), float(cost[i]))
