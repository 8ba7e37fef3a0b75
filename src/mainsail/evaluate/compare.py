"""Paired comparisons of every candidate against the baseline and the best, and the selection.

Selection rule: a candidate is eligible only when it beats the baseline significantly on the
primary metric in BOTH the cross-validation (Nadeau-Bengio corrected resampled t-test, one-
sided, p < alpha) and the held-out test set (the paired-bootstrap confidence interval of the
difference excludes zero). Among the eligible, the best CV estimate leads (the mean over all
folds; for a time split, over the `evaluate.recent_folds` latest folds: what predicts the most
recent period). Candidates tied with the leader (neither its CV t-test nor its test interval
shows the leader better at level alpha) are equals, and the simplest of them wins (the order
of `mainsail.train.candidates.FAMILIES`: linear, tree, lightgbm, forest, mlp; then the faster
fit). When none is eligible, there is no winner and the reason names every candidate's
evidence.

A retrained model replaces the champion by the same test-set rule (:class:`ChampionComparison`,
made by `mainsail.lifecycle.evaluation.compare_champion`): the paired-bootstrap interval of its
gain on the fresh window's test rows must exclude zero.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mainsail.evaluate.cv import CVResult
from mainsail.evaluate.metrics import greater_is_better, metric_fn
from mainsail.evaluate.stats import BootstrapCI, bootstrap_ci, corrected_resampled_ttest, mcnemar
from mainsail.train.candidates import SIMPLICITY


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
    leader: str | None = None
    """The eligible candidate with the best CV estimate."""
    tied: list[str] = field(default_factory=list)
    """Eligible candidates statistically tied with the leader (the leader included)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen,
            "reason": self.reason,
            "metric": self.metric,
            "alpha": self.alpha,
            "eligible": self.eligible,
            "leader": self.leader,
            "tied": self.tied,
            "vs_baseline": {k: asdict(v) for k, v in self.vs_baseline.items()},
            "vs_best": {k: asdict(v) for k, v in self.vs_best.items()},
        }


def paired_test_gain(
    score: Callable[[np.ndarray, np.ndarray], float],
    greater_is_better: bool,
    out_a: np.ndarray,
    out_b: np.ndarray,
    y_test: np.ndarray,
    *,
    level: float,
    resamples: int,
    seed: int,
) -> BootstrapCI:
    """Paired-bootstrap interval of model a's gain over model b in `score(y, output)` on the
    same test rows; positive = a better, whatever the metric's direction."""
    sign = 1.0 if greater_is_better else -1.0
    resampled = getattr(score, "on", None)
    if resampled is not None:  # a MetricFn: its fast path for resamples
        stat_a, stat_b = resampled(y_test, out_a), resampled(y_test, out_b)

        def diff(idx: np.ndarray) -> float:
            return sign * (stat_a(idx) - stat_b(idx))
    else:

        def diff(idx: np.ndarray) -> float:
            return sign * (score(y_test[idx], out_a[idx]) - score(y_test[idx], out_b[idx]))

    return bootstrap_ci(diff, len(y_test), resamples=resamples, seed=seed, level=level)


def beats(gain: BootstrapCI) -> bool:
    """The test-set win rule: the interval of the gain lies above zero (it excludes zero)."""
    return beats_interval((gain.low, gain.high))


def beats_interval(interval: tuple[float, float]) -> bool:
    """:func:`beats` for a (low, high) interval of a gain."""
    return interval[0] > 0


def best_by_cv(cv: Mapping[str, CVResult], metric: str, baseline: str = "baseline") -> str | None:
    """The non-baseline candidate with the best CV estimate, or None when there is none."""
    sign = 1.0 if greater_is_better(metric) else -1.0
    others = [c for c in cv if c != baseline]
    return max(others, key=lambda c: sign * cv[c].estimate(metric), default=None)


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
    out_a, out_b = test_output[candidate], test_output[reference]
    fn = metric_fn(metric, problem_type, classes)
    ci = paired_test_gain(
        fn, gib, out_a, out_b, y_test, level=1 - alpha, resamples=resamples, seed=seed
    )
    mc_p = None
    if problem_type == "classification" and classes is not None:
        truth = np.asarray(y_test)
        right_a = classes[out_a.argmax(1)] == truth
        right_b = classes[out_b.argmax(1)] == truth
        mc_p = mcnemar(right_a, right_b).p_value
    significant = bool(tt.p_value < alpha and beats(ci))
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
    best_cv = best_by_cv(cv, metric, baseline)
    vs_best = (
        {c: compare(c, best_cv, cv, test_output, y_test, **kw) for c in others if c != best_cv}
        if best_cv
        else {}
    )
    sel = Selection(None, "", metric, alpha, eligible, vs_base, vs_best)
    if not eligible:
        details = "; ".join(
            f"{c}: CV p={format_p(v.cv_p_value)}, test {metric} gain {v.test_diff:+.4g} "
            f"CI [{v.test_ci[0]:+.4g}, {v.test_ci[1]:+.4g}]"
            for c, v in vs_base.items()
        )
        sel.reason = (
            f"no candidate beats the baseline significantly on {metric} at alpha={alpha} "
            f"(needs CV corrected t-test p < alpha and a test CI above zero): {details or 'none'}"
        )
        return sel
    leader = max(eligible, key=lambda c: sign * cv[c].estimate(metric))
    # Tied: neither the CV t-test nor the test interval shows the leader better.
    ahead = {c: compare(leader, c, cv, test_output, y_test, **kw) for c in eligible if c != leader}
    tied = [leader] + [
        c for c, v in ahead.items() if v.cv_p_value >= alpha and not beats_interval(v.test_ci)
    ]

    def cost(c: str) -> tuple[int, float]:
        return SIMPLICITY.get(c, len(SIMPLICITY)), float(np.sum(cv[c].fit_seconds))

    chosen = min(tied, key=cost)
    sel.chosen, sel.leader, sel.tied = chosen, leader, tied
    v = vs_base[chosen]
    what = "recent-fold CV" if cv[chosen].recent else "mean CV"
    if chosen == leader:
        head = f"{chosen} has the best {what} {metric} ({cv[chosen].estimate(metric):.4g})"
    else:
        head = (
            f"{chosen} is the simplest of the candidates statistically tied with the best "
            f"{what} {metric} ({leader} {cv[leader].estimate(metric):.4g}, {chosen} "
            f"{cv[chosen].estimate(metric):.4g}; tied: {', '.join(tied)})"
        )
    sel.reason = (
        f"{head} among candidates that beat the baseline significantly "
        f"(CV p={format_p(v.cv_p_value)}, "
        f"test gain {v.test_diff:+.4g}, {100 * (1 - alpha):.0f}% CI "
        f"[{v.test_ci[0]:+.4g}, {v.test_ci[1]:+.4g}])"
    )
    if best_cv not in eligible and best_cv is not None:
        sel.reason += (
            f"; {best_cv} had a better CV estimate but did not beat the baseline significantly"
        )
    return sel


def format_p(p: float | None) -> str:
    """A p-value for people: `< 0.001` rather than a rounded zero."""
    if p is None or p != p:
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3g}"


@dataclass
class ChampionComparison:
    """A new model against the registry's champion on the same test rows."""

    metric: str
    new_score: float
    champion_score: float
    gain: BootstrapCI
    """Paired-bootstrap interval of the new model's gain (positive = new better)."""

    @property
    def wins(self) -> bool:
        """The new model replaces the champion only when the gain's interval excludes zero."""
        return beats(self.gain)

    def reason(self, champion: int | str) -> str:
        """One line with both scores and the interval, for logs and the KFP UI."""
        g = self.gain
        verdict = "beats" if self.wins else "does not beat"
        return (
            f"{self.metric} {self.new_score:.4f} vs champion v{champion} "
            f"{self.champion_score:.4f}: {verdict} it (gain {g.estimate:+.4f}, "
            f"{g.level:.0%} CI {g.low:+.4f}..{g.high:+.4f}; a win needs the CI above zero)"
        )
