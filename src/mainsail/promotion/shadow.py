"""The shadow stage: the challenger answers mirrored copies of live requests, nobody sees them.

Before a challenger serves anyone (the ramp's first step), it answers a copy of every request in
the shadow, and its answers are paired with the champion's by request id
(:meth:`mainsail.feedback.store.FeedbackStore.shadow_pairs`). The report compares the two on the
same requests:

- **disagreement rate**: the share of rows where the predicted classes differ (classification),
  or where the predicted values differ by more than `regression_tolerance` of the champion's
  (regression), with an always-valid confidence interval;
- **score / prediction delta**: mean of challenger minus champion (P(positive) or value);
- **loss delta** on the paired rows whose ground truth has arrived (the A/B analysis' loss: log
  loss or squared error, challenger minus champion), with an always-valid interval: a paired
  comparison on the same rows, with no caller exposed to the challenger;
- **error rate** of each side and their paired difference, and **latency** p50 / p99 of each
  side with the difference, plus the interval of the mean log-latency ratio (after the
  warm-up).

Every interval is a confidence sequence (:func:`mainsail.promotion.ab.mean_look`), intersected
over looks, so the gate may be checked after every batch.

The gate, in order: too few paired rows or requests (the first `warmup_requests` requests
of the stage do not count: a challenger that has just loaded answers them slowly) -> keep
shadowing; the challenger fails more often (error-rate
difference above `max_error_increase`), is slower (mean latency ratio above 1 +
`latency_tolerance`) or is worse on the labelled pairs -> **fail** (stopped at shadow); better on
the labelled pairs -> **pass** (a disagreement is then the champion's mistakes corrected);
disagreement above `max_disagreement` -> **fail**; at most `max_disagreement` -> **pass**;
undecided after `max_pairs` -> **fail** (it could not be shown to agree); else keep shadowing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from mainsail.core.files import jsonable
from mainsail.feedback.store import ShadowPairs
from mainsail.promotion.ab import Estimate, SequentialState, mean_look

__all__ = ["ShadowPolicy", "ShadowReport", "shadow_look"]

Gate = Literal["pass", "fail", "pending"]


@dataclass(frozen=True)
class ShadowPolicy:
    """Thresholds of the shadow gate (mirrors `promotion.shadow`)."""

    min_pairs: int = 200
    """Paired rows before the gate decides anything."""
    max_pairs: int = 5000
    """Paired rows after which a challenger not shown to pass is stopped."""
    max_disagreement: float = 0.15
    """Largest acceptable disagreement rate with the champion."""
    regression_tolerance: float = 0.1
    """Regression: values differing by more than this share of the champion's count as a
    disagreement."""
    max_error_increase: float = 0.01
    """Largest acceptable increase of the failed-request rate over the champion's."""
    latency_tolerance: float = 0.5
    """Largest acceptable slow-down of the mean (log) latency, relative (0.5 = 50%)."""
    min_labelled: int = 100
    """Labelled paired rows before the loss delta takes part in the gate."""
    min_requests: int = 100
    """Paired requests (after the warm-up) before the gate decides anything: errors and latency
    are judged per request, and a batch of many rows is one request."""
    warmup_requests: int = 20
    """The stage's first paired requests left out of the latency comparison (a challenger that
    has just loaded its model answers its first requests slowly)."""
    alpha: float = 0.05
    """Error bound of every interval, however often the gate looks."""
    tau_disagreement: float = 0.05
    """Mixing standard deviation of the disagreement rate's confidence sequence."""
    tau_loss: float = 0.05
    """... of the paired loss delta (in loss units)."""
    tau_error: float = 0.02
    """... of the paired error-rate difference."""
    tau_latency: float = 0.1
    """... of the mean log-latency ratio."""


@dataclass
class ShadowReport:
    """One look at the shadow pairs and the gate's verdict."""

    problem_type: str
    pairs: int
    """Rows answered by both."""
    requests: int
    """Requests answered (or failed) by both."""
    labelled: int
    """Paired rows with ground truth."""
    disagreement: Estimate | None
    prediction_delta: Estimate | None
    """Mean challenger minus champion score (P(positive)) or value."""
    mean_abs_delta: float | None
    loss_delta: Estimate | None
    """Challenger minus champion loss on the labelled pairs (negative: challenger better)."""
    error_rate: dict[str, float]
    error_delta: Estimate | None
    latency_s: dict[str, dict[str, float]]
    """`champion` / `challenger` -> `p50` / `p99` (seconds)."""
    latency_diff_s: dict[str, float]
    """`p50` / `p99`: challenger minus champion (seconds)."""
    log_latency_ratio: Estimate | None
    unpaired: dict[str, int]
    gate: Gate
    reason: str

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("disagreement", "prediction_delta", "loss_delta", "error_delta"):
            value = getattr(self, key)
            out[key] = value.to_dict() if value is not None else None
        ratio = self.log_latency_ratio
        out["log_latency_ratio"] = ratio.to_dict() if ratio is not None else None
        return dict(jsonable(out))  # NaN and infinities become None: valid JSON


def _losses(
    scores: np.ndarray, labels: np.ndarray, problem_type: str, positive_label: str
) -> np.ndarray:
    if problem_type == "regression":
        return np.asarray((scores - labels.astype(float)) ** 2, dtype=float)
    truth = (labels == positive_label).astype(float)
    p = np.clip(scores, 1e-6, 1 - 1e-6)
    return np.asarray(-(truth * np.log(p) + (1 - truth) * np.log(1 - p)), dtype=float)


def _quantiles(values: np.ndarray) -> dict[str, float]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return {"p50": math.nan, "p99": math.nan}
    return {"p50": float(np.quantile(v, 0.5)), "p99": float(np.quantile(v, 0.99))}


def shadow_look(
    pairs: ShadowPairs,
    policy: ShadowPolicy,
    *,
    problem_type: Literal["classification", "regression"],
    positive_label: str = "1",
    states: dict[str, dict[str, Any]] | None = None,
) -> tuple[ShadowReport, dict[str, dict[str, Any]]]:
    """Update the shadow's confidence sequences with every pair so far and apply the gate.
    Returns the report and the new states (persist them for the next look)."""
    states = dict(states or {})

    def look(name: str, values: np.ndarray, tau: float, smoothing: bool = False) -> Estimate:
        prior = SequentialState.from_dict(states[name]) if name in states else None
        est, new = mean_look(
            values, alpha=policy.alpha, tau=tau, state=prior, metric=name, smoothing=smoothing
        )
        states[name] = new.to_dict()
        return est

    n = pairs.rows
    warm = min(policy.warmup_requests, pairs.requests)
    settled = pairs.requests - warm
    enough = n >= max(2, policy.min_pairs) and settled >= max(2, policy.min_requests)
    a, b = pairs.champion_score, pairs.challenger_score
    if problem_type == "regression":
        scale = np.maximum(np.abs(a), 1e-9)
        differs = np.abs(b - a) > policy.regression_tolerance * scale
    else:
        differs = pairs.champion_prediction != pairs.challenger_prediction
    both = np.isfinite(a) & np.isfinite(b)
    delta = (b - a)[both]

    disagreement = (
        look("shadow_disagreement", differs.astype(float), policy.tau_disagreement, True)
        if enough
        else None
    )
    prediction_delta = None
    if enough and delta.size >= 2:
        prediction_delta = look("shadow_prediction_delta", delta, policy.tau_loss)
    labelled = (pairs.label != "") & both
    loss_delta: Estimate | None = None
    if int(labelled.sum()) >= max(2, policy.min_labelled):
        la = _losses(a[labelled], pairs.label[labelled], problem_type, positive_label)
        lb = _losses(b[labelled], pairs.label[labelled], problem_type, positive_label)
        loss_delta = look("shadow_loss_delta", lb - la, policy.tau_loss)
    error_delta = None
    log_ratio = None
    champ_lat, chall_lat = pairs.champion_latency_s[warm:], pairs.challenger_latency_s[warm:]
    if enough:
        error_delta = look(
            "shadow_error_delta", pairs.challenger_error - pairs.champion_error, policy.tau_error
        )
        ok = np.isfinite(champ_lat) & np.isfinite(chall_lat)
        if int(ok.sum()) >= 2:
            ratio = np.log(np.maximum(chall_lat[ok], 1e-6)) - np.log(
                np.maximum(champ_lat[ok], 1e-6)
            )
            log_ratio = look("shadow_log_latency_ratio", ratio, policy.tau_latency)

    lat = {"champion": _quantiles(champ_lat), "challenger": _quantiles(chall_lat)}
    gate, reason = _gate(
        policy, n, settled, disagreement, loss_delta, error_delta, log_ratio, problem_type
    )
    report = ShadowReport(
        problem_type=problem_type,
        pairs=n,
        requests=pairs.requests,
        labelled=int(labelled.sum()),
        disagreement=disagreement,
        prediction_delta=prediction_delta,
        mean_abs_delta=float(np.abs(delta).mean()) if delta.size else None,
        loss_delta=loss_delta,
        error_rate={
            "champion": float(pairs.champion_error.mean()) if pairs.requests else math.nan,
            "challenger": float(pairs.challenger_error.mean()) if pairs.requests else math.nan,
        },
        error_delta=error_delta,
        latency_s=lat,
        latency_diff_s={q: lat["challenger"][q] - lat["champion"][q] for q in ("p50", "p99")},
        log_latency_ratio=log_ratio,
        unpaired={"champion": pairs.unpaired_champion, "challenger": pairs.unpaired_challenger},
        gate=gate,
        reason=reason,
    )
    return report, states


def _gate(
    policy: ShadowPolicy,
    n: int,
    requests: int,
    disagreement: Estimate | None,
    loss_delta: Estimate | None,
    error_delta: Estimate | None,
    log_ratio: Estimate | None,
    problem_type: str,
) -> tuple[Gate, str]:
    if disagreement is None:
        return "pending", (
            f"shadowing: {n} of {policy.min_pairs} paired answers, {requests} of "
            f"{policy.min_requests} paired requests after the warm-up"
        )
    if error_delta is not None and error_delta.ci_low > policy.max_error_increase:
        return "fail", (
            f"shadow: the challenger fails {error_delta.estimate:+.2%} more requests than the "
            f"champion (CI low {error_delta.ci_low:+.2%} > {policy.max_error_increase:.2%})"
        )
    slow = math.log1p(policy.latency_tolerance)
    if log_ratio is not None and log_ratio.ci_low > slow:
        return "fail", (
            f"shadow: the challenger is {math.exp(log_ratio.estimate):.2f}x slower than the "
            f"champion (tolerance {1 + policy.latency_tolerance:.2f}x)"
        )
    if loss_delta is not None and loss_delta.ci_low > 0:
        return "fail", (
            f"shadow: the challenger's loss is higher by {loss_delta.estimate:.4f} on "
            f"{loss_delta.n} labelled paired rows (CI {loss_delta.ci_low:.4f}.."
            f"{loss_delta.ci_high:.4f})"
        )
    what = "disagrees with" if problem_type == "classification" else "differs from"
    rate = disagreement.estimate
    if loss_delta is not None and loss_delta.ci_high < 0:
        return "pass", (
            f"shadow passed: the challenger {what} the champion on {rate:.1%} of {n} rows and "
            f"its loss is lower by {-loss_delta.estimate:.4f} on {loss_delta.n} labelled paired "
            f"rows (CI {loss_delta.ci_low:.4f}..{loss_delta.ci_high:.4f})"
        )
    if disagreement.ci_low > policy.max_disagreement:
        return "fail", (
            f"shadow: the challenger {what} the champion on {rate:.1%} of {n} rows (CI "
            f"{disagreement.ci_low:.1%}..{disagreement.ci_high:.1%}, limit "
            f"{policy.max_disagreement:.0%})"
        )
    if disagreement.ci_high <= policy.max_disagreement:
        return "pass", (
            f"shadow passed: the challenger {what} the champion on {rate:.1%} of {n} rows (CI "
            f"{disagreement.ci_low:.1%}..{disagreement.ci_high:.1%} within "
            f"{policy.max_disagreement:.0%})"
        )
    if n >= policy.max_pairs:
        return "fail", (
            f"shadow: after {n} paired rows the disagreement ({rate:.1%}, CI "
            f"{disagreement.ci_low:.1%}..{disagreement.ci_high:.1%}) is not shown to be within "
            f"{policy.max_disagreement:.0%}"
        )
    return "pending", (
        f"shadowing: disagreement {rate:.1%} (CI {disagreement.ci_low:.1%}.."
        f"{disagreement.ci_high:.1%}) not yet clear of the {policy.max_disagreement:.0%} limit"
    )
