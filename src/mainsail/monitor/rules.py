"""Prometheus recording and alert rules of Mainsail, generated from `monitor.rules`.

Drift alerts need the sidecar to find the whole row drifted in several consecutive checks
(`mainsail_drift_consecutive_drifted_checks`) and the condition to hold for `drift_for`: one
unlucky window never pages anybody. Serving rules use the router's per-variant series, and the
canary rules compare the challenger with the champion of the same model.

A feature is drifted only when its corrected p-value (multiple comparisons) is significant AND
its distance reaches the effect-size floor; the per-feature alert reads both from their own
series, so its rule says in PromQL what the sidecar decides. The experiment rules read the
promotion controller's series (sample-ratio mismatch, shadow gate); the performance rule
compares the sidecar's label-free estimate with the model card's validated value.

Alerts that should start a retraining run carry the label `action="retrain"`; Alertmanager routes
exactly those to the retrain trigger (see :mod:`mainsail.monitor.alertmanager`).
"""

from __future__ import annotations

from typing import Any

import yaml

from mainsail.config.monitor import AlertRulesConfig

__all__ = ["DRIFT_JOB", "RETRAIN_ALERT", "alert_rules", "render_rules"]

#: Scrape job of the drift sidecar(s).
DRIFT_JOB = "mainsail-drift"
#: The alert that starts retraining.
RETRAIN_ALERT = "MainsailDriftSustained"

ERROR_RATIO = "mainsail:router_error_ratio:rate"
REQUEST_RATE = "mainsail:router_requests:rate"
LATENCY_P99 = "mainsail:router_latency_seconds:p99"
FEATURE_AGE_P50 = "mainsail:feature_age_seconds:p50"


def _alert(
    name: str, expr: str, for_: str, severity: str, summary: str, description: str, **labels: str
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity, **labels},
        "annotations": {"summary": summary, "description": description},
    }


def alert_rules(cfg: AlertRulesConfig, *, drift_job: str = DRIFT_JOB) -> dict[str, Any]:
    """The rule file as a mapping (`{"groups": [...]}`)."""
    w = cfg.rate_window
    champ, canary = cfg.champion_variant, cfg.canary_variant
    drift = {
        "name": "mainsail-drift",
        "rules": [
            _alert(
                RETRAIN_ALERT,
                # `instance` stays: the trigger fetches the drifted window from that sidecar.
                "max by (model, version, instance) (mainsail_drift_consecutive_drifted_checks) "
                f">= {cfg.drift_windows}",
                cfg.drift_for,
                "warning",
                "Sustained data drift on {{ $labels.model }} version {{ $labels.version }}",
                f"The drift sidecar found the served rows drifted in {{{{ $value }}}} consecutive "
                f"checks (alert from {cfg.drift_windows}); a retraining run is requested.",
                action="retrain",
            ),
            _alert(
                "MainsailFeatureDrift",
                "(mainsail_drift_feature_corrected_p_value <= on (model, version, instance) "
                "group_left max by (model, version, instance) (mainsail_drift_significance_level)) "
                "and on (model, version, instance, feature, test) "
                "(mainsail_drift_feature_distance >= mainsail_drift_feature_distance_threshold)",
                cfg.feature_drift_for,
                "info",
                "Feature {{ $labels.feature }} of {{ $labels.model }} version "
                "{{ $labels.version }} drifted",
                "Its corrected p-value is {{ $value }} (significant) and its distance is at least "
                "its floor: a change both real and large enough to matter.",
            ),
            _alert(
                "MainsailPredictionDrift",
                "max by (model, version, instance) (mainsail_drift_prediction_is_drift) == 1",
                cfg.drift_for,
                "info",
                "Prediction drift on {{ $labels.model }} version {{ $labels.version }}",
                "The distribution of the model's predictions differs from the reference.",
            ),
            _alert(
                "MainsailDriftSidecarDown",
                f'up{{job="{drift_job}"}} == 0 or absent(up{{job="{drift_job}"}})',
                cfg.sidecar_down_for,
                "critical",
                "The drift sidecar is down",
                "Prometheus cannot scrape the drift sidecar {{ $labels.instance }}; served rows "
                "are not checked for drift (serving itself is unaffected).",
            ),
            _alert(
                "MainsailDriftWorkerStalled",
                "time() - mainsail_drift_worker_heartbeat_timestamp_seconds > 60",
                cfg.sidecar_down_for,
                "critical",
                "The drift sidecar's check worker is stalled",
                "The sidecar answers but its check worker has not run for {{ $value }} seconds.",
            ),
        ],
    }
    serving = {
        "name": "mainsail-serving",
        "rules": [
            {
                "record": REQUEST_RATE,
                "expr": f"sum by (model, variant) (rate(mainsail_router_requests_total[{w}]))",
            },
            {
                "record": ERROR_RATIO,
                "expr": f"sum by (model, variant) (rate(mainsail_router_errors_total[{w}])) "
                f"/ sum by (model, variant) (rate(mainsail_router_requests_total[{w}]))",
            },
            {
                "record": LATENCY_P99,
                "expr": "histogram_quantile(0.99, sum by (model, variant, le) "
                f"(rate(mainsail_router_request_duration_seconds_bucket[{w}])))",
            },
            _alert(
                "MainsailHighErrorRate",
                f"{ERROR_RATIO} > {cfg.error_rate}",
                cfg.error_for,
                "critical",
                "High error rate on {{ $labels.model }} ({{ $labels.variant }})",
                f"{{{{ $value | humanizePercentage }}}} of requests fail (threshold "
                f"{cfg.error_rate:.0%}).",
            ),
            _alert(
                "MainsailLatencyP99High",
                f"{LATENCY_P99} > {cfg.latency_p99_s}",
                cfg.latency_for,
                "warning",
                "Slow responses on {{ $labels.model }} ({{ $labels.variant }})",
                f"p99 latency is {{{{ $value | humanizeDuration }}}} (threshold "
                f"{cfg.latency_p99_s}s).",
            ),
            _alert(
                "MainsailCanaryErrorsWorse",
                f'({ERROR_RATIO}{{variant="{canary}"}} - on (model) '
                f'{ERROR_RATIO}{{variant="{champ}"}} > {cfg.canary_error_margin}) '
                f'and on (model) {REQUEST_RATE}{{variant="{canary}"}} >= {cfg.canary_min_rps} '
                f'and on (model) {REQUEST_RATE}{{variant="{champ}"}} >= {cfg.canary_min_rps}',
                cfg.canary_for,
                "warning",
                "Canary of {{ $labels.model }} fails more often than the champion",
                f"The challenger's error rate exceeds the champion's by {{{{ $value | "
                f"humanizePercentage }}}} (margin {cfg.canary_error_margin:.0%}).",
                action="rollback",
                variant=canary,
            ),
            _alert(
                "MainsailCanaryLatencyWorse",
                f'{LATENCY_P99}{{variant="{canary}"}} > on (model) '
                f'({LATENCY_P99}{{variant="{champ}"}} * {cfg.canary_latency_ratio}) '
                f'and on (model) {REQUEST_RATE}{{variant="{canary}"}} >= {cfg.canary_min_rps} '
                f'and on (model) {REQUEST_RATE}{{variant="{champ}"}} >= {cfg.canary_min_rps}',
                cfg.canary_for,
                "warning",
                "Canary of {{ $labels.model }} is slower than the champion",
                f"The challenger's p99 latency is {{{{ $value | humanizeDuration }}}}, more than "
                f"{cfg.canary_latency_ratio}x the champion's.",
                action="rollback",
                variant=canary,
            ),
        ],
    }
    features = {
        "name": "mainsail-features",
        "rules": [
            {
                "record": FEATURE_AGE_P50,
                "expr": "histogram_quantile(0.5, sum by (view, le) "
                f"(rate(mainsail_feature_age_seconds_bucket[{w}])))",
            },
            _alert(
                "MainsailFeaturesStale",
                f"{FEATURE_AGE_P50} > {cfg.feature_stale_s}",
                cfg.stale_for,
                "warning",
                "Stale online features in view {{ $labels.view }}",
                f"The median age of served feature values is {{{{ $value | humanizeDuration }}}} "
                f"(threshold {cfg.feature_stale_s:.0f}s); is materialisation running?",
            ),
        ],
    }
    m = cfg.performance_margin
    em = cfg.performance_error_margin
    reliable = "and on (model, version, instance) (mainsail_performance_reliable == 1)"
    experiments = {
        "name": "mainsail-experiments",
        "rules": [
            _alert(
                "MainsailSampleRatioMismatch",
                "max by (model, version) (mainsail_ab_srm_mismatch) == 1",
                cfg.srm_for,
                "critical",
                "Sample-ratio mismatch in the canary of {{ $labels.model }} version "
                "{{ $labels.version }}: experiment paused",
                "The challenger's observed share of requests does not match its configured "
                "weight (always-valid sequential test). Every comparison on this split is "
                "biased, so the experiment is paused: no promotion, no rollback. Find the cause "
                "(sticky sessions, a failing variant, the router), then `mainsail promote "
                "--resume`.",
            ),
            _alert(
                "MainsailShadowGateFailed",
                "min by (model, version) (mainsail_shadow_gate) == -1",
                cfg.shadow_for,
                "warning",
                "Challenger {{ $labels.model }} version {{ $labels.version }} stopped at shadow",
                "Its mirrored answers failed the shadow gate (disagreement, errors, latency or "
                "loss on the labelled pairs); it never served a caller. See the shadow report "
                "beside the deployed model card.",
            ),
        ],
    }
    performance = {
        "name": "mainsail-performance",
        "rules": [
            _alert(
                "MainsailEstimatedPerformanceDrop",
                '(mainsail_performance_estimate{metric=~"accuracy|f1|roc_auc"} '
                "< on (model, version, metric, instance) "
                f"(mainsail_performance_validated - {m}) {reliable}) "
                'or (mainsail_performance_estimate{metric=~"mae|rmse"} '
                "> on (model, version, metric, instance) "
                f"(mainsail_performance_validated * {1 + em}) {reliable})",
                cfg.performance_for,
                "warning",
                "Estimated {{ $labels.metric }} of {{ $labels.model }} version "
                "{{ $labels.version }} below its validated value",
                f"The label-free estimate is {{{{ $value }}}}, beyond the model card's validated "
                f"value by more than the margin ({m} absolute for scores, {em:.0%} for errors); "
                "labels will tell for sure, but the served rows say the model does worse here.",
            ),
        ],
    }
    return {"groups": [drift, serving, features, experiments, performance]}


def render_rules(cfg: AlertRulesConfig, *, drift_job: str = DRIFT_JOB) -> str:
    """The rule file as YAML text (stable: the checked-in copy is compared with it)."""
    header = (
        "# Generated by mainsail.monitor.rules from the `monitor.rules` config; do not edit.\n"
        "# Regenerate with `mainsail monitoring render`.\n"
    )
    return header + yaml.safe_dump(
        alert_rules(cfg, drift_job=drift_job), sort_keys=False, width=100, allow_unicode=True
    )
