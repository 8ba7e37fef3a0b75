"""Paired comparisons of every candidate against the baseline and the best, and the selection.

Selection rule: a candidate is eligible only when it beats the baseline significantly on the
primary metric in BOTH the cross-validation (Nadeau-Bengio corrected resampled t-test, one-
sided, p < alpha) and the held-out test set (the paired-bootstrap confidence interval of the
difference excludes zero). Among the eligible, the best CV mean wins. When none is eligible,
there is no winner and the reason names every candidate's evidence.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mainsail.evaluate.cv import CVResult
from mainsail.evaluate.metrics import greater_is_better, metric_fn
from mainsail.evaluate.stats import bootstrap_ci, corrected_resampled_ttest, mcnemar


@dataclass
class PairedComparison:
    """`candidate` against `reference` on the primary metric."""

    candidate: str
    reference: str
    metric: str
    cv_mean_diff: float
    """Mean per-fold improvement (positive = candidate better, whatever the metric's direction)."""
    cv_t: float
    cv_p_value: float
    test_diff: float
    """Improvement on the test set (positive = candidate better)."""
    test_ci: tuple[float, float]
    mcnemar_p_value: float | None = None
    """Two-sided McNemar p-value on test-set correctness (classification)."""
    significant: bool = False
    """Both tests agree the candidate is better at level alpha."""


@dataclass
class Selection:
    """Which candidate wins and why (or why none does)."""

    chosen: str | None
    reason: str
    metric: str
    alpha: float
    eligible: list[str] = field(default_factory=list)
    vs_baseline: dict[str, PairedComparison] = field(default_factory=dict)
    vs_best: dict[str, PairedComparison] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen,
            "reason": self.reason,
            "metric": self.metric,
            "alpha": self.alpha,
            "eligible": self.eligible,
            "vs_baseline": {k: asdict(v) for k, v in self.vs_baseline.items()},
            "vs_best": {k: asdict(v) for k, v in self.vs_best.items()},
        }


def compare(
    candidate: str,
    reference: str,
    cv: dict[str, CVResult],
    test_output: dict[str, np.ndarray],
    y_test: np.ndarray,
    *,
    metric: str,
    problem_type: str,
    classes: np.ndarray | None,
    alpha: float,
    resamples: int,
    seed: int,
) -> PairedComparison:
    """Paired comparison of two candidates on the same CV folds and the same test rows."""
    gib = greater_is_better(metric)
    a, b = cv[candidate], cv[reference]
    tt = corrected_resampled_ttest(
        a.scores(metric), b.scores(metric), int(a.n_train), int(a.n_test), greater_is_better=gib
    )
    fn = metric_fn(metric, problem_type, classes)
    out_a, out_b = test_output[candidate], test_output[reference]
    sign = 1.0 if gib else -1.0

    def diff(idx: np.ndarray) -> float:
        return sign * (fn(y_test[idx], out_a[idx]) - fn(y_test[idx], out_b[idx]))

    ci = bootstrap_ci(diff, len(y_test), resamples=resamples, seed=seed, level=1 - alpha)
    mc_p = None
    if problem_type == "classification" and classes is not None:
        truth = np.asarray(y_test)
        right_a = classes[out_a.argmax(1)] == truth
        right_b = classes[out_b.argmax(1)] == truth
        mc_p = mcnemar(right_a, right_b).p_value
    significant = bool(tt.p_value < alpha and ci.low > 0)
    return PairedComparison(
        candidate,
        reference,
        metric,
        tt.mean_diff,
        tt.t,
        tt.p_value,
        ci.estimate,
        (ci.low, ci.high),
        mc_p,
        significant,
    )


def select(
    cv: dict[str, CVResult],
    test_output: dict[str, np.ndarray],
    y_test: np.ndarray,
    *,
    metric: str,
    problem_type: str,
    classes: np.ndarray | None,
    alpha: float,
    resamples: int,
    seed: int,
    baseline: str = "baseline",
) -> Selection:
    """Compare every candidate with the baseline and the best; apply the selection rule."""
    if baseline not in cv:
        raise ValueError(f"the selection rule needs the {baseline!r} candidate")
    kw: dict[str, Any] = {
        "metric": metric,
        "problem_type": problem_type,
        "classes": classes,
        "alpha": alpha,
        "resamples": resamples,
        "seed": seed,
    }
    others = [c for c in cv if c != baseline]
    vs_base = {c: compare(c, baseline, cv, test_output, y_test, **kw) for c in others}
    eligible = [c for c in others if vs_base[c].significant]
    sign = 1.0 if greater_is_better(metric) else -1.0
    best_cv = max(others, key=lambda c: sign * float(np.mean(cv[c].scores(metric))), default=None)
    vs_best = (
        {c: compare(c, best_cv, cv, test_output, y_test, **kw) for c in others if c != best_cv}
        if best_cv
        else {}
    )
    sel = Selection(None, "", metric, alpha, eligible, vs_base, vs_best)
    if not eligible:
        details = "; ".join(
            f"{c}: CV p={v.cv_p_value:.3g}, test {metric} gain {v.test_diff:+.4g} "
            f"CI [{v.test_ci[0]:+.4g}, {v.test_ci[1]:+.4g}]"
            for c, v in vs_base.items()
        )
        sel.reason = (
            f"no candidate beats the baseline significantly on {metric} at alpha={alpha} "
            f"(needs CV corrected t-test p < alpha and a test CI above zero): {details or 'none'}"
        )
        return sel
    chosen = max(eligible, key=lambda c: sign * float(np.mean(cv[c].scores(metric))))
    sel.chosen = chosen
    v = vs_base[chosen]
    sel.reason = (
        f"{chosen} has the best mean CV {metric} ({np.mean(cv[chosen].scores(metric)):.4g}) among "
        f"candidates that beat the baseline significantly (CV p={v.cv_p_value:.3g}, test gain "
        f"{v.test_diff:+.4g}, {100 * (1 - alpha):.0f}% CI "
        f"[{v.test_ci[0]:+.4g}, {v.test_ci[1]:+.4g}])"
    )
    if chosen != best_cv:
        sel.reason += (
            f"; {best_cv} had a better CV mean but did not beat the baseline significantly"
        )
    return sel
