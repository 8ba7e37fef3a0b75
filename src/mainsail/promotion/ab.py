"""A/B analysis of champion vs challenger that stays valid under repeated looks.

We use the mixture sequential probability ratio test (mSPRT, Johari, Pekelis & Walsh, "Always
valid inference", 2017) for the difference of two means with a normal mixing distribution. Its
p-value and confidence sequence are *always valid*: a controller may look after every request and
stop the first time the evidence is strong enough, and the chance of ever wrongly declaring a
difference stays at or below alpha. A fixed-horizon t-test looked at repeatedly does not have
that property (its false-positive rate grows with every look).

Per-request outcomes are losses (lower is better): log loss or 0/1 error for classification,
squared or absolute error for regression, 1.0 for a failed request (error-rate guardrail), log
latency (latency guardrail). The analysis compares challenger minus champion.

Before any of that, the split itself is checked (:mod:`mainsail.promotion.srm`): when the
challenger's observed share of requests does not match its configured weight, every comparison
above is biased, so the analysis pauses instead of deciding.

Pure numpy; no I/O. The state of a running test (the always-valid p-value so far and the
intersection of the confidence sequence) is a small JSON-able object the controller persists.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from mainsail.core.files import jsonable
from mainsail.feedback.store import VariantOutcomes
from mainsail.promotion.srm import SRMResult, SRMState, srm_look

Action = Literal["promote", "keep_testing", "rollback", "ramp", "pause", "deploy", "refuse"]
"""What a look decided; `deploy` and `refuse` are the candidate deployer's
(mainsail.promotion.candidates), the rest the analysis'."""


@dataclass
class SequentialState:
    """What must survive between looks: the running minimum p-value and the CI intersection."""

    p_value: float = 1.0
    ci_low: float = -math.inf
    ci_high: float = math.inf
    looks: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            k: (None if isinstance(v, float) and math.isinf(v) else v)
            for k, v in asdict(self).items()
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SequentialState:
        return cls(
            p_value=float(raw.get("p_value", 1.0)),
            ci_low=-math.inf if raw.get("ci_low") is None else float(raw["ci_low"]),
            ci_high=math.inf if raw.get("ci_high") is None else float(raw["ci_high"]),
            looks=int(raw.get("looks", 0)),
        )


@dataclass(frozen=True)
class Comparison:
    """One look of one metric: challenger minus champion."""

    metric: str
    n_champion: int
    n_challenger: int
    mean_champion: float
    mean_challenger: float
    effect: float
    """mean(challenger) - mean(champion); negative = challenger has lower loss."""
    ci_low: float
    ci_high: float
    """Always-valid (1 - alpha) confidence interval of the effect (intersected over looks)."""
    p_value: float
    """Always-valid p-value of 'no difference' (running minimum over looks)."""
    significant: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: an unbounded side of the interval is None."""
        return dict(jsonable(asdict(self)))


def msprt_look(
    champion: np.ndarray,
    challenger: np.ndarray,
    *,
    alpha: float,
    tau: float,
    state: SequentialState | None = None,
    metric: str = "loss",
) -> tuple[Comparison, SequentialState]:
    """Update the mSPRT with all outcomes seen so far and return this look's comparison.

    `tau` is the standard deviation of the normal mixing distribution over the effect, in the
    metric's units: the effect size the test is most sensitive to.
    """
    state = state or SequentialState()
    a = np.asarray(champion, dtype=float)
    b = np.asarray(challenger, dtype=float)
    n_a, n_b = a.size, b.size
    if n_a < 2 or n_b < 2:
        raise ValueError(f"{metric}: need at least 2 outcomes per variant, got {n_a} and {n_b}")
    mean_a, mean_b = float(a.mean()), float(b.mean())
    # Variance of the difference of means, with a floor so constant streams do not divide by 0.
    var = max(float(a.var(ddof=1)) / n_a + float(b.var(ddof=1)) / n_b, 1e-12)
    tau2 = tau * tau
    delta = mean_b - mean_a
    log_lambda = 0.5 * math.log(var / (var + tau2)) + tau2 * delta * delta / (
        2 * var * (var + tau2)
    )
    p_now = min(1.0, math.exp(-log_lambda)) if log_lambda > 0 else 1.0
    half = math.sqrt(
        2 * var * (var + tau2) / tau2 * (math.log(1 / alpha) + 0.5 * math.log((var + tau2) / var))
    )
    new = SequentialState(
        p_value=min(state.p_value, p_now),
        ci_low=max(state.ci_low, delta - half),
        ci_high=min(state.ci_high, delta + half),
        looks=state.looks + 1,
    )
    result = Comparison(
        metric=metric,
        n_champion=n_a,
        n_challenger=n_b,
        mean_champion=mean_a,
        mean_challenger=mean_b,
        effect=delta,
        ci_low=new.ci_low,
        ci_high=new.ci_high,
        p_value=new.p_value,
        significant=new.p_value <= alpha,
    )
    return result, new


@dataclass(frozen=True)
class Estimate:
    """An always-valid confidence interval of one mean (intersected over looks)."""

    metric: str
    n: int
    estimate: float
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: an unbounded side of the interval is None."""
        return dict(jsonable(asdict(self)))


def mean_look(
    values: np.ndarray,
    *,
    alpha: float,
    tau: float,
    state: SequentialState | None = None,
    metric: str = "mean",
    smoothing: bool = False,
) -> tuple[Estimate, SequentialState]:
    """The one-sample twin of :func:`msprt_look`: an always-valid (1 - alpha) confidence
    sequence of the mean of `values` (normal mixture with standard deviation `tau`, plug-in
    variance), intersected with the intervals of earlier looks.

    `smoothing` is for 0/1 values: the variance is taken at (k + 1/2) / (n + 1) instead of the
    raw share, so that no disagreement in the first rows does not give a zero-width interval.
    """
    state = state or SequentialState()
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = x.size
    if n < 2:
        raise ValueError(f"{metric}: need at least 2 values, got {n}")
    mean = float(x.mean())
    if smoothing:
        p = (float(x.sum()) + 0.5) / (n + 1)
        var = p * (1 - p) / n
    else:
        var = max(float(x.var(ddof=1)) / n, 1e-12)
    tau2 = tau * tau
    half = math.sqrt(
        2 * var * (var + tau2) / tau2 * (math.log(1 / alpha) + 0.5 * math.log((var + tau2) / var))
    )
    new = SequentialState(
        p_value=state.p_value,
        ci_low=max(state.ci_low, mean - half),
        ci_high=min(state.ci_high, mean + half),
        looks=state.looks + 1,
    )
    if new.ci_low > new.ci_high:
        # The intersection emptied (possible when the mean drifts across looks): the latest
        # interval is the honest answer.
        new.ci_low, new.ci_high = mean - half, mean + half
    return Estimate(metric, n, mean, new.ci_low, new.ci_high), new


@dataclass(frozen=True)
class ABPolicy:
    """Thresholds of the analysis (mirrors the monitor config)."""

    alpha: float = 0.05
    """Bound on the chance of a wrong decision per metric, however often we look."""
    tau: float = 0.05
    """Mixing standard deviation of the quality-loss effect (the effect size of interest)."""
    min_samples: int = 200
    """Outcomes per variant before any decision."""
    max_samples: int = 20_000
    """Outcomes per variant after which a challenger that is not better is rolled back."""
    error_rate_tau: float = 0.02
    """Mixing standard deviation for the error-rate guardrail (absolute rate difference)."""
    latency_tau: float = 0.1
    """Mixing standard deviation for the latency guardrail (difference of mean log-latency)."""
    latency_tolerance: float = 0.2
    """Allowed relative slow-down of the challenger before the guardrail trips (0.2 = 20%)."""
    ramp: tuple[int, ...] = (10, 25, 50, 100)
    """Challenger traffic percentages; the controller moves up one step per healthy stage."""
    step_samples: int = 200
    """Challenger outcomes needed at a ramp step before moving to the next one."""
    promote_from: int = 50
    """Smallest challenger share (percent) at which a better challenger is promoted; below it a
    better challenger is ramped up first, so it has carried real load before it takes it all."""
    srm_alpha: float = 0.001
    """Bound on the chance of flagging a correct split as a sample-ratio mismatch, however often
    the controller looks (always-valid sequential test)."""
    srm_concentration: float = 1000.0
    """Concentration of the Dirichlet mixture of the SRM test: the alternative's split spreads
    about sqrt(p (1 - p) / concentration) around the configured one (1000: a few points)."""


@dataclass
class Decision:
    """The outcome of one analysis: what to do, why, and the numbers behind it."""

    action: Action
    reason: str
    quality: Comparison | None
    error_rate: Comparison | None = None
    latency: Comparison | None = None
    next_weight: int | None = None
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    srm: SRMResult | None = None
    """The sample-ratio check of this look (None in the shadow stage and before any request)."""
    shadow: dict[str, Any] | None = None
    """The shadow report of this look (shadow stage only; see mainsail.promotion.shadow)."""
    failovers: dict[str, Any] | None = None
    """Requests of the current canary stage that another variant answered than the one they
    were assigned to, per assigned variant (see FeedbackStore.failovers): reported, never part
    of the comparison (canary stages only)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "reason": self.reason,
            "next_weight": self.next_weight,
            "quality": self.quality.to_dict() if self.quality else None,
            "error_rate": self.error_rate.to_dict() if self.error_rate else None,
            "latency": self.latency.to_dict() if self.latency else None,
            "srm": self.srm.to_dict() if self.srm else None,
            "shadow": self.shadow,
            "failovers": self.failovers,
            "states": self.states,
        }


def analyse(
    champion: VariantOutcomes,
    challenger: VariantOutcomes,
    *,
    policy: ABPolicy,
    current_weight: int,
    states: dict[str, dict[str, Any]] | None = None,
    split: tuple[int, int] | None = None,
) -> Decision:
    """Decide: pause on a sample-ratio mismatch, roll back on a guardrail breach or a worse
    challenger, promote a better one, ramp the traffic share while the evidence is building, or
    keep testing.

    `split` is (champion requests, challenger requests) of the current ramp stage; with it the
    split is tested against `current_weight` first, and a mismatch pauses the experiment: the
    other tests are not even updated, since their data are biased."""
    states = dict(states or {})
    srm: SRMResult | None = None
    if split is not None and 0 < current_weight < 100 and sum(split) > 0:
        srm, srm_state = srm_look(
            split[0],
            split[1],
            current_weight,
            alpha=policy.srm_alpha,
            concentration=policy.srm_concentration,
            state=SRMState.from_dict(states.get("srm")),
        )
        states["srm"] = srm_state.to_dict()
        if srm.mismatch:
            return Decision("pause", srm.describe(), None, states=states, srm=srm)

    def look(name: str, a: np.ndarray, b: np.ndarray, tau: float) -> Comparison | None:
        if min(a.size, b.size) < max(2, policy.min_samples):
            return None
        prior = SequentialState.from_dict(states[name]) if name in states else None
        comp, new = msprt_look(a, b, alpha=policy.alpha, tau=tau, state=prior, metric=name)
        states[name] = new.to_dict()
        return comp

    errors = look("error_rate", champion.errors, challenger.errors, policy.error_rate_tau)
    latency = look(
        "log_latency",
        np.log(np.maximum(champion.latencies_s, 1e-6)),
        np.log(np.maximum(challenger.latencies_s, 1e-6)),
        policy.latency_tau,
    )
    quality = look("quality_loss", champion.losses, challenger.losses, policy.tau)

    def decision(action: Action, reason: str, weight: int | None = None) -> Decision:
        return Decision(action, reason, quality, errors, latency, weight, states, srm)

    if errors is not None and errors.significant and errors.ci_low > 0:
        return decision("rollback", f"challenger error rate is higher by {errors.effect:+.2%}", 0)
    slow = math.log1p(policy.latency_tolerance)
    if latency is not None and latency.significant and latency.ci_low > slow:
        factor = math.exp(latency.effect)
        return decision("rollback", f"challenger latency is {factor:.2f}x the champion's", 0)
    if quality is None:
        need = policy.min_samples
        return decision(
            "keep_testing",
            f"waiting for {need} labelled outcomes per variant "
            f"(champion {champion.losses.size}, challenger {challenger.losses.size})",
        )
    steps = [w for w in policy.ramp if w > current_weight]
    if (
        quality.significant
        and quality.ci_high < 0
        and current_weight < policy.promote_from
        and steps
    ):
        return decision(
            "ramp",
            f"challenger better (p={quality.p_value:.4f}): ramping to {steps[0]}% before promotion",
            steps[0],
        )
    if quality.significant and quality.ci_high < 0:
        return decision(
            "promote",
            f"challenger loss lower by {-quality.effect:.4f} "
            f"(CI {quality.ci_low:.4f}..{quality.ci_high:.4f}, p={quality.p_value:.4f})",
            100,
        )
    if quality.significant and quality.ci_low > 0:
        return decision(
            "rollback",
            f"challenger loss higher by {quality.effect:.4f} "
            f"(CI {quality.ci_low:.4f}..{quality.ci_high:.4f}, p={quality.p_value:.4f})",
            0,
        )
    if min(champion.losses.size, challenger.losses.size) >= policy.max_samples:
        return decision(
            "rollback",
            f"no significant improvement after {policy.max_samples} outcomes per variant "
            f"(p={quality.p_value:.3f})",
            0,
        )
    # Each ramp step needs `step_samples` more challenger outcomes than the one before.
    if steps and challenger.losses.size >= policy.step_samples * policy.ramp.index(steps[0]):
        return decision("ramp", f"healthy at {current_weight}%: ramping to {steps[0]}%", steps[0])
    return decision("keep_testing", f"no significant difference yet (p={quality.p_value:.3f})")
