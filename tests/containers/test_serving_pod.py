"""The serving pod as the chart wires it, tried as containers: MLServer and the drift sidecar
sharing one network namespace, configured only by the env vars, args, volumes and Secret of the
render, merged as Seldon Core 2's operator merges it with its `mlserver` ServerConfig (its ports,
env, model volume and pod identity: tests/support/seldon.py).

The model arrives as Seldon delivers it: its registry version folder on the agent volume (what
Seldon's rclone copies from the Model's storageUri; the registry's own download stands in for
rclone here), loaded through MLServer's repository API (what Seldon's agent calls). Served rows
then reach the sidecar over the pod's loopback (MAINSAIL_DRIFT_URL, which the runtime did not
read before: no row arrived), and the sidecar builds its detectors from the version's reference
sample in S3 (MAINSAIL_S3_ENDPOINT, a URL, and the Secret's keys).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from mainsail.registry.signing import Verifier
from mainsail.registry.store import ModelRegistry
from tests.support.containers import (
    BUCKET,
    SELDON_MODELS_VOLUME,
    chart_values,
    seldon_server_pod,
    v2_body,
)
from tests.support.pods import Cluster, Pod

pytestmark = [pytest.mark.containers, pytest.mark.integration, pytest.mark.slow]

READY: dict[str, float] = {}
REPOSITORY_TOKEN = "repository-test-token"


@pytest.fixture(scope="module")
def serving_pod(
    cluster: Cluster,
    minio: Pod,
    published: int,
    s3_client: Any,
    tmp_path_factory: pytest.TempPathFactory,
    signing_keys: tuple[str, str],
) -> Any:
    agent = tmp_path_factory.mktemp("agent")
    # As Seldon's rclone copies the version folder: its manifest.sig comes along.
    verifier = Verifier.from_text(signing_keys[1])
    registry = ModelRegistry(s3_client, BUCKET, verifier=verifier)
    local = registry.download("churn", published, agent / "rclone")
    folder = agent / "models" / "churn"
    folder.parent.mkdir(parents=True)
    shutil.copytree(local.path, folder)
    shutil.rmtree(agent / "rclone")
    for path in [agent, *agent.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    spec, labels = seldon_server_pod(cluster)
    # The chart's serving.registryPublicKeys set (the runtime verifies the signature), and a
    # repository token: this test loads the model from outside the pod, where Seldon's agent
    # would use loopback.
    mlserver = next(c for c in spec["containers"] if c["name"] == "mlserver")
    keys = {"name": "MAINSAIL_REGISTRY_PUBLIC_KEYS", "value": signing_keys[1]}
    env = [e for e in mlserver["env"] if e["name"] != keys["name"]]
    token = {"name": "MAINSAIL_REPOSITORY_TOKEN", "value": REPOSITORY_TOKEN}
    mlserver["env"] = [*env, keys, token]
    pod = cluster.start_pod("serving", spec, labels, host_volumes={SELDON_MODELS_VOLUME: agent})
    for container in ("mlserver", "drift"):
        _, budget = pod.probe(container, "livenessProbe")
        READY[container] = pod.wait_probe(container, "readinessProbe", timeout=budget)
        READY[f"{container}_budget"] = budget
    print(f"serving pod ready: {READY}")
    load = httpx.post(
        pod.url("mlserver", "server-http", "/v2/repository/models/churn/load"),
        headers={"authorization": f"Bearer {REPOSITORY_TOKEN}"},
        timeout=120,
    )
    assert load.status_code == 200, f"{load.text}\n{pod.logs('mlserver')}"
    yield pod
    cluster.stop(pod)


def test_both_containers_are_ready_before_liveness_gives_up(serving_pod: Pod) -> None:
    # The drift sidecar imports alibi-detect before it answers /healthz; the chart's liveness
    # probe (no initial delay, 3 x 15 s) restarts it if that takes longer than 45 s.
    for container in ("mlserver", "drift"):
        assert READY[container] < READY[f"{container}_budget"]


def _status(pod: Pod) -> dict[str, Any]:
    response = httpx.get(pod.url("drift", "drift", "/v1/status"), timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json()["versions"])


def test_served_rows_reach_the_sidecar_over_the_pods_loopback(
    serving_pod: Pod, published: int, churn_artifact: Path
) -> None:
    url = serving_pod.url("mlserver", "server-http", "/v2/models/churn/infer")
    sent = 0
    for seed in (11, 12, 13):
        response = httpx.post(url, json=v2_body(churn_artifact, 100, seed=seed), timeout=30)
        assert response.status_code == 200, response.text
        sent += 100
    key = f"churn/{published}"
    deadline = time.monotonic() + 30
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = _status(serving_pod)
        if status.get(key, {}).get("window_rows", 0) >= sent:
            break
        time.sleep(0.25)
    assert key in status, f"no rows reached the sidecar: {status}\n{serving_pod.logs('drift')}"
    assert status[key]["window_rows"] == sent
    # The detectors were built from the version's reference sample, read from S3.
    assert status[key]["reference_rows"] > 0
    # ... and the sidecar's own counter, which Prometheus scrapes (PodMonitor mainsail-drift).
    metrics = httpx.get(serving_pod.url("drift", "drift", "/metrics"), timeout=10).text
    wanted = f'mainsail_drift_rows_received_total{{model="churn",version="{published}"}}'
    line = next((x for x in metrics.splitlines() if x.startswith(wanted)), None)
    assert line is not None, metrics[:2000]
    assert float(line.rsplit(" ", 1)[1]) == sent


def test_the_sidecar_checks_the_served_window(serving_pod: Pod, published: int) -> None:
    """A drift check on demand over the rows served above: the sidecar's verdict is there."""
    url = serving_pod.url("drift", "drift", f"/v1/check?model=churn&version={published}")
    assert httpx.post(url, timeout=60).status_code == 401  # the drift token is required
    token = chart_values()["auth"]["driftToken"]
    check = httpx.post(url, headers={"authorization": f"Bearer {token}"}, timeout=60)
    assert check.status_code == 200, check.text
    status = _status(serving_pod)[f"churn/{published}"]
    assert status["checks"] >= 1 and status["last_result"] is not None
