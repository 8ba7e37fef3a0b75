"""The chart against Seldon Core 2 v2.10.2 as its source says it behaves (issue 17's review).

Seldon's operator (operator/controllers/reconcilers/common/patch_utils.go, MergePodSpecs)
merges a Server's podSpec into its ServerConfig's: containers by name, every other field with
mergo's WithOverride + WithAppendSlice, so every list of the override (ports, env, volumes,
volumeMounts) is appended to the ServerConfig's. `merge_container` below does the same for the
facts of the `mlserver` ServerConfig of seldon-core-v2-setup 2.10.2 that matter here (its port
names, its environment, its pod securityContext), so a render that Seldon would turn into an
invalid or different pod fails offline.

Also: the values Mainsail installs Seldon's setup and runtime charts with, the retrain
trigger's action, and the Feast project the chart serves.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mainsail.cli.common import parse_overrides
from mainsail.config import load_config
from mainsail.core import naming
from mainsail.features.layout import feast_project_name
from tests.support.seldon import (
    SERVERCONFIG_ENV,
    SERVERCONFIG_POD_SECURITY,
    SERVERCONFIG_VOLUMES,
    merge_container,
)

from . import checks

pytestmark = pytest.mark.k8s

# What upstream's custom-server sample overrides (name, image), and what Mainsail needs beside:
# its env, limits, a hardened container securityContext with /tmp for its read-only root, and
# probes equal to the ServerConfig's.
ALLOWED_MLSERVER_KEYS = {
    "name",
    "image",
    "imagePullPolicy",
    "env",
    "resources",
    "securityContext",
    "volumeMounts",
    "livenessProbe",
    "readinessProbe",
}


def _server(objs: list[checks.Obj]) -> checks.Obj:
    return next(o for o in objs if o["kind"] == "Server")


def _mlserver(objs: list[checks.Obj]) -> checks.Obj:
    pod = _server(objs)["spec"]["podSpec"]
    return next(c for c in pod["containers"] if c["name"] == "mlserver")


def effective_env(container: checks.Obj) -> dict[str, str | None]:
    """The kubelet's view of a container's env: a name given twice takes the last value."""
    out: dict[str, str | None] = {}
    for item in container.get("env") or []:
        out[item["name"]] = item.get("value")
    return out


@pytest.mark.parametrize("scenario", ["default", "kind"])
def test_merged_mlserver_container_has_unique_port_names_and_mounts(
    scenario: str, scenario_objects: dict[str, list[checks.Obj]]
) -> None:
    merged = merge_container(_mlserver(scenario_objects[scenario]))
    names = [p["name"] for p in merged["ports"]]
    assert len(names) == len(set(names)), f"duplicate port names after Seldon's merge: {names}"
    numbers = [p["containerPort"] for p in merged["ports"]]
    assert len(numbers) == len(set(numbers)), numbers
    paths = [m["mountPath"] for m in merged["volumeMounts"]]
    assert len(paths) == len(set(paths)), paths
    # the probes name a port the merged container has
    for probe in ("livenessProbe", "readinessProbe"):
        port = merged[probe]["httpGet"]["port"]
        assert port in names, f"{probe} names port {port!r}, not one of {names}"


def test_the_merge_check_catches_a_redeclared_port(default_objects: list[checks.Obj]) -> None:
    broken = copy.deepcopy(_mlserver(default_objects))
    broken["ports"] = [{"name": "server-http", "containerPort": 9000}]
    names = [p["name"] for p in merge_container(broken)["ports"]]
    assert len(names) != len(set(names))


@pytest.mark.parametrize("scenario", ["default", "kind"])
def test_server_overrides_only_name_image_env_and_the_hardening(
    scenario: str, scenario_objects: dict[str, list[checks.Obj]]
) -> None:
    objs = scenario_objects[scenario]
    pod = _server(objs)["spec"]["podSpec"]
    extra = set(_mlserver(objs)) - ALLOWED_MLSERVER_KEYS
    assert not extra, f"the mlserver override sets {sorted(extra)}, which the ServerConfig owns"
    # Seldon's pod identity (uid/gid/fsGroup 1000: rclone's config, the agent's model volume)
    # is kept: no pod securityContext field of the ServerConfig's is replaced, and no container
    # picks another uid.
    replaced = set(pod.get("securityContext") or {}) & set(SERVERCONFIG_POD_SECURITY)
    assert not replaced, f"the podSpec replaces Seldon's pod securityContext {sorted(replaced)}"
    for container in pod["containers"]:
        sc = container.get("securityContext") or {}
        assert not {"runAsUser", "runAsGroup"} & set(sc), container["name"]
    own = {v["name"] for v in pod.get("volumes") or []}
    assert not own & SERVERCONFIG_VOLUMES


def test_mlserver_scores_in_the_server_process_whose_registry_metrics_serves(
    default_objects: list[checks.Obj],
) -> None:
    """MLServer 1.7.1 (mlserver/metrics/prometheus.py): with parallel_workers > 0, /metrics
    serves only a MultiProcessCollector over MLSERVER_METRICS_DIR, never the default registry
    where mainsail.serving.runtime registers the drift-feed and feature collectors."""
    merged = merge_container(_mlserver(default_objects))
    env = effective_env(merged)
    assert env["MLSERVER_PARALLEL_WORKERS"] == "0"
    # everything else the ServerConfig sets is left as Seldon set it
    for item in SERVERCONFIG_ENV:
        if item["name"] != "MLSERVER_PARALLEL_WORKERS":
            assert env[item["name"]] == item["value"], item["name"]
    assert env["MLSERVER_METRICS_DIR"].startswith("/tmp/")


SELDON_VALUES = checks.ROOT / "scripts" / "kind" / "seldon"


def _command(script: Path, release: str) -> str:
    """The `helm upgrade --install RELEASE ...` command of a script, continuation lines joined."""
    text = script.read_text().replace("\\\n", " ")
    found = re.search(rf"helm upgrade --install {release} [^\n]*", text)
    assert found, f"{script.name} installs no {release}"
    return found.group(0)


def test_seldon_setup_watches_every_namespace() -> None:
    values = yaml.safe_load((SELDON_VALUES / "setup-values.yaml").read_text())
    assert values["controller"]["clusterwide"] is True
    install = _command(checks.ROOT / "scripts" / "kind" / "operators.sh", "seldon-core-v2-setup")
    assert "seldon/setup-values.yaml" in install


def test_seldon_runtime_runs_no_kafka_component_and_sets_the_mesh_type() -> None:
    values = yaml.safe_load((SELDON_VALUES / "runtime-values.yaml").read_text())
    for component in ("dataflow", "modelgateway", "pipelinegateway"):
        assert values[component]["disable"] is True, component
    assert values["envoy"]["serviceType"] in {"ClusterIP", "NodePort"}
    assert "disable" not in values["envoy"]
    install = _command(checks.ROOT / "scripts" / "kind" / "install.sh", "seldon-runtime")
    assert "seldon/runtime-values.yaml" in install
    # the operator owns seldon-mesh: nothing patches it by hand
    for path in (checks.ROOT / "scripts").rglob("*.sh"):
        assert not re.search(r"patch\s+(service|svc)[ /]seldon-mesh", path.read_text()), path


def _trigger_config(objs: list[checks.Obj]) -> Any:
    deployment = next(
        o
        for o in objs
        if o["kind"] == "Deployment"
        and o["metadata"]["name"] == naming.fullname("mainsail", "retrain-trigger")
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    sets = [a.removeprefix("--set=") for a in container["args"] if a.startswith("--set=")]
    return load_config(checks.ROOT / "configs" / "churn.yaml", parse_overrides(sets)).monitor


def test_trigger_action_is_what_values_yaml_says(
    render: Any, default_objects: list[checks.Obj]
) -> None:
    values = yaml.safe_load((checks.CHART / "values.yaml").read_text())
    assert _trigger_config(default_objects).trigger.action == values["retrainTrigger"]["action"]
    kfp = render.documents(render.render_chart({"retrainTrigger": {"action": "kfp"}}))
    trigger = _trigger_config(kfp).trigger
    assert trigger.action == "kfp"
    assert trigger.kfp_host == values["retrainTrigger"]["kfpHost"]
    pipeline = str(trigger.kfp_pipeline)
    assert pipeline.startswith("/app/pipelines/")
    # the pipeline image copies pipelines/ to /app/pipelines
    assert (checks.ROOT / pipeline.removeprefix("/app/")).is_file()


@pytest.mark.parametrize("action", ["", "command"])
def test_trigger_refuses_running_the_pipeline_in_its_own_pod(render: Any, action: str) -> None:
    import helm_python

    with pytest.raises(helm_python.HelmError, match="action"):
        render.render_chart({"retrainTrigger": {"action": action}})


def test_feast_serves_the_project_the_code_registers(default_objects: list[checks.Obj]) -> None:
    name = naming.fullname("mainsail", "feast")
    cm = next(
        o for o in default_objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name
    )
    store = yaml.safe_load(cm["data"]["feature_store.yaml"])
    cfg = load_config(checks.ROOT / "configs" / "churn.yaml")
    assert store["project"] == feast_project_name(cfg)


# --- serving metrics on the cluster --------------------------------------------------------------


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _router_series(objs: list[checks.Obj]) -> set[str]:
    """mainsail_router_* names the PrometheusRule and the dashboards query."""
    texts = [yaml.safe_dump(o["spec"]) for o in objs if o["kind"] == "PrometheusRule"]
    texts += [(checks.CHART / "dashboards" / p.name).read_text() for p in _dashboards()]
    found = set()
    for text in texts:
        found |= set(re.findall(r"mainsail_router_[a-z_]+", text))
    return found


def _dashboards() -> list[Path]:
    return sorted((checks.CHART / "dashboards").glob("*.json"))


def test_router_series_of_alerts_and_dashboards_are_scraped_on_the_cluster(
    default_objects: list[checks.Obj],
) -> None:
    """Something in the cluster runs the router and a ServiceMonitor scrapes it: the gateway."""
    assert _router_series(default_objects), "no rule or dashboard reads mainsail_router_*"
    routers = [
        o
        for o in default_objects
        if o["kind"] == "Deployment"
        and any(
            "mainsail.serving.router" in " ".join(c.get("command", []) + c.get("args", []))
            for c in o["spec"]["template"]["spec"]["containers"]
        )
    ]
    assert routers, "no Deployment runs mainsail.serving.router: mainsail_router_* never exists"
    pod_labels = routers[0]["spec"]["template"]["metadata"]["labels"]
    services = [
        o
        for o in default_objects
        if o["kind"] == "Service" and _matches(o["spec"].get("selector", {}), pod_labels)
    ]
    assert services
    monitors = [
        m
        for m in default_objects
        if m["kind"] == "ServiceMonitor"
        and any(
            _matches(m["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
            for s in services
        )
    ]
    assert monitors, "no ServiceMonitor scrapes the gateway"
    ports = {p["name"] for s in services for p in s["spec"]["ports"]}
    assert {e["port"] for m in monitors for e in m["spec"]["endpoints"]} <= ports
    assert all(e.get("path") == "/metrics" for m in monitors for e in m["spec"]["endpoints"])


def test_gateway_calls_each_variant_through_seldons_mesh(default_objects: list[checks.Obj]) -> None:
    from mainsail.serving.router import load_settings

    name = naming.fullname("mainsail", "gateway")
    cm = next(
        o for o in default_objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name
    )
    settings = load_settings(json.loads(cm["data"]["router.json"]))
    canary = yaml.safe_load_all(
        (checks.ROOT / "manifests" / "examples" / "canary" / "experiment.yaml").read_text()
    )
    experiment = next(d for d in canary if d and d.get("kind") == "Experiment")
    weights = {c["name"]: c["weight"] for c in experiment["spec"]["candidates"]}
    assert {v.model: v.weight for v in settings.variants} == weights
    for variant in settings.variants:
        assert variant.url == "http://seldon-mesh.mainsail.svc.cluster.local"
        assert variant.headers == {"Seldon-Model": variant.model}
    policy = next(
        o for o in default_objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == name
    )
    assert [p["port"] for r in policy["spec"]["ingress"] for p in r["ports"]] == [8080]


def test_seldon_agent_metrics_are_scraped(default_objects: list[checks.Obj]) -> None:
    """The agent's container port `metrics` (9006 in the mlserver ServerConfig)."""
    server = naming.server_name()
    agent = [
        m
        for m in default_objects
        if m["kind"] == "PodMonitor"
        and m["spec"]["selector"]["matchLabels"] == {"seldon-server-name": server}
        and any(e["port"] == "metrics" for e in m["spec"]["podMetricsEndpoints"])
    ]
    assert len(agent) == 1
    relabel = agent[0]["spec"]["podMetricsEndpoints"][0]["relabelings"]
    assert {"action": "replace", "targetLabel": "job", "replacement": "seldon-agent"} in relabel


def test_something_writes_the_registry_the_feature_server_reads(
    default_objects: list[checks.Obj],
) -> None:
    """The Feast pod's init container applies the definitions of a project config whose Feast
    project is the served one, and uploads the registry to the path the server reads
    (tests/integration/features/test_registry_upload.py runs that command against real S3)."""
    import typer

    from mainsail.cli.features import app

    name = naming.fullname("mainsail", "feast")
    cm = next(
        o for o in default_objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name
    )
    store = yaml.safe_load(cm["data"]["feature_store.yaml"])
    deployment = next(
        o for o in default_objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name
    )
    init = deployment["spec"]["template"]["spec"]["initContainers"]
    assert [c["name"] for c in init] == ["apply"]
    command = init[0]["command"]
    assert command[:3] == ["mainsail", "features", "apply"]
    ctx = typer.main.get_command(app).make_context("features", command[2:])
    apply = ctx.command.get_command(ctx, "apply")  # type: ignore[attr-defined]
    params = apply.make_context("apply", command[3:]).params
    bucket = next(e["value"] for e in init[0]["env"] if e["name"] == naming.ENV_S3_BUCKET)
    assert store["registry"]["path"] == f"s3://{bucket}/{params['upload_registry']}"
    config = str(params["config"])
    assert config.startswith("/app/configs/")
    cfg = load_config(checks.ROOT / config.removeprefix("/app/"))
    assert store["project"] == feast_project_name(cfg)
