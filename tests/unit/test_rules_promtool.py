"""The generated alert rules, unit-tested with `promtool test rules` (Prometheus' own evaluator).

Each scenario feeds synthetic series and states which alerts fire when. Annotations are removed
from the rule file before the test (their text is checked by `promtool check rules`), so the
expectations compare alert names and labels only.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from mainsail.config.monitor import AlertRulesConfig
from mainsail.monitor.rules import alert_rules, render_rules

PROMTOOL = shutil.which("promtool")
NO_PROMTOOL = "promtool is missing: install the Debian package prometheus (make services)"

DRIFT = {"job": "mainsail-drift", "instance": "127.0.0.1:8010"}


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def _promtool_test(
    tmp_path: Path, cfg: AlertRulesConfig, tests: list[dict[str, Any]]
) -> tuple[int, str]:
    rules = copy.deepcopy(alert_rules(cfg))
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    spec = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": tests}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    assert PROMTOOL is not None, NO_PROMTOOL
    proc = subprocess.run(
        [PROMTOOL, "test", "rules", "test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stdout + proc.stderr


def _ok(tmp_path: Path, tests: list[dict[str, Any]], cfg: AlertRulesConfig | None = None) -> None:
    rc, out = _promtool_test(tmp_path, cfg or AlertRulesConfig(), tests)
    assert rc == 0, out


def test_rendered_rules_pass_promtool_check(tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(render_rules(AlertRulesConfig()))
    assert PROMTOOL is not None, NO_PROMTOOL
    proc = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 17 rules found" in proc.stdout


def test_drift_alert_needs_several_drifted_checks_held_for_the_duration(tmp_path: Path) -> None:
    labels = {**DRIFT, "model": "churn", "version": "3"}
    fired = {
        "exp_labels": {
            "severity": "warning",
            "action": "retrain",
            "model": "churn",
            "version": "3",
            "instance": DRIFT["instance"],
        }
    }
    _ok(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": [
                    # consecutive drifted checks: reaches 3 at minute 3 and stays
                    _series(
                        "mainsail_drift_consecutive_drifted_checks",
                        labels,
                        "0 1 2 3 4 5 6 7 8 9 10 11",
                    ),
                ],
                "alert_rule_test": [
                    {"eval_time": "2m", "alertname": "MainsailDriftSustained", "exp_alerts": []},
                    # condition true from 3m; `for: 5m` -> still pending at 7m, firing at 8m
                    {"eval_time": "7m", "alertname": "MainsailDriftSustained", "exp_alerts": []},
                    {
                        "eval_time": "8m",
                        "alertname": "MainsailDriftSustained",
                        "exp_alerts": [fired],
                    },
                ],
            },
            {
                "interval": "1m",
                # single drifted windows separated by clean ones: never sustained
                "input_series": [
                    _series(
                        "mainsail_drift_consecutive_drifted_checks",
                        labels,
                        "0 1 0 1 2 0 1 0 1 2 0 1 0 1 2 0",
                    )
                ],
                "alert_rule_test": [
                    {"eval_time": f"{m}m", "alertname": "MainsailDriftSustained", "exp_alerts": []}
                    for m in range(0, 16)
                ],
            },
        ],
    )


def test_drift_thresholds_follow_the_config(tmp_path: Path) -> None:
    cfg = AlertRulesConfig(drift_windows=2, drift_for="1m")
    labels = {**DRIFT, "model": "churn", "version": "3"}
    _ok(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": [
                    _series("mainsail_drift_consecutive_drifted_checks", labels, "0 1 2 3 4")
                ],
                "alert_rule_test": [
                    {"eval_time": "2m", "alertname": "MainsailDriftSustained", "exp_alerts": []},
                    {
                        "eval_time": "3m",
                        "alertname": "MainsailDriftSustained",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "action": "retrain",
                                    "model": "churn",
                                    "version": "3",
                                    "instance": DRIFT["instance"],
                                }
                            }
                        ],
                    },
                ],
            }
        ],
        cfg,
    )


def test_sidecar_down_fires_when_scrapes_fail_or_the_target_is_gone(tmp_path: Path) -> None:
    _ok(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": [_series("up", DRIFT, "1 1 0 0 0 0")],
                "alert_rule_test": [
                    {"eval_time": "2m", "alertname": "MainsailDriftSidecarDown", "exp_alerts": []},
                    {
                        "eval_time": "3m",
                        "alertname": "MainsailDriftSidecarDown",
                        "exp_alerts": [{"exp_labels": {**DRIFT, "severity": "critical"}}],
                    },
                ],
            },
            {
                "interval": "1m",
                "input_series": [_series("up", {"job": "router", "instance": "x"}, "1 1 1 1")],
                "alert_rule_test": [
                    {
                        "eval_time": "2m",
                        "alertname": "MainsailDriftSidecarDown",
                        "exp_alerts": [
                            {"exp_labels": {"job": "mainsail-drift", "severity": "critical"}}
                        ],
                    }
                ],
            },
        ],
    )


def _router(variant: str, requests_per_min: int, errors_per_min: int) -> list[dict[str, str]]:
    base = {"model": "churn", "variant": variant, "version": "1"}
    return [
        _series(
            "mainsail_router_requests_total", {**base, "code": "200"}, f"0+{requests_per_min}x30"
        ),
        _series(
            "mainsail_router_errors_total",
            {**base, "reason": "status_5xx"},
            f"0+{errors_per_min}x30",
        ),
    ]


def test_error_rate_per_variant_and_canary_worse_than_champion(tmp_path: Path) -> None:
    series = _router("champion", 600, 6) + _router("challenger", 600, 60)  # 1% vs 10%
    _ok(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {
                        "eval_time": "10m",
                        "alertname": "MainsailHighErrorRate",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "critical",
                                    "model": "churn",
                                    "variant": "challenger",
                                }
                            }
                        ],
                    },
                    {
                        "eval_time": "20m",
                        "alertname": "MainsailCanaryErrorsWorse",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "action": "rollback",
                                    "model": "churn",
                                    "variant": "challenger",
                                }
                            }
                        ],
                    },
                ],
            },
            {
                "interval": "1m",
                # both variants equally good: neither alert
                "input_series": _router("champion", 600, 6) + _router("challenger", 600, 6),
                "alert_rule_test": [
                    {"eval_time": "20m", "alertname": "MainsailHighErrorRate", "exp_alerts": []},
                    {
                        "eval_time": "20m",
                        "alertname": "MainsailCanaryErrorsWorse",
                        "exp_alerts": [],
                    },
                ],
            },
        ],
    )


def _latency(variant: str, fast: int, slow: int) -> list[dict[str, str]]:
    """Per minute: `fast` requests under 50 ms, `slow` ones between 0.5 s and 1 s."""
    base = {"model": "churn", "variant": variant, "version": "1"}
    out = []
    for le, count in (("0.05", fast), ("0.5", fast), ("1.0", fast + slow), ("+Inf", fast + slow)):
        out.append(
            _series(
                "mainsail_router_request_duration_seconds_bucket",
                {**base, "le": le},
                f"0+{count}x40",
            )
        )
    out.append(
        _series("mainsail_router_requests_total", {**base, "code": "200"}, f"0+{fast + slow}x40")
    )
    return out


def test_latency_p99_and_slow_canary(tmp_path: Path) -> None:
    _ok(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": _latency("champion", 1000, 0) + _latency("challenger", 900, 100),
                "alert_rule_test": [
                    {"eval_time": "5m", "alertname": "MainsailLatencyP99High", "exp_alerts": []},
                    {
                        "eval_time": "15m",
                        "alertname": "MainsailLatencyP99High",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "model": "churn",
                                    "variant": "challenger",
                                }
                            }
                        ],
                    },
                    {
                        "eval_time": "15m",
                        "alertname": "MainsailCanaryLatencyWorse",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "action": "rollback",
                                    "model": "churn",
                                    "variant": "challenger",
                                }
                            }
                        ],
                    },
                ],
            }
        ],
    )


def test_stale_features_alert_per_view(tmp_path: Path) -> None:
    def view(name: str, fresh: int, old: int) -> list[dict[str, str]]:
        rows = []
        for le, count in (
            ("60.0", fresh),
            ("3600.0", fresh),
            ("86400.0", fresh + old),
            ("+Inf", fresh + old),
        ):
            rows.append(
                _series(
                    "mainsail_feature_age_seconds_bucket", {"view": name, "le": le}, f"0+{count}x40"
                )
            )
        return rows

    _ok(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": view("customer_usage", 10, 90) + view("customer_profile", 100, 0),
                "alert_rule_test": [
                    {
                        "eval_time": "20m",
                        "alertname": "MainsailFeaturesStale",
                        "exp_alerts": [
                            {"exp_labels": {"severity": "warning", "view": "customer_usage"}}
                        ],
                    }
                ],
            }
        ],
    )


def test_a_wrong_expectation_fails_so_the_harness_can_fail(tmp_path: Path) -> None:
    labels = {**DRIFT, "model": "churn", "version": "3"}
    rc, out = _promtool_test(
        tmp_path,
        AlertRulesConfig(),
        [
            {
                "interval": "1m",
                "input_series": [
                    _series("mainsail_drift_consecutive_drifted_checks", labels, "0 1 2 3 4 5")
                ],
                # wrong on purpose: `for: 5m` has not elapsed at 4m
                "alert_rule_test": [
                    {
                        "eval_time": "4m",
                        "alertname": "MainsailDriftSustained",
                        "exp_alerts": [{"exp_labels": {"model": "churn", "version": "3"}}],
                    }
                ],
            }
        ],
    )
    assert rc != 0
    assert "MainsailDriftSustained" in out


def test_feature_drift_needs_significance_and_size(tmp_path: Path) -> None:
    """Three features: significant and large (alert), significant but below the effect floor
    (no alert: the big-window case), large but not significant (no alert)."""
    base = {**DRIFT, "model": "churn", "version": "3"}

    def feature(name: str, corrected_p: float, distance: float) -> list[dict[str, str]]:
        labels = {**base, "feature": name, "test": "ks"}
        return [
            _series("mainsail_drift_feature_corrected_p_value", labels, f"{corrected_p}x30"),
            _series("mainsail_drift_feature_distance", labels, f"{distance}x30"),
            _series("mainsail_drift_feature_distance_threshold", labels, "0.05x30"),
        ]

    level = _series("mainsail_drift_significance_level", {**base, "correction": "fdr"}, "0.05x30")
    _ok(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": [
                    level,
                    *feature("support_calls", 1e-12, 0.12),
                    *feature("tenure_months", 1e-9, 0.012),
                    *feature("region", 0.4, 0.08),
                ],
                "alert_rule_test": [
                    {"eval_time": "10m", "alertname": "MainsailFeatureDrift", "exp_alerts": []},
                    {
                        "eval_time": "20m",
                        "alertname": "MainsailFeatureDrift",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    **base,
                                    "severity": "info",
                                    "feature": "support_calls",
                                    "test": "ks",
                                }
                            }
                        ],
                    },
                ],
            }
        ],
    )


def test_sample_ratio_mismatch_and_failed_shadow_gate_alert(tmp_path: Path) -> None:
    job = {"job": "mainsail-promotion", "instance": "127.0.0.1:8030"}
    _ok(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": [
                    _series(
                        "mainsail_ab_srm_mismatch",
                        {**job, "model": "churn", "version": "4"},
                        "0 0 0 1 1 1",
                    ),
                    _series(
                        "mainsail_ab_srm_mismatch",
                        {**job, "model": "iris", "version": "2"},
                        "0 0 0 0 0 0",
                    ),
                    _series(
                        "mainsail_shadow_gate", {**job, "model": "churn", "version": "5"}, "0 0 -1"
                    ),
                    _series(
                        "mainsail_shadow_gate", {**job, "model": "iris", "version": "3"}, "0 1 1"
                    ),
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "2m",
                        "alertname": "MainsailSampleRatioMismatch",
                        "exp_alerts": [],
                    },
                    {
                        "eval_time": "4m",
                        "alertname": "MainsailSampleRatioMismatch",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "critical",
                                    "model": "churn",
                                    "version": "4",
                                }
                            }
                        ],
                    },
                    {"eval_time": "1m", "alertname": "MainsailShadowGateFailed", "exp_alerts": []},
                    {
                        "eval_time": "2m",
                        "alertname": "MainsailShadowGateFailed",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "model": "churn",
                                    "version": "5",
                                }
                            }
                        ],
                    },
                ],
            }
        ],
    )


def test_estimated_performance_below_the_validated_value_alerts(tmp_path: Path) -> None:
    """Accuracy estimate 0.80 against a validated 0.87 (margin 0.05): alert; the same on a
    version whose calibration check failed: silent; 0.84 (within the margin): silent; an
    estimated MAE 30% above the validated one (margin 25%): alert."""

    def version(v: str, metric: str, estimate: float, validated: float, reliable: int) -> list:
        labels = {**DRIFT, "model": "churn", "version": v}
        return [
            _series(
                "mainsail_performance_estimate", {**labels, "metric": metric}, f"{estimate}x40"
            ),
            _series(
                "mainsail_performance_validated", {**labels, "metric": metric}, f"{validated}x40"
            ),
            _series("mainsail_performance_reliable", labels, f"{reliable}x40"),
        ]

    fired = {"severity": "warning", "model": "churn", "instance": DRIFT["instance"]}
    _ok(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": [
                    *version("1", "accuracy", 0.80, 0.87, 1),
                    *version("2", "accuracy", 0.80, 0.87, 0),
                    *version("3", "accuracy", 0.84, 0.87, 1),
                    *version("4", "mae", 1.30, 1.0, 1),
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "10m",
                        "alertname": "MainsailEstimatedPerformanceDrop",
                        "exp_alerts": [],
                    },
                    {
                        "eval_time": "20m",
                        "alertname": "MainsailEstimatedPerformanceDrop",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    **fired,
                                    "version": "1",
                                    "metric": "accuracy",
                                }
                            },
                            {
                                "exp_labels": {
                                    **fired,
                                    "version": "4",
                                    "metric": "mae",
                                }
                            },
                        ],
                    },
                ],
            }
        ],
    )
