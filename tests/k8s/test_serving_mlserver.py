"""`serving.backend: mlserver`: the variants' MLServer Deployments behind the gateway (the kind
cluster's local mode, where Seldon Core 2 cannot be built).

Each variant (champion, challenger) is a Deployment running the serving image's
`mainsail.serving.launch` with the drift sidecar; the gateway calls each variant's Service; the
PodMonitors scrape MLServer's metrics (the runtime's drift feed) and the sidecar under the job
the rules expect; the NetworkPolicy opens exactly those ports; the deployer's Role may read and
replace those two Deployments and nothing else of apps. `tests/cluster/test_serving.py` runs it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mainsail.core import naming

from . import checks

pytestmark = pytest.mark.k8s

ROLES = ("champion", "challenger")


def _named(objs: list[checks.Obj], kind: str, name: str) -> checks.Obj:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _container(deployment: checks.Obj, name: str) -> checks.Obj:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == name)


def _env(container: checks.Obj) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.mark.parametrize("scenario", ["kind-mlserver", "mlserver"])
def test_each_variant_is_an_mlserver_deployment_with_the_drift_sidecar(
    scenario: str, scenario_objects: dict[str, list[checks.Obj]]
) -> None:
    objs = scenario_objects[scenario]
    assert not [o for o in objs if o["kind"] == "Server"], "no Seldon Server in mlserver mode"
    for role in ROLES:
        deployment = _named(objs, "Deployment", naming.serving_deployment(role))
        mlserver = _container(deployment, "mlserver")
        assert mlserver["image"] == naming.image("serving")
        assert mlserver["command"] == ["python", "-m", "mainsail.serving.launch"]
        env = _env(mlserver)
        assert env[naming.ENV_MODEL_NAME] == "churn"
        assert env["MLSERVER_PARALLEL_WORKERS"] == "0"
        assert env[naming.ENV_DRIFT_URL] == f"http://127.0.0.1:{naming.DRIFT_PORT}"
        assert env["MAINSAIL_S3_ACCESS_KEY"]["secretKeyRef"]["key"] == "AWS_ACCESS_KEY_ID"
        assert "MAINSAIL_REGISTRY_PUBLIC_KEYS" in env
        ports = {p["name"]: p["containerPort"] for p in mlserver["ports"]}
        assert ports == {
            "server-http": naming.MLSERVER_HTTP_PORT,
            "server-grpc": naming.MLSERVER_GRPC_PORT,
            "server-metrics": naming.MLSERVER_METRICS_PORT,
        }
        # ready only once the version is downloaded, verified and loaded
        assert mlserver["readinessProbe"]["httpGet"]["path"] == "/v2/models/churn/ready"
        drift = _container(deployment, "drift")
        assert drift["image"] == naming.image("drift")
        assert {p["name"]: p["containerPort"] for p in drift["ports"]} == {
            "drift": naming.DRIFT_PORT
        }
        version = env[naming.ENV_MODEL_VERSION]
        if scenario == "kind-mlserver":
            # no version at install: no replica until `mainsail deploy` sets one
            assert version == "" and deployment["spec"]["replicas"] == 0
        else:
            assert version == {"champion": "1", "challenger": "2"}[role]
            assert deployment["spec"]["replicas"] == 1


def test_the_launcher_reads_what_the_deployment_sets(
    scenario_objects: dict[str, list[checks.Obj]], tmp_path: Path
) -> None:
    """The rendered env, with the Secret's keys filled in, makes a repository the runtime
    accepts, serving the Deployment's version from the chart's S3."""
    from mainsail.serving.launch import write

    deployment = _named(
        scenario_objects["mlserver"], "Deployment", naming.serving_deployment("challenger")
    )
    env = {k: v for k, v in _env(_container(deployment, "mlserver")).items() if isinstance(v, str)}
    folder = write(env, tmp_path / "repository", tmp_path / "cache")
    settings = json.loads((folder / "churn" / "model-settings.json").read_text())
    registry = settings["parameters"]["extra"]["registry"]
    assert registry["ref"] == "2" and registry["model"] == "churn"
    assert registry["endpoint"] == "http://mainsail-minio.mainsail.svc.cluster.local:9000"
    server = json.loads((folder / "settings.json").read_text())
    assert (server["http_port"], server["metrics_port"], server["parallel_workers"]) == (
        naming.MLSERVER_HTTP_PORT,
        naming.MLSERVER_METRICS_PORT,
        0,
    )


@pytest.mark.parametrize("scenario", ["kind-mlserver", "mlserver"])
def test_the_gateway_calls_each_variants_service(
    scenario: str, scenario_objects: dict[str, list[checks.Obj]]
) -> None:
    from mainsail.serving.router import load_settings

    objs = scenario_objects[scenario]
    cm = _named(objs, "ConfigMap", naming.gateway_name())
    settings = load_settings(json.loads(cm["data"]["router.json"]))
    assert {v.role for v in settings.variants} == set(ROLES)
    for variant in settings.variants:
        name = naming.serving_deployment(variant.role)
        assert variant.url == f"http://{name}.mainsail.svc.cluster.local:9000"
        assert variant.model == settings.model_name == "churn" and variant.headers == {}
        service = _named(objs, "Service", name)
        deployment = _named(objs, "Deployment", name)
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert _matches(service["spec"]["selector"], pod_labels)
        # only this variant's pods: the other variant's labels do not match
        other = _named(objs, "Deployment", naming.serving_deployment(*set(ROLES) - {variant.role}))
        assert not _matches(
            service["spec"]["selector"], other["spec"]["template"]["metadata"]["labels"]
        )
        assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
            (9000, "server-http")
        ]


def test_prometheus_scrapes_the_runtime_and_the_sidecar_of_every_variant(
    scenario_objects: dict[str, list[checks.Obj]],
) -> None:
    objs = scenario_objects["kind-mlserver"]
    monitors = [o for o in objs if o["kind"] == "PodMonitor"]
    for role in ROLES:
        labels = _named(objs, "Deployment", naming.serving_deployment(role))["spec"]["template"][
            "metadata"
        ]["labels"]
        scraping = {
            e["port"]: e
            for m in monitors
            if _matches(m["spec"]["selector"]["matchLabels"], labels)
            for e in m["spec"]["podMetricsEndpoints"]
        }
        assert set(scraping) == {"server-metrics", "drift"}, role
        relabel = scraping["drift"]["relabelings"]
        assert {
            "action": "replace",
            "targetLabel": "job",
            "replacement": naming.DRIFT_SCRAPE_JOB,
        } in relabel
    # the Seldon agent's PodMonitor is Seldon's only
    assert not [m for m in monitors if m["metadata"]["name"].endswith("seldon-agent")]
    for m in monitors:
        assert m["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_the_network_policy_opens_the_serving_ports(
    scenario_objects: dict[str, list[checks.Obj]],
) -> None:
    objs = scenario_objects["kind-mlserver"]
    policy = _named(objs, "NetworkPolicy", naming.fullname("mainsail", "serving"))
    ports = sorted(p["port"] for r in policy["spec"]["ingress"] for p in r["ports"])
    assert ports == [naming.DRIFT_PORT, naming.MLSERVER_METRICS_PORT, naming.MLSERVER_HTTP_PORT]
    for role in ROLES:
        labels = _named(objs, "Deployment", naming.serving_deployment(role))["spec"]["template"][
            "metadata"
        ]["labels"]
        assert _matches(policy["spec"]["podSelector"]["matchLabels"], labels)


def test_the_deployer_may_replace_the_two_variant_deployments_only(
    scenario_objects: dict[str, list[checks.Obj]],
) -> None:
    role = _named(scenario_objects["kind-mlserver"], "Role", naming.deployer_service_account())
    apps = [r for r in role["rules"] if r["apiGroups"] == ["apps"]]
    assert apps == [
        {
            "apiGroups": ["apps"],
            "resources": ["deployments"],
            "resourceNames": [naming.serving_deployment(r) for r in ROLES],
            "verbs": ["get", "update"],
        }
    ]
    seldon = _named(scenario_objects["default"], "Role", naming.deployer_service_account())
    assert not [r for r in seldon["rules"] if r["apiGroups"] == ["apps"]]
