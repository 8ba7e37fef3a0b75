"""Each entrypoint the chart uses starts in its image as uid 10001 with a read-only root
filesystem and only the writable paths the chart mounts (the pods as rendered by the real Helm
engine, run by tests/support/pods.py): the CLI, the retrain trigger, the Feast feature
server, the router, MLServer with the Mainsail runtime loading a model from S3, and the drift
sidecar. Each must pass its readiness probe before its liveness probe would give up on it (the
probe's initialDelaySeconds + failureThreshold x periodSeconds): the time stated for it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mainsail.core import naming
from tests.support.containers import (
    BUCKET,
    REPO,
    SELDON_MODELS_VOLUME,
    chart_values,
    seldon_server_pod,
    v2_body,
)
from tests.support.pods import Cluster, Pod

pytestmark = [pytest.mark.containers, pytest.mark.integration, pytest.mark.slow]

#: Readiness times measured here, printed at the end of the module (`-s`) for the README.
TIMES: dict[str, float] = {}


def _pipeline_pod(cluster: Cluster, command: list[str]) -> dict[str, Any]:
    """A pod of the pipeline image as the chart runs one (the retrain trigger's: uid 10001,
    read-only root, /tmp an emptyDir, the S3 environment), with another command."""
    spec, _ = cluster.pod_spec("Deployment", "mainsail-retrain-trigger")
    container = {**spec["containers"][0], "command": command}
    container.pop("args", None)
    for probe in ("livenessProbe", "readinessProbe"):
        container.pop(probe, None)
    return {**spec, "containers": [container]}


IMAGE_PODS = {
    "pipeline": ("Deployment", "mainsail-retrain-trigger", "retrain-trigger"),
    "serving": ("Server", naming.server_name(), "mlserver"),
    "drift": ("Server", naming.server_name(), "drift"),
}


@pytest.mark.parametrize("env", naming.IMAGE_ENVS)
def test_every_image_runs_as_its_pods_non_root_user_on_a_read_only_root(
    cluster: Cluster, env: str
) -> None:
    """The pipeline image as its own 10001; the Server's containers as the uid 1000 that Seldon's
    ServerConfig gives the pod (the chart no longer replaces it: rclone's config is 1000's)."""
    kind, name, container_name = IMAGE_PODS[env]
    spec, _ = cluster.pod_spec(kind, name)
    container = next(c for c in spec["containers"] if c["name"] == container_name)
    identity = {**spec.get("securityContext", {}), **container.get("securityContext", {})}
    uid, gid = str(identity["runAsUser"]), str(identity.get("runAsGroup", identity["runAsUser"]))
    assert (uid, gid) == (("10001", "10001") if kind != "Server" else ("1000", "1000"))
    assert container["image"] == naming.image(env)
    probe = "id -u; id -g; touch /opt/venv/x /app/x 2>&1; touch /tmp/ok && echo tmp-writable"
    container = {**container, "command": ["sh", "-c", probe]}
    container.pop("args", None)
    code, out = cluster.run_to_end(f"id-{env}", {**spec, "containers": [container]}, timeout=60)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[:2] == [uid, gid], out
    assert out.count("Read-only file system") == 2, out
    assert lines[-1] == "tmp-writable", out


# Compiled libraries the wheels do not bundle come from the image's OS (LightGBM needs libgomp1):
# each image imports the native libraries of the models it fits or unpickles.
NATIVE_IMPORTS = {
    "pipeline": "import lightgbm, torch, sklearn, pyarrow",
    "serving": "import lightgbm, sklearn, pyarrow, mlserver",
    "drift": "import alibi_detect, sklearn, pyarrow",
}


@pytest.mark.parametrize("env", naming.IMAGE_ENVS)
def test_every_image_loads_the_native_libraries_of_its_models(cluster: Cluster, env: str) -> None:
    kind, name, container_name = IMAGE_PODS[env]
    spec, _ = cluster.pod_spec(kind, name)
    container = next(c for c in spec["containers"] if c["name"] == container_name)
    command = ["python", "-c", NATIVE_IMPORTS[env] + "; print('imported')"]
    container = {**container, "command": command}
    container.pop("args", None)
    pod = {**spec, "containers": [container]}
    code, out = cluster.run_to_end(f"native-{env}", pod, timeout=120)
    # (alibi-detect's transformers import prints a notice of its own before)
    assert code == 0 and "imported" in out.splitlines(), out


def test_the_cli_answers_help(cluster: Cluster) -> None:
    code, out = cluster.run_to_end("cli", _pipeline_pod(cluster, ["mainsail", "--help"]))
    assert code == 0, out
    assert "Usage: mainsail" in out
    for command in ("run", "submit", "trigger", "features", "models"):
        assert f" {command} " in out, out


def test_a_kfp_step_runs_as_a_kfp_pod_runs_it(cluster: Cluster, tmp_path: Path) -> None:
    """The `validate` step of the checked-in training IR, launched as KFP's launcher launches
    it (the executor's command and args, `{{$}}` filled with the executor input that kfp.local
    builds from the IR), in the pipeline image as uid 10001 with a read-only root: /tmp an
    emptyDir (the Feast repository and run folders go there), the data a read-only volume,
    the outputs on a volume the pod's user owns (KFP's output volume)."""
    from google.protobuf import json_format
    from kfp.local import executor_input_utils, placeholder_utils
    from kfp.pipeline_spec import pipeline_spec_pb2

    from mainsail.config import config_to_json, load_config
    from mainsail.data.ingest import ensure_data_file

    ir = next(yaml.safe_load_all((REPO / "pipelines" / "compiled" / "training.yaml").read_text()))
    component = json_format.ParseDict(
        ir["components"]["comp-validate"], pipeline_spec_pb2.ComponentSpec()
    )
    executor = ir["deploymentSpec"]["executors"]["exec-validate"]["container"]
    assert executor["image"] == naming.image("pipeline")
    data = tmp_path / "data"
    data.mkdir()
    cfg = load_config(
        REPO / "configs" / "churn.yaml",
        {"data.path": str(data / "churn.parquet"), "data.synthetic.rows": 600},
    )
    ensure_data_file(cfg.data, cfg.seed)
    cfg.data.path = Path("/data/churn.parquet")
    cfg.runs_dir = Path("/tmp/runs")
    cfg.features.repo_dir = Path("/tmp/feature_repo")
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    os.chown(outputs, 10001, 10001)
    arguments = {"config_json": config_to_json(cfg), "data_uri": str(cfg.data.path)}
    arguments["data_digest"] = ""
    executor_input = executor_input_utils.construct_executor_input(
        component, arguments, "/outputs/validate", block_input_artifact=True
    )
    command = placeholder_utils.replace_placeholders(
        [*executor["command"], *executor["args"]],
        executor_input_utils.executor_input_to_dict(executor_input, component),
        pipeline_resource_name="mainsail-training",
        task_resource_name="validate",
        pipeline_root="/outputs",
        unique_pipeline_id="test",
    )
    spec = _pipeline_pod(cluster, command)
    container = spec["containers"][0]
    container["volumeMounts"] = [
        *container["volumeMounts"],
        {"name": "data", "mountPath": "/data", "readOnly": True},
        {"name": "outputs", "mountPath": "/outputs"},
    ]
    code, out = cluster.run_to_end(
        "kfp-validate", spec, 300, host_volumes={"data": _readable(data), "outputs": outputs}
    )
    assert code == 0, out[-4000:]
    metrics = json.loads((outputs / "validate" / "metrics").read_text())
    assert metrics["rows"] > 0 and metrics["errors"] == 0
    assert (outputs / "validate" / "dataset" / "frame.parquet").stat().st_uid == 10001


def test_the_retrain_trigger_is_ready_and_takes_an_alert(cluster: Cluster) -> None:
    spec, labels = cluster.pod_spec("Deployment", "mainsail-retrain-trigger")
    pod = cluster.start_pod("trigger", spec, labels)
    try:
        _ready_within_liveness(pod, "retrain-trigger", "trigger")
        alert = {"alerts": [{"status": "firing", "labels": {"alertname": "SomethingElse"}}]}
        url = pod.url("retrain-trigger", "http", "/alerts")
        # Without the token from the chart's auth Secret (what Alertmanager sends): refused.
        assert httpx.post(url, json=alert, timeout=10).status_code == 401
        token = chart_values()["auth"]["triggerToken"]
        response = httpx.post(
            url, json=alert, headers={"authorization": f"Bearer {token}"}, timeout=10
        )
        assert response.status_code == 200, response.text
        assert "decisions" in response.json()
    finally:
        cluster.stop(pod)


def test_the_feast_feature_server_is_ready(cluster: Cluster, minio: Pod) -> None:
    """`feast serve` with the chart's feature_store.yaml (ConfigMap at /feast, read-only): the
    registry in S3 (needs boto3: it crashed at start-up without), the online store in Redis."""
    spec, labels = cluster.pod_spec("Deployment", "mainsail-feast")
    pod = cluster.start_pod("feast", spec, labels)
    try:
        _ready_within_liveness(pod, "feast", "feast")
        metrics = httpx.get(pod.url("feast", "metrics", "/metrics"), timeout=10)
        assert metrics.status_code == 200
    finally:
        cluster.stop(pod)


RUNTIME = "mainsail.serving.runtime.MainsailRuntime"
REPOSITORY_TOKEN = "repository-test-token"


def _readable(folder: Path) -> Path:
    """A host folder mounted into a container must be readable by uid 10001."""
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


@pytest.fixture(scope="module")
def mlserver_s3(
    cluster: Cluster,
    minio: Pod,
    published: int,
    tmp_path_factory: pytest.TempPathFactory,
    signing_keys: tuple[str, str],
) -> Any:
    """MLServer in the serving image as the chart's Server runs it (with what Seldon adds),
    and a model whose settings point the Mainsail runtime at the registry: the runtime
    downloads the version from S3 itself, with the S3 environment the chart gives its S3
    clients (the drift container's), and verifies it before loading."""
    spec, labels = seldon_server_pod(cluster, containers=("mlserver",))
    full, _ = cluster.pod_spec("Server", naming.server_name())
    drift = next(c for c in full["containers"] if c["name"] == "drift")
    s3_env = [e for e in drift["env"] if e["name"].startswith(("MAINSAIL_S3_", "AWS_"))]
    mlserver = spec["containers"][0]
    # The chart's `serving.registryPublicKeys` (the runtime checks the version's signature),
    # and a repository token so this test, outside the pod, may load the model.
    keys = {"name": "MAINSAIL_REGISTRY_PUBLIC_KEYS", "value": signing_keys[1]}
    token = {"name": "MAINSAIL_REPOSITORY_TOKEN", "value": REPOSITORY_TOKEN}
    env = [e for e in mlserver["env"] if e["name"] != keys["name"]]
    mlserver["env"] = [*env, *s3_env, keys, token]
    endpoint = next(e["value"] for e in s3_env if e["name"] == naming.ENV_S3_ENDPOINT)
    agent = tmp_path_factory.mktemp("agent")
    folder = agent / "models" / "churn-s3"
    folder.mkdir(parents=True)
    registry = {"endpoint": endpoint, "bucket": BUCKET, "model": "churn", "ref": "champion"}
    settings = {
        "name": "churn-s3",
        "implementation": RUNTIME,
        "parameters": {"extra": {"registry": registry}},
    }
    (folder / "model-settings.json").write_text(json.dumps(settings))
    pod = cluster.start_pod(
        "mlserver-s3", spec, labels, host_volumes={SELDON_MODELS_VOLUME: _readable(agent)}
    )
    _ready_within_liveness(pod, "mlserver", "mlserver")
    load_url = pod.url("mlserver", "server-http", "/v2/repository/models/churn-s3/load")
    # From outside the pod the repository API needs the token (Seldon's agent, in the pod,
    # reaches it over loopback).
    refused = httpx.post(load_url, timeout=30)
    assert refused.status_code == 401, refused.text
    load = httpx.post(
        load_url, headers={"authorization": f"Bearer {REPOSITORY_TOKEN}"}, timeout=120
    )
    assert load.status_code == 200, f"{load.text}\n{pod.logs('mlserver')}"
    yield pod
    cluster.stop(pod)


def test_mlserver_serves_a_model_downloaded_from_s3_over_v2(
    mlserver_s3: Pod, published: int, churn_artifact: Path
) -> None:
    url = mlserver_s3.url("mlserver", "server-http", "/v2/models/churn-s3/infer")
    response = httpx.post(url, json=v2_body(churn_artifact, 20, seed=5), timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == str(published)
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["label"]["shape"] == [20] and outputs["probability"]["shape"] == [20]


def test_mlserver_answers_a_bad_request_with_a_400_naming_the_input(
    mlserver_s3: Pod, churn_artifact: Path
) -> None:
    body = v2_body(churn_artifact, 3, seed=6)
    tenure = next(i for i in body["inputs"] if i["name"] == "tenure_months")
    tenure["data"] = ["many", "few", "none"]
    tenure["datatype"] = "BYTES"
    url = mlserver_s3.url("mlserver", "server-http", "/v2/models/churn-s3/infer")
    response = httpx.post(url, json=body, timeout=30)
    assert response.status_code == 400, response.text
    assert "tenure_months" in response.json()["error"]


def test_the_router_routes_v2_to_mlserver(
    cluster: Cluster, mlserver_s3: Pod, churn_artifact: Path, tmp_path: Path
) -> None:
    """`python -m mainsail.serving.router` in the pipeline image (the trigger pod's security
    and /tmp), its settings a read-only mount as a ConfigMap would give them, the feedback
    store and state file in /tmp, the champion the MLServer container above."""
    upstream = next(iter(mlserver_s3.containers.values()))
    name = cluster.engine.docker("inspect", "-f", "{{.Name}}", upstream).stdout.strip("/\n")
    settings = {
        "model_name": "churn-s3",
        "variants": [
            {
                "role": "champion",
                "url": f"http://{name}:{naming.MLSERVER_HTTP_PORT}",
                "model": "churn-s3",
                "version": "1",
                "weight": 100,
            }
        ],
        "feedback_url": "sqlite:////tmp/feedback.db",
        "state_file": "/tmp/router-state.json",
    }
    folder = tmp_path / "router"
    folder.mkdir()
    (folder / "settings.json").write_text(json.dumps(settings))
    command = ["python", "-m", "mainsail.serving.router", "--settings"]
    command += ["/etc/mainsail/router/settings.json", "--host", "0.0.0.0", "--port", "8080"]
    spec = _pipeline_pod(cluster, command)
    container = spec["containers"][0]
    container["ports"] = [{"name": "http", "containerPort": naming.ROUTER_PORT}]
    container["readinessProbe"] = {"httpGet": {"path": "/v2/health/ready", "port": "http"}}
    mount = {"name": "router-settings", "mountPath": "/etc/mainsail/router", "readOnly": True}
    container["volumeMounts"] = [*container["volumeMounts"], mount]
    pod = cluster.start_pod("router", spec, host_volumes={"router-settings": _readable(folder)})
    try:
        TIMES["router"] = round(pod.wait_probe(container["name"], timeout=60), 1)
        url = pod.url(container["name"], "http", "/v2/models/churn-s3/infer")
        response = httpx.post(url, json=v2_body(churn_artifact, 5, seed=8), timeout=30)
        assert response.status_code == 200, f"{response.text}\n{pod.logs(container['name'])}"
        assert {o["name"] for o in response.json()["outputs"]} >= {"label", "probability"}
    finally:
        cluster.stop(pod)


def _ready_within_liveness(pod: Pod, container: str, key: str) -> float:
    """Wait for the readiness probe, within the liveness probe's budget."""
    _, budget = pod.probe(container, "livenessProbe")
    seconds = pod.wait_probe(container, "readinessProbe", timeout=budget)
    TIMES[key] = round(seconds, 1)
    print(f"{key}: ready in {seconds:.1f} s (liveness budget {budget:.0f} s)")
    return seconds


def test_zz_report_times() -> None:
    print("readiness times (s):", json.dumps(TIMES, sort_keys=True))
    sys.stdout.flush()
