"""The chart renders and lints with the real Helm engine, and refuses bad values clearly."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import helm_python
import pytest

from . import checks
from .conftest import SCENARIOS

pytestmark = pytest.mark.k8s


def kinds(objs: list[checks.Obj]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for obj in objs:
        out.setdefault(obj["kind"], []).append(obj["metadata"]["name"])
    return out


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_chart_lints_without_errors_or_warnings(scenario: str) -> None:
    report = helm_python.lint(
        str(checks.CHART),
        SCENARIOS[scenario],
        strict=True,
        namespace="mainsail",
        kube_version="v1.33.0",
    )
    bad = [m for m in report["messages"] if m["severity"] >= 2]
    assert not bad and not report["errors"], (bad, report["errors"])


def test_default_render_has_every_platform_component(default_objects: list[checks.Obj]) -> None:
    k = kinds(default_objects)
    assert set(k["Deployment"]) == {
        "mainsail-minio",
        "mainsail-redis",
        "mainsail-feast",
        "mainsail-retrain-trigger",
        "mainsail-gateway",
    }
    assert k["RayCluster"] == ["mainsail-ray"]
    assert k["Server"] == ["mainsail-serving"]
    assert k["PrometheusRule"] == ["mainsail-alerts"]
    assert set(k["ServiceMonitor"]) == {
        "mainsail-minio",
        "mainsail-feast",
        "mainsail-retrain-trigger",
        "mainsail-gateway",
    }
    assert set(k["PodMonitor"]) == {
        "mainsail-ray",
        "mainsail-serving",
        "mainsail-seldon-agent",
        "mainsail-drift",
    }
    assert "mainsail-default-deny" in k["NetworkPolicy"]
    assert {"Role", "RoleBinding", "ServiceAccount", "ConfigMap", "Secret"} <= set(k)
    # Every namespaced object names its namespace explicitly (checkov CKV_K8S_21, kubectl apply -f).
    assert all(o["metadata"].get("namespace") == "mainsail" for o in default_objects)


def _get(objs: list[checks.Obj], kind: str, name: str) -> checks.Obj:
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name)


def test_gpu_worker_group_is_pinned_to_the_gpu_pool_and_scaled_to_zero(
    scenario_objects: dict[str, list[checks.Obj]],
) -> None:
    ray = _get(scenario_objects["default"], "RayCluster", "mainsail-ray")
    groups = {g["groupName"]: g for g in ray["spec"]["workerGroupSpecs"]}
    gpu = groups["gpu"]
    assert gpu["replicas"] == 0 and gpu["minReplicas"] == 0
    pod = gpu["template"]["spec"]
    assert pod["nodeSelector"] == {"mainsail.io/pool": "gpu"}
    assert {t["key"] for t in pod["tolerations"]} == {"mainsail.io/pool", "nvidia.com/gpu"}
    res = pod["containers"][0]["resources"]
    assert res["limits"]["nvidia.com/gpu"] == 1 and res["requests"]["nvidia.com/gpu"] == 1
    assert groups["cpu"]["template"]["spec"]["nodeSelector"] == {"mainsail.io/pool": "cpu"}

    scaled = _get(scenario_objects["gpu-pool"], "RayCluster", "mainsail-ray")
    gpu = {g["groupName"]: g for g in scaled["spec"]["workerGroupSpecs"]}["gpu"]
    assert gpu["replicas"] == 2 and gpu["minReplicas"] == 1
    assert gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert gpu["rayStartParams"]["num-gpus"] == "2"
    assert scaled["spec"]["enableInTreeAutoscaling"] is True


def test_server_pod_runs_our_mlserver_image_with_the_drift_sidecar(
    default_objects: list[checks.Obj],
) -> None:
    server = _get(default_objects, "Server", "mainsail-serving")
    assert server["spec"]["serverConfig"] == "mlserver"
    containers = {c["name"]: c for c in server["spec"]["podSpec"]["containers"]}
    assert set(containers) == {"mlserver", "drift"}
    assert containers["mlserver"]["image"] == "ghcr.io/mainsail-mlops/mainsail-serving:0.1.0"
    assert containers["drift"]["image"] == "ghcr.io/mainsail-mlops/mainsail-drift:0.1.0"
    env = {e["name"]: e.get("value") for e in containers["mlserver"]["env"]}
    assert env["MAINSAIL_DRIFT_URL"] == "http://127.0.0.1:8010"


def test_existing_s3_replaces_minio_everywhere(
    scenario_objects: dict[str, list[checks.Obj]],
) -> None:
    objs = scenario_objects["existing-s3"]
    names = {(o["kind"], o["metadata"]["name"]) for o in objs}
    assert not any("minio" in n for _, n in names)
    assert ("Secret", "mainsail-s3") not in names
    feast = _get(objs, "Deployment", "mainsail-feast")
    env = {e["name"]: e for e in feast["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MAINSAIL_S3_ENDPOINT"]["value"] == "https://s3.eu-west-1.amazonaws.com"
    assert env["AWS_DEFAULT_REGION"]["value"] == "eu-west-1"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "team-s3"


def test_redis_off_points_feast_at_the_external_redis(
    scenario_objects: dict[str, list[checks.Obj]],
) -> None:
    objs = scenario_objects["redis-off"]
    assert not any(o["metadata"]["name"] == "mainsail-redis" for o in objs)
    store = _get(objs, "ConfigMap", "mainsail-feast")["data"]["feature_store.yaml"]
    assert 'connection_string: "redis.data.svc:6380"' in store


def test_minimal_render_keeps_only_storage_and_features(
    scenario_objects: dict[str, list[checks.Obj]],
) -> None:
    k = kinds(scenario_objects["minimal"])
    assert not {"RayCluster", "Server", "PrometheusRule", "NetworkPolicy", "Role"} & set(k)
    assert set(k["Deployment"]) == {"mainsail-minio", "mainsail-redis", "mainsail-feast"}


def test_dashboards_configmap_carries_every_json_file_and_the_sidecar_label(
    default_objects: list[checks.Obj],
) -> None:
    cm = _get(default_objects, "ConfigMap", "mainsail-dashboards")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    files = sorted(p.name for p in (checks.CHART / "dashboards").glob("*.json"))
    assert files and sorted(cm["data"]) == files


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redis": {"enabled": False}}, "redis.external.host is required"),
        ({"s3": {"existing": {"enabled": True}}}, "s3.existing.endpoint is required"),
        (
            {"s3": {"existing": {"enabled": True, "endpoint": "https://s3.example"}}},
            "s3.existing.secretName is required",
        ),
        ({"minio": {"enabled": False}}, "no object store"),
        ({"ray": {"gpuWorkers": {"minReplicas": 3, "maxReplicas": 2}}}, "must not exceed"),
    ],
)
def test_impossible_values_fail_with_a_message_naming_the_key(
    render: Any, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm_python.HelmError, match=message):
        render.render_chart(values)


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"ray": {"gpuWorkers": {"replicas": -1}}}, "replicas"),
        ({"global": {"imageTag": "latest"}}, "imageTag"),
        ({"minio": {"image": "quay.io/minio/minio:latest"}}, "image"),
        ({"feast": {"resources": {"requests": {"memory": None}}}}, "memory"),
        ({"serving": {"replicaz": 2}}, "replicaz"),
        ({"monitoring": {"prometheusRule": {"errorRate": 0.1}}}, "errorRate"),
    ],
)
def test_values_schema_rejects_bad_values(render: Any, values: dict[str, Any], key: str) -> None:
    with pytest.raises(helm_python.HelmError, match=key):
        render.render_chart(values)


def test_broken_template_fails_render_and_lint(tmp_path: Path, render: Any) -> None:
    chart = tmp_path / "mainsail"
    shutil.copytree(checks.CHART, chart)
    target = chart / "templates" / "feast.yaml"
    target.write_text(target.read_text().replace("{{- end }}\n", "{{- end \n", 1))
    with pytest.raises(helm_python.HelmRenderError):
        render.render_chart(chart=chart)
    report = helm_python.lint(str(chart), {}, strict=True)
    assert report["errors"] or any(m["severity"] == 3 for m in report["messages"])


def undocumented_values(values: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Keys of values.yaml that the schema does not declare, or declares without a description
    (leaves and `resources` blocks must say what they are for)."""
    problems = []
    for key, value in values.items():
        node = (schema.get("properties") or {}).get(key)
        here = f"{path}.{key}".lstrip(".")
        if node is None:
            problems.append(f"{here}: not in values.schema.json")
            continue
        if isinstance(value, dict) and key != "resources" and "properties" in node:
            problems += undocumented_values(value, node, here)
        elif not node.get("description"):
            problems.append(f"{here}: no description in values.schema.json")
    return problems


def test_every_value_is_declared_and_described_in_the_schema() -> None:
    with helm_python.Chart.load(str(checks.CHART)) as chart:
        values, schema = chart.values, chart.schema
    assert schema is not None
    assert undocumented_values(values, schema) == []
    broken = copy.deepcopy(schema)
    del broken["properties"]["feast"]["properties"]["replicas"]["description"]
    values["feast"]["replicaz"] = 1
    found = undocumented_values(values, broken)
    assert found == [
        "feast.replicas: no description in values.schema.json",
        "feast.replicaz: not in values.schema.json",
    ]
