"""Grafana dashboards generated from code, checked in as JSON under monitoring/dashboards/.

Six dashboards: model overview (traffic, errors, latency per variant), drift (raw and corrected
p-values per feature over time, distances against their effect-size floors, is_drift heat map,
sidecar health), features (freshness, missing values), training runs (what the retrain trigger
started and how the runs ended), experiments (the sample-ratio check of each canary stage, the
shadow stage's paired report, the controller's decisions) and model quality (the label-free
performance estimate against the model card's validated value, the calibration check). Every
panel query is a :class:`Query` that says whether data is expected once the stack runs; the
live test evaluates each one against a real Prometheus.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Dashboard", "Panel", "Query", "dashboards", "render_dashboard", "substitute"]

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'model=~"$model"'
SEL_V = 'model=~"$model", version=~"$version"'
RI = "$__rate_interval"


@dataclass(frozen=True)
class Query:
    """One PromQL target of a panel."""

    expr: str
    legend: str = ""
    expect_data: bool = True
    """Whether a running stack with traffic must return series (false: e.g. firing alerts)."""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    kind: str = "timeseries"
    unit: str = "short"
    description: str = ""
    width: int = 12
    height: int = 8
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    variables: tuple[tuple[str, str], ...] = (("model", "mainsail_drift_window_rows"),)
    """(name, metric whose label of that name lists the values)."""


def _variable(name: str, metric: str, depends: str = "") -> dict[str, Any]:
    selector = f"{{{depends}}}" if depends else ""
    query = f"label_values({metric}{selector}, {name})"
    return {
        "name": name,
        "label": name,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"var-{name}"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def render_dashboard(d: Dashboard) -> dict[str, Any]:
    """The Grafana dashboard JSON model."""
    panels: list[dict[str, Any]] = []
    x = y = 0
    row_height = 0
    for i, p in enumerate(d.panels, start=1):
        if x + p.width > 24:
            x, y = 0, y + row_height
            row_height = 0
        panel: dict[str, Any] = {
            "id": i,
            "type": p.kind,
            "title": p.title,
            "description": p.description,
            "datasource": DATASOURCE,
            "gridPos": {"x": x, "y": y, "w": p.width, "h": p.height},
            "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
            "options": p.options,
            "targets": [
                {
                    "refId": chr(ord("A") + j),
                    "datasource": DATASOURCE,
                    "expr": q.expr,
                    "legendFormat": q.legend or "__auto",
                    "range": True,
                }
                for j, q in enumerate(p.queries)
            ],
        }
        panels.append(panel)
        x += p.width
        row_height = max(row_height, p.height)
    variables: list[dict[str, Any]] = [
        {
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
        }
    ]
    names: list[str] = []
    for name, metric in d.variables:
        depends = ", ".join(f'{n}=~"${n}"' for n in names)
        variables.append(_variable(name, metric, depends))
        names.append(name)
    return {
        "uid": d.uid,
        "title": d.title,
        "description": d.description,
        "tags": ["mainsail"],
        "timezone": "utc",
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": []},
        "panels": panels,
    }


def dashboards() -> list[Dashboard]:
    """Every dashboard, in a stable order."""
    overview = Dashboard(
        uid="mainsail-model-overview",
        title="Mainsail / Model overview",
        description="Traffic, errors and latency per variant (champion, challenger, mirror).",
        variables=(("model", "mainsail_router_requests_total"),),
        panels=(
            Panel(
                "Requests per second by variant",
                (
                    Query(
                        f"sum by (variant) (rate(mainsail_router_requests_total{{{SEL}}}[{RI}]))",
                        "{{variant}}",
                    ),
                ),
                unit="reqps",
            ),
            Panel(
                "Error rate by variant",
                (
                    Query(
                        f"sum by (variant) (rate(mainsail_router_errors_total{{{SEL}}}[{RI}])) "
                        f"/ sum by (variant) (rate(mainsail_router_requests_total{{{SEL}}}[{RI}]))",
                        "{{variant}}",
                    ),
                ),
                unit="percentunit",
            ),
            Panel(
                "Latency p50 / p99 by variant",
                tuple(
                    Query(
                        f"histogram_quantile({q}, sum by (variant, le) "
                        f"(rate(mainsail_router_request_duration_seconds_bucket{{{SEL}}}[{RI}])))",
                        f"{{{{variant}}}} p{int(q * 100)}",
                    )
                    for q in (0.5, 0.99)
                ),
                unit="s",
            ),
            Panel(
                "Responses by status code",
                (
                    Query(
                        "sum by (variant, code) "
                        f"(rate(mainsail_router_requests_total{{{SEL}}}[{RI}]))",
                        "{{variant}} {{code}}",
                    ),
                ),
                unit="reqps",
            ),
            Panel(
                "Traffic weight and health",
                (
                    Query(f"mainsail_router_variant_weight{{{SEL}}}", "{{variant}} weight"),
                    Query(f"mainsail_router_variant_healthy{{{SEL}}}", "{{variant}} healthy"),
                ),
            ),
            Panel(
                "Failovers: assigned variant -> answering variant",
                (
                    Query(
                        "sum by (assigned, variant, reason) "
                        f"(rate(mainsail_router_failovers_total{{{SEL}}}[{RI}]))",
                        "{{assigned}} -> {{variant}} ({{reason}})",
                        # no series until a variant fails over (tests/cluster/test_serving.py
                        # kills a pod to see it)
                        expect_data=False,
                    ),
                ),
                unit="reqps",
                description="Requests another variant answered because the one they were "
                "assigned to was out of rotation or gave no answer. The experiment counts them "
                "on the assigned side; a steady rate means a variant is down.",
            ),
            Panel(
                "Firing alerts",
                (Query('ALERTS{alertstate="firing"}', "{{alertname}}", expect_data=False),),
                kind="table",
            ),
        ),
    )
    drift = Dashboard(
        uid="mainsail-drift",
        title="Mainsail / Drift",
        description="Per-feature drift tests of served rows against the reference (alibi-detect).",
        variables=(
            ("model", "mainsail_drift_window_rows"),
            ("version", "mainsail_drift_window_rows"),
        ),
        panels=(
            Panel(
                "p-value per feature",
                (
                    Query(f"mainsail_drift_feature_p_value{{{SEL_V}}}", "{{feature}} ({{test}})"),
                    Query(f"mainsail_drift_p_value_threshold{{{SEL_V}}}", "threshold"),
                ),
                unit="short",
                description="Raw p-values; the threshold is the raw p-value the multiple-testing "
                "correction lets through in this check.",
                width=24,
                height=10,
            ),
            Panel(
                "Corrected p-value per feature",
                (
                    Query(
                        f"mainsail_drift_feature_corrected_p_value{{{SEL_V}}}",
                        "{{feature}} ({{test}})",
                    ),
                    Query(
                        f"mainsail_drift_significance_level{{{SEL_V}}}",
                        "significance level ({{correction}})",
                    ),
                ),
                description="After the correction for multiple comparisons (FDR or Bonferroni): "
                "below the level means significant.",
            ),
            Panel(
                "Distance per feature against its effect-size floor",
                (
                    Query(f"mainsail_drift_feature_distance{{{SEL_V}}}", "{{feature}} ({{test}})"),
                    Query(
                        f"mainsail_drift_feature_distance_threshold{{{SEL_V}}}",
                        "floor {{feature}}",
                    ),
                ),
                description="KS distance (numeric) or total variation distance (categories). "
                "Drift needs significance AND a distance at least the floor.",
            ),
            Panel(
                "Significant but below the effect floor",
                (
                    Query(
                        f"mainsail_drift_feature_significant{{{SEL_V}}} "
                        f"- mainsail_drift_feature_is_drift{{{SEL_V}}}",
                        "{{feature}}",
                    ),
                ),
                description="1 where a feature's change is statistically real but too small to "
                "count: the false alarms the floor keeps quiet on big windows.",
            ),
            Panel(
                "is_drift heat map",
                (Query(f"mainsail_drift_feature_is_drift{{{SEL_V}}}", "{{feature}}"),),
                kind="heatmap",
                description="1 (hot) where the feature was drifted in a check.",
                options={"calculate": False, "yAxis": {"axisLabel": "feature"}},
                width=24,
                height=10,
            ),
            Panel(
                "Test distance per feature",
                (Query(f"mainsail_drift_feature_distance{{{SEL_V}}}", "{{feature}} ({{test}})"),),
            ),
            Panel(
                "Whole-row drift: consecutive drifted checks",
                (
                    Query(f"mainsail_drift_consecutive_drifted_checks{{{SEL_V}}}", "{{version}}"),
                    Query(f"mainsail_drift_drifted_features{{{SEL_V}}}", "{{version}} features"),
                ),
            ),
            Panel(
                "Prediction drift p-value",
                (Query(f"mainsail_drift_prediction_p_value{{{SEL_V}}}", "{{version}} ({{test}})"),),
            ),
            Panel(
                "Window and check age",
                (
                    Query(f"mainsail_drift_window_rows{{{SEL_V}}}", "{{version}} window rows"),
                    Query(
                        f"time() - mainsail_drift_last_check_timestamp_seconds{{{SEL_V}}}",
                        "{{version}} seconds since check",
                    ),
                ),
            ),
            Panel(
                "Sidecar throughput",
                (
                    Query(
                        "sum by (version) "
                        f"(rate(mainsail_drift_rows_received_total{{{SEL_V}}}[{RI}]))",
                        "{{version}} rows/s",
                    ),
                    Query(
                        f"sum by (reason) (rate(mainsail_drift_batches_rejected_total[{RI}]))",
                        "rejected {{reason}}",
                        expect_data=False,
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Sidecar health",
                (
                    Query('up{job="mainsail-drift"}', "up {{instance}}"),
                    Query("mainsail_drift_queue_batches", "queued batches"),
                    Query(
                        "histogram_quantile(0.9, sum by (le) "
                        f"(rate(mainsail_drift_check_duration_seconds_bucket[{RI}])))",
                        "check p90 (s)",
                    ),
                ),
            ),
        ),
    )
    features = Dashboard(
        uid="mainsail-features",
        title="Mainsail / Features",
        description="Freshness and completeness of online features and served rows.",
        variables=(("model", "mainsail_drift_feature_missing_ratio"),),
        panels=(
            Panel(
                "Feature age p50 / p95 per view",
                tuple(
                    Query(
                        f"histogram_quantile({q}, sum by (view, le) "
                        f"(rate(mainsail_feature_age_seconds_bucket[{RI}])))",
                        f"{{{{view}}}} p{int(q * 100)}",
                    )
                    for q in (0.5, 0.95)
                ),
                unit="s",
            ),
            Panel(
                "Stale and missing online values per view",
                (
                    Query(
                        f"sum by (view) (rate(mainsail_feature_stale_values_total[{RI}]))",
                        "{{view}} stale",
                    ),
                    Query(
                        f"sum by (view) (rate(mainsail_feature_missing_values_total[{RI}]))",
                        "{{view}} missing",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Missing share per feature in served rows",
                (
                    Query(
                        f"mainsail_drift_feature_missing_ratio{{{SEL}}}",
                        "{{feature}} ({{version}})",
                    ),
                ),
                unit="percentunit",
                width=24,
            ),
            Panel(
                "Online store fallbacks",
                (
                    Query(
                        f"sum by (reason) (rate(mainsail_feature_fallback_total[{RI}]))",
                        "{{reason}}",
                        expect_data=False,
                    ),
                ),
                unit="ops",
            ),
        ),
    )
    training = Dashboard(
        uid="mainsail-training-runs",
        title="Mainsail / Training runs",
        description="Retraining runs started by the trigger from drift alerts, and their outcome.",
        variables=(("model", "mainsail_retrain_runs_started_total"),),
        panels=(
            Panel(
                "Runs started",
                (
                    Query(
                        f"sum by (model) (mainsail_retrain_runs_started_total{{{SEL}}})",
                        "{{model}}",
                    ),
                ),
                kind="stat",
            ),
            Panel(
                "Runs finished by outcome",
                (
                    Query(
                        f"sum by (model, outcome) (mainsail_retrain_runs_finished_total{{{SEL}}})",
                        "{{model}} {{outcome}}",
                    ),
                ),
                kind="stat",
            ),
            Panel(
                "Runs in progress",
                (Query(f"mainsail_retrain_runs_running{{{SEL}}}", "{{model}}"),),
            ),
            Panel(
                "Last run started",
                (
                    Query(
                        f"mainsail_retrain_last_run_start_timestamp_seconds{{{SEL}}} * 1000",
                        "{{model}}",
                    ),
                ),
                kind="stat",
                unit="dateTimeAsIso",
            ),
            Panel(
                "Run duration (median)",
                (
                    Query(
                        "histogram_quantile(0.5, sum by (model, le) "
                        f"(mainsail_retrain_run_duration_seconds_bucket{{{SEL}}}))",
                        "{{model}}",
                    ),
                ),
                unit="s",
            ),
            Panel(
                "Trigger decisions on alerts",
                (
                    Query(
                        "sum by (decision) (mainsail_retrain_decisions_total)",
                        "{{decision}}",
                    ),
                ),
            ),
        ),
    )
    experiments = Dashboard(
        uid="mainsail-experiments",
        title="Mainsail / Experiments",
        description="Shadow stage, sample-ratio check and decisions of the promotion controller.",
        variables=(
            ("model", "mainsail_ab_stage_weight"),
            ("version", "mainsail_ab_stage_weight"),
        ),
        panels=(
            Panel(
                "Ramp stage (challenger percent; 0 = shadow)",
                (Query(f"mainsail_ab_stage_weight{{{SEL_V}}}", "v{{version}}"),),
            ),
            Panel(
                "Challenger share: configured vs observed",
                (
                    Query(f"mainsail_ab_expected_share{{{SEL_V}}}", "configured v{{version}}"),
                    Query(f"mainsail_ab_observed_share{{{SEL_V}}}", "observed v{{version}}"),
                ),
                unit="percentunit",
                description="The sample-ratio check compares these at every look.",
            ),
            Panel(
                "Sample-ratio check p-values",
                (Query(f"mainsail_ab_srm_p_value{{{SEL_V}}}", "{{test}} v{{version}}"),),
                description="`sequential` decides (always valid, however often it looks); "
                "`chi2` is the one-look chi-square test, for reference.",
            ),
            Panel(
                "Requests per variant in the stage",
                (Query(f"mainsail_ab_requests{{{SEL_V}}}", "{{variant}}"),),
            ),
            Panel(
                "Mismatch and pause",
                (
                    Query(f"mainsail_ab_srm_mismatch{{{SEL_V}}}", "mismatch v{{version}}"),
                    Query(f"mainsail_ab_paused{{{SEL_V}}}", "paused v{{version}}"),
                ),
            ),
            Panel(
                "Decisions",
                (
                    Query(
                        f"sum by (action) (mainsail_ab_decisions_total{{{SEL}}})",
                        "{{action}}",
                    ),
                ),
                kind="stat",
            ),
            Panel(
                "Shadow: disagreement with the champion",
                (Query(f"mainsail_shadow_disagreement{{{SEL_V}}}", "{{stat}}"),),
                unit="percentunit",
                description="Share of paired answers that differ, with its always-valid "
                "interval (ci_low, ci_high).",
            ),
            Panel(
                "Shadow: loss delta on labelled pairs",
                (Query(f"mainsail_shadow_loss_delta{{{SEL_V}}}", "{{stat}}"),),
                description="Challenger minus champion loss on the same requests (negative: "
                "the challenger is better).",
            ),
            Panel(
                "Shadow: latency p50 / p99 per side",
                (
                    Query(
                        f"mainsail_shadow_latency_seconds{{{SEL_V}}}", "{{variant}} {{quantile}}"
                    ),
                    Query(
                        f"mainsail_shadow_latency_diff_seconds{{{SEL_V}}}",
                        "difference {{quantile}}",
                    ),
                ),
                unit="s",
            ),
            Panel(
                "Shadow: error rate per side and gate",
                (
                    Query(f"mainsail_shadow_error_rate{{{SEL_V}}}", "{{variant}} errors"),
                    Query(f"mainsail_shadow_gate{{{SEL_V}}}", "gate (1 pass, 0 pending, -1 fail)"),
                    Query(f"mainsail_shadow_pairs{{{SEL_V}}}", "pairs"),
                ),
            ),
        ),
    )
    quality = Dashboard(
        uid="mainsail-model-quality",
        title="Mainsail / Model quality",
        description="Label-free performance estimates (CBPE, DLE) of served versions against "
        "their validated values, and the calibration they rely on.",
        variables=(
            ("model", "mainsail_performance_estimate"),
            ("version", "mainsail_performance_estimate"),
        ),
        panels=(
            Panel(
                "Estimated vs validated metric",
                (
                    Query(
                        f"mainsail_performance_estimate{{{SEL_V}}}",
                        "estimated {{metric}} v{{version}}",
                    ),
                    Query(
                        f"mainsail_performance_validated{{{SEL_V}}}",
                        "validated {{metric}} v{{version}}",
                    ),
                ),
                width=24,
                height=10,
                description="The estimate comes from served scores alone; the alert fires when "
                "it falls below the model card's validated value by more than the margin.",
            ),
            Panel(
                "Calibration error on the reference sample",
                (
                    Query(
                        f"mainsail_performance_calibration_error{{{SEL_V}}}",
                        "{{scores}} v{{version}}",
                    ),
                ),
                description="Expected calibration error of the raw scores and after the "
                "isotonic recalibration (cross-fitted). CBPE is trusted only when it is small.",
            ),
            Panel(
                "Estimate rows and reliability",
                (
                    Query(f"mainsail_performance_estimate_rows{{{SEL_V}}}", "rows v{{version}}"),
                    Query(f"mainsail_performance_reliable{{{SEL_V}}}", "reliable v{{version}}"),
                ),
            ),
        ),
    )
    return [overview, drift, features, training, experiments, quality]


def dashboard_json(d: Dashboard) -> str:
    """Stable JSON text of a dashboard (the checked-in form)."""
    return json.dumps(render_dashboard(d), indent=2, sort_keys=True) + "\n"


#: Values the live test (and `mainsail monitoring check`) puts in for Grafana's variables.
TEST_VARIABLES = {
    "$__rate_interval": "30s",
    "$__range": "1h",
    "$model": ".*",
    "$version": ".*",
}


def substitute(expr: str, values: dict[str, str] | None = None) -> str:
    """Replace Grafana variables by concrete values (longest names first)."""
    values = values or TEST_VARIABLES
    for key in sorted(values, key=len, reverse=True):
        expr = expr.replace(key, values[key])
    return expr
