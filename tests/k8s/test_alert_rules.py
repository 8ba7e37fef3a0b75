"""The chart's PrometheusRule carries the rules mainsail.monitor.rules generates (one source for
local Prometheus and the cluster), they are valid PromQL (promtool), and every metric they use
is declared in naming.py and emitted by the code."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from mainsail.core import naming

from . import checks

pytestmark = pytest.mark.k8s

# The alerts the platform promises (issue 8): drift sustained, sidecar down, error rate per
# variant, latency p99, stale features, canary worse than champion.
REQUIRED_ALERTS = {
    "MainsailDriftSustained",
    "MainsailDriftSidecarDown",
    "MainsailHighErrorRate",
    "MainsailLatencyP99High",
    "MainsailFeaturesStale",
    "MainsailCanaryErrorsWorse",
    "MainsailCanaryLatencyWorse",
    "MainsailFeatureDrift",
    "MainsailSampleRatioMismatch",
    "MainsailShadowGateFailed",
    "MainsailEstimatedPerformanceDrop",
}
SRC = checks.ROOT / "src" / "mainsail"


def rule_spec(objs: list[checks.Obj]) -> checks.Obj:
    rule = next(o for o in objs if o["kind"] == "PrometheusRule")
    return copy.deepcopy(rule["spec"])


def rules(objs: list[checks.Obj]) -> list[checks.Obj]:
    return [r for g in rule_spec(objs)["groups"] for r in g["rules"]]


def test_rules_file_is_fresh_and_is_what_the_chart_ships(
    render: Any, default_objects: list[checks.Obj]
) -> None:
    fresh = render.rules_text()
    assert render.stale_diff(fresh, render.RULES.read_text()) == [], "run `make render`"
    groups = yaml.safe_load(fresh)["groups"]
    # the chart labels every alert with the release namespace (AlertmanagerConfig routes match
    # only alerts of their own namespace); records are shipped as generated
    for rule in (r for g in groups for r in g["rules"] if "alert" in r):
        rule["labels"] = {**rule.get("labels", {}), "namespace": "mainsail"}
    assert rule_spec(default_objects)["groups"] == groups


def test_rules_cover_every_required_alert(default_objects: list[checks.Obj]) -> None:
    alerts = {r["alert"] for r in rules(default_objects) if "alert" in r}
    assert alerts >= REQUIRED_ALERTS, REQUIRED_ALERTS - alerts
    retrain = [r for r in rules(default_objects) if r.get("labels", {}).get("action") == "retrain"]
    assert [r["alert"] for r in retrain] == ["MainsailDriftSustained"]


def test_promtool_accepts_the_rules(default_objects: list[checks.Obj], tmp_path: Path) -> None:
    code, output = checks.promtool_check_rules(rule_spec(default_objects), tmp_path)
    assert code == 0, output
    assert f"{len(rules(default_objects))} rules found" in output


def test_promtool_rejects_a_broken_expression(
    default_objects: list[checks.Obj], tmp_path: Path
) -> None:
    spec = rule_spec(default_objects)
    spec["groups"][0]["rules"][0]["expr"] = "max by (model (mainsail_drift_row_is_drift)"
    code, output = checks.promtool_check_rules(spec, tmp_path)
    assert code != 0 and "parse error" in output.lower()


def emitted(name: str) -> bool:
    """A metric name appears as a string literal in code other than rules, dashboards, naming."""
    skip = {"rules.py", "dashboards.py", "naming.py"}
    return any(
        f'"{name}"' in path.read_text() for path in SRC.rglob("*.py") if path.name not in skip
    )


def test_rules_use_only_declared_metrics_that_the_code_emits(
    default_objects: list[checks.Obj],
) -> None:
    used = {m for r in rules(default_objects) for m in checks.metric_names(r["expr"])}
    assert used and used <= set(naming.METRICS), used - set(naming.METRICS)
    assert [m for m in naming.METRICS if not emitted(m)] == []
    # The check itself: a made-up metric is neither declared nor emitted.
    assert not emitted("mainsail_made_up_total")
    assert checks.metric_names("rate(mainsail_made_up_total[5m])") - set(naming.METRICS)


def test_drift_scrape_job_matches_the_rules(default_objects: list[checks.Obj]) -> None:
    from mainsail.monitor.rules import DRIFT_JOB

    assert naming.DRIFT_SCRAPE_JOB == DRIFT_JOB
    pm = next(
        o
        for o in default_objects
        if o["kind"] == "PodMonitor" and o["metadata"]["name"] == "mainsail-drift"
    )
    endpoint = pm["spec"]["podMetricsEndpoints"][0]
    assert endpoint["port"] == "drift"
    assert {"action": "replace", "targetLabel": "job", "replacement": DRIFT_JOB} in endpoint[
        "relabelings"
    ]
    assert any(f'job="{DRIFT_JOB}"' in r["expr"] for r in rules(default_objects))


def test_chart_without_its_rules_file_fails_with_a_message(render: Any, tmp_path: Path) -> None:
    chart = tmp_path / "mainsail"
    shutil.copytree(checks.CHART, chart)
    (chart / "rules" / "mainsail-rules.yaml").unlink()
    with pytest.raises(helm_python.HelmRenderError, match="make render"):
        render.render_chart(chart=chart)


def test_rules_thresholds_follow_the_project_config(render: Any, tmp_path: Path) -> None:
    config = tmp_path / "p.yaml"
    raw = yaml.safe_load(render.CONFIG.read_text())
    raw.setdefault("monitor", {}).setdefault("rules", {})["latency_p99_s"] = 0.25
    config.write_text(yaml.safe_dump(raw))
    text = render.rules_text(config)
    assert re.search(r"p99 > 0\.25", text)
    assert text != render.RULES.read_text()


SOURCE_RULES = checks.ROOT / "monitoring" / "prometheus" / "rules.yml"


def durations(groups: list[checks.Obj]) -> dict[str, str]:
    """Alert name -> its `for:`."""
    return {r["alert"]: r["for"] for g in groups for r in g["rules"] if "alert" in r}


def trigger_args(objects: list[checks.Obj]) -> list[str]:
    """The retrain trigger container's arguments."""
    trigger = next(
        o
        for o in objects
        if o["kind"] == "Deployment"
        and o["metadata"]["name"] == naming.fullname("mainsail", "retrain-trigger")
    )
    args: list[str] = trigger["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def test_the_chart_ships_rules_yml_durations_unless_overridden(
    render: Any, default_objects: list[checks.Obj]
) -> None:
    """Default values: every alert's `for:` is monitoring/prometheus/rules.yml's and no group
    has its own interval. monitoring.prometheusRule.forOverride sets every alert's,
    forByAlert one alert's (winning), interval every group's; nothing else changes."""
    source = yaml.safe_load(SOURCE_RULES.read_text())["groups"]
    shipped = durations(source)
    assert shipped["MainsailDriftSustained"] == "5m"
    default = rule_spec(default_objects)["groups"]
    assert durations(default) == shipped
    assert all("interval" not in g for g in default)

    values = {
        "monitoring": {
            "prometheusRule": {
                "forOverride": "1m",
                "forByAlert": {"MainsailDriftSustained": "15s"},
                "interval": "5s",
            }
        }
    }
    overridden = rule_spec(render.documents(render.render_chart(values)))["groups"]
    expected = {name: "1m" for name in shipped} | {"MainsailDriftSustained": "15s"}
    assert durations(overridden) == expected
    assert [g["interval"] for g in overridden] == ["5s"] * len(source)
    for group in overridden:
        del group["interval"]
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = shipped[rule["alert"]]
    assert overridden == default


def test_the_kind_cluster_shortens_only_the_drift_alert(
    scenario_objects: dict[str, list[checks.Obj]],
) -> None:
    """What tests/cluster/test_training.py waits for: the sustained-drift alert's `for:` short,
    the groups evaluated often, the trigger's cooldown short; the other alerts as shipped."""
    shipped = durations(yaml.safe_load(SOURCE_RULES.read_text())["groups"])
    objects = scenario_objects["kind-mlserver"]
    groups = rule_spec(objects)["groups"]
    assert durations(groups) == shipped | {"MainsailDriftSustained": "15s"}
    assert {g["interval"] for g in groups} == {"5s"}
    assert "--set=monitor.trigger.cooldown_s=900" in trigger_args(objects)


def test_the_trigger_keeps_the_configs_cooldown_by_default(
    render: Any, default_objects: list[checks.Obj]
) -> None:
    from mainsail.config import load_config

    args = trigger_args(default_objects)
    assert not any("cooldown_s" in a for a in args), args
    assert load_config(render.CONFIG).monitor.trigger.cooldown_s == 3600


def test_an_override_for_an_alert_the_rules_lack_fails_the_render(render: Any) -> None:
    values = {"monitoring": {"prometheusRule": {"forByAlert": {"MainsailNoSuchAlert": "1s"}}}}
    with pytest.raises(helm_python.HelmRenderError, match="MainsailNoSuchAlert"):
        render.render_chart(values)
