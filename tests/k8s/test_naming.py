"""src/mainsail/naming.py is the one source of names: its helpers behave, and the chart uses
the same names, labels, ports and namespaces."""

from __future__ import annotations

import pytest

from mainsail.core import naming

from . import checks
from .test_seldon import merge_container

pytestmark = pytest.mark.k8s


def test_names_and_labels() -> None:
    assert naming.server_name() == "mainsail-serving"
    assert naming.deployer_service_account("prod") == "prod-deployer"
    assert naming.model_resource_name("churn", 3) == "churn-v3"
    assert naming.model_resource_name("churn", "v3") == "churn-v3"
    assert naming.experiment_name("churn") == "churn-canary"
    assert naming.fullname("mainsail-serving", "serving") == "mainsail-serving"
    labels = naming.labels("serving", model="churn", variant="challenger", model_version=2)
    assert labels[naming.LABEL_PART_OF] == "mainsail"
    assert labels[naming.LABEL_VARIANT] == "challenger"
    assert labels[naming.LABEL_MODEL_VERSION] == "2"
    assert naming.selector_labels("feast").items() <= naming.labels("feast").items()
    assert naming.image("serving") == "ghcr.io/mainsail-mlops/mainsail-serving:0.1.0"


@pytest.mark.parametrize("bad", ["Churn", "churn_v1", "-churn", "x" * 64, ""])
def test_invalid_kubernetes_names_are_refused_with_a_reason(bad: str) -> None:
    with pytest.raises(ValueError, match="not a valid Kubernetes name"):
        naming.check_dns_label(bad)


def test_image_refuses_latest_and_unknown_envs() -> None:
    with pytest.raises(ValueError, match="latest"):
        naming.image("pipeline", tag="latest")
    with pytest.raises(ValueError, match="unknown image env"):
        naming.image("gpu")  # type: ignore[arg-type]


def test_chart_objects_use_naming_labels_and_components(default_objects: list[checks.Obj]) -> None:
    for obj in default_objects:
        labels = obj["metadata"]["labels"]
        assert labels[naming.LABEL_PART_OF] == naming.PROJECT
        assert labels[naming.LABEL_INSTANCE] == naming.RELEASE_NAME
        assert labels[naming.LABEL_COMPONENT] in naming.COMPONENTS, checks.ident(obj)
        assert obj["metadata"]["namespace"] == naming.DEFAULT_NAMESPACE


def test_chart_uses_naming_ports_and_names(default_objects: list[checks.Obj]) -> None:
    by = {(o["kind"], o["metadata"]["name"]): o for o in default_objects}
    assert ("Server", naming.server_name()) in by
    assert ("ServiceAccount", naming.deployer_service_account()) in by
    assert ("Secret", naming.s3_secret_name()) in by
    assert ("Secret", naming.rclone_secret_name()) in by
    ports = {
        (name, p["port"])
        for (kind, name), o in by.items()
        if kind == "Service"
        for p in o["spec"]["ports"]
    }
    assert ("mainsail-minio", naming.S3_PORT) in ports
    assert ("mainsail-feast", naming.FEAST_PORT) in ports
    assert ("mainsail-redis", naming.REDIS_PORT) in ports
    assert ("mainsail-retrain-trigger", naming.TRIGGER_PORT) in ports
    server = by[("Server", naming.server_name())]["spec"]["podSpec"]["containers"]
    # the mlserver container's ports are the ServerConfig's (the override declares none)
    merged = [merge_container(c) if c["name"] == "mlserver" else c for c in server]
    container_ports = {p["containerPort"] for c in merged for p in c.get("ports", [])}
    assert {
        naming.MLSERVER_HTTP_PORT,
        naming.MLSERVER_GRPC_PORT,
        naming.MLSERVER_METRICS_PORT,
        naming.DRIFT_PORT,
    } <= container_ports
    ray = by[("RayCluster", "mainsail-ray")]
    head_ports = {
        p["containerPort"]
        for p in ray["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert {naming.RAY_CLIENT_PORT, naming.RAY_DASHBOARD_PORT, naming.RAY_GCS_PORT} <= head_ports
    gpu = ray["spec"]["workerGroupSpecs"][1]["template"]["spec"]
    assert gpu["nodeSelector"] == {naming.LABEL_POOL: naming.POOL_GPU}
    assert naming.GPU_RESOURCE in gpu["containers"][0]["resources"]["limits"]


def test_deployer_role_is_least_privilege(default_objects: list[checks.Obj]) -> None:
    roles = {o["metadata"]["name"]: o for o in default_objects if o["kind"] == "Role"}
    trigger = naming.fullname(naming.RELEASE_NAME, "retrain-trigger")
    assert set(roles) == {naming.deployer_service_account(), trigger}
    assert roles[trigger]["rules"] == [
        {"apiGroups": ["ray.io"], "resources": ["rayjobs"], "verbs": ["create"]}
    ]
    role = roles[naming.deployer_service_account()]
    assert role["rules"] == [
        {
            "apiGroups": ["mlops.seldon.io"],
            "resources": ["models", "experiments"],
            # what mainsail.deploy.kubernetes calls (tests/cluster records and checks it)
            "verbs": ["get", "create", "update"],
        }
    ]
    assert not [o for o in default_objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    # Only the deployer's ServiceAccount mounts an API token, and the trigger's pods ask for one
    # (its rayjob action creates RayJobs, all its own Role grants).
    for obj in default_objects:
        if obj["kind"] == "ServiceAccount":
            mounts = obj.get("automountServiceAccountToken")
            assert mounts is (obj["metadata"]["name"] == naming.deployer_service_account())
    pods = {
        o["metadata"]["name"]: o["spec"]["template"]["spec"]
        for o in default_objects
        if o["kind"] == "Deployment"
    }
    mounting = {n for n, p in pods.items() if p.get("automountServiceAccountToken")}
    assert mounting == {naming.fullname(naming.RELEASE_NAME, "retrain-trigger")}
