"""The promotion controller's Prometheus metrics, in a registry of their own.

Served by `mainsail promote --watch` on `promotion.metrics_port` (and by the loop demo), scraped
as job `mainsail-promotion`; the alert rules `MainsailSampleRatioMismatch` and
`MainsailShadowGateFailed` read them. Every series carries `model`; experiment series also the
challenger's `version`.

- `mainsail_ab_stage_weight{model,version}`: challenger percent of the current stage (0 = shadow).
- `mainsail_ab_requests{model,version,variant}`: requests assigned to each variant in the stage.
- `mainsail_ab_failovers{model,version,variant}`: of those, requests the other variant answered
  (the assigned one was out of rotation or gave no answer).
- `mainsail_ab_expected_share{model,version}` / `mainsail_ab_observed_share{model,version}`:
  configured and observed challenger share of the stage.
- `mainsail_ab_srm_p_value{model,version,test}`: `sequential` (always valid; decides) and
  `chi2` (fixed horizon; reported) p-values of the split.
- `mainsail_ab_srm_mismatch{model,version}`: 1 when the split is a mismatch (experiment paused).
- `mainsail_ab_paused{model,version}`: 1 while the experiment is paused.
- `mainsail_ab_decisions_total{model,action}`: acted-on decisions.
- `mainsail_shadow_pairs{model,version}`: paired answers of the shadow stage (rows).
- `mainsail_shadow_labelled_pairs{model,version}`: of which with ground truth.
- `mainsail_shadow_disagreement{model,version,stat}` / `mainsail_shadow_loss_delta{...}` /
  `mainsail_shadow_prediction_delta{...}`: `estimate`, `ci_low`, `ci_high`.
- `mainsail_shadow_error_rate{model,version,variant}`: failed-request share of each side.
- `mainsail_shadow_latency_seconds{model,version,variant,quantile}`: p50 / p99 of each side.
- `mainsail_shadow_latency_diff_seconds{model,version,quantile}`: challenger minus champion.
- `mainsail_shadow_gate{model,version}`: 1 passed, 0 pending, -1 failed.
"""

from __future__ import annotations

import math
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from mainsail.promotion.ab import Decision

__all__ = ["PromotionMetrics"]

_MV = ("model", "version")
_GATE = {"pass": 1.0, "pending": 0.0, "fail": -1.0}


class PromotionMetrics:
    """Gauges of the latest look, refreshed by :meth:`record`."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.stage_weight = Gauge(
            "mainsail_ab_stage_weight",
            "Challenger percent of the current ramp stage (0 = shadow)",
            _MV,
            registry=r,
        )
        self.requests = Gauge(
            "mainsail_ab_requests",
            "Requests assigned to each variant in the current ramp stage",
            [*_MV, "variant"],
            registry=r,
        )
        self.failovers = Gauge(
            "mainsail_ab_failovers",
            "Requests assigned to a variant in the current ramp stage that the other answered",
            [*_MV, "variant"],
            registry=r,
        )
        self.expected_share = Gauge(
            "mainsail_ab_expected_share",
            "Configured challenger share of the current stage",
            _MV,
            registry=r,
        )
        self.observed_share = Gauge(
            "mainsail_ab_observed_share",
            "Observed challenger share of the current stage",
            _MV,
            registry=r,
        )
        self.srm_p_value = Gauge(
            "mainsail_ab_srm_p_value",
            "p-value of the sample-ratio check (test=sequential decides, test=chi2 is reported)",
            [*_MV, "test"],
            registry=r,
        )
        self.srm_mismatch = Gauge(
            "mainsail_ab_srm_mismatch",
            "1 when the split does not match the configured weight (experiment paused)",
            _MV,
            registry=r,
        )
        self.paused = Gauge(
            "mainsail_ab_paused", "1 while the experiment is paused", _MV, registry=r
        )
        self.decisions = Counter(
            "mainsail_ab_decisions",
            "Acted-on promotion decisions by action",
            ["model", "action"],
            registry=r,
        )
        self.shadow_pairs = Gauge(
            "mainsail_shadow_pairs",
            "Rows answered by both the champion and the shadowed challenger",
            _MV,
            registry=r,
        )
        self.shadow_labelled = Gauge(
            "mainsail_shadow_labelled_pairs",
            "Paired shadow rows with ground truth",
            _MV,
            registry=r,
        )
        self.shadow_disagreement = Gauge(
            "mainsail_shadow_disagreement",
            "Share of paired rows where the challenger's answer differs from the champion's",
            [*_MV, "stat"],
            registry=r,
        )
        self.shadow_loss_delta = Gauge(
            "mainsail_shadow_loss_delta",
            "Challenger minus champion loss on labelled paired rows",
            [*_MV, "stat"],
            registry=r,
        )
        self.shadow_prediction_delta = Gauge(
            "mainsail_shadow_prediction_delta",
            "Challenger minus champion score (P(positive)) or value on paired rows",
            [*_MV, "stat"],
            registry=r,
        )
        self.shadow_error_rate = Gauge(
            "mainsail_shadow_error_rate",
            "Failed-request share in the shadow stage, per side",
            [*_MV, "variant"],
            registry=r,
        )
        self.shadow_latency = Gauge(
            "mainsail_shadow_latency_seconds",
            "Latency quantiles of paired shadow requests, per side",
            [*_MV, "variant", "quantile"],
            registry=r,
        )
        self.shadow_latency_diff = Gauge(
            "mainsail_shadow_latency_diff_seconds",
            "Challenger minus champion latency quantile in the shadow stage",
            [*_MV, "quantile"],
            registry=r,
        )
        self.shadow_gate = Gauge(
            "mainsail_shadow_gate",
            "Shadow gate of the challenger: 1 passed, 0 pending, -1 failed",
            _MV,
            registry=r,
        )

    def record(
        self,
        model: str,
        version: str,
        weight: int,
        decision: Decision,
        *,
        counts: dict[str, int] | None = None,
        paused: bool = False,
        acted: bool = False,
    ) -> None:
        """Export one look."""
        self.stage_weight.labels(model, version).set(weight)
        self.paused.labels(model, version).set(1.0 if paused else 0.0)
        if acted:
            self.decisions.labels(model, decision.action).inc()
        if counts is not None:
            for variant in ("champion", "challenger"):
                self.requests.labels(model, version, variant).set(counts.get(variant, 0))
        if decision.failovers is not None:
            for variant in ("champion", "challenger"):
                moved = decision.failovers.get(variant, {}).get("failed_over", 0)
                self.failovers.labels(model, version, variant).set(moved)
        srm = decision.srm
        if srm is not None:
            self.expected_share.labels(model, version).set(srm.expected_share)
            if not math.isnan(srm.observed_share):
                self.observed_share.labels(model, version).set(srm.observed_share)
            self.srm_p_value.labels(model, version, "sequential").set(srm.p_value)
            self.srm_p_value.labels(model, version, "chi2").set(srm.chi2_p_value)
            self.srm_mismatch.labels(model, version).set(1.0 if srm.mismatch else 0.0)
        if decision.shadow is not None:
            self._shadow(model, version, decision.shadow)

    def _shadow(self, model: str, version: str, report: dict[str, Any]) -> None:
        self.shadow_pairs.labels(model, version).set(report["pairs"])
        self.shadow_labelled.labels(model, version).set(report["labelled"])
        for gauge, key in (
            (self.shadow_disagreement, "disagreement"),
            (self.shadow_loss_delta, "loss_delta"),
            (self.shadow_prediction_delta, "prediction_delta"),
        ):
            est = report.get(key)
            if est is None:
                continue
            for stat in ("estimate", "ci_low", "ci_high"):
                value = est.get(stat)
                if value is not None:
                    gauge.labels(model, version, stat).set(value)
        for variant, rate in report["error_rate"].items():
            if rate is not None:
                self.shadow_error_rate.labels(model, version, variant).set(rate)
        for variant, quantiles in report["latency_s"].items():
            for q, value in quantiles.items():
                if value is not None:
                    self.shadow_latency.labels(model, version, variant, q).set(value)
        for q, value in report["latency_diff_s"].items():
            if value is not None:
                self.shadow_latency_diff.labels(model, version, q).set(value)
        self.shadow_gate.labels(model, version).set(_GATE[report["gate"]])
