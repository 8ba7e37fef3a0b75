"""Ray work of the train/tune steps on a Ray cluster through the Ray Jobs API.

The cluster is a real `ray start --head` with the dashboard (which serves the Jobs API, as a
KubeRay head does on port 8265) and Ray's token authentication on; tests/cluster runs the same
path against the KubeRay cluster of the kind cluster. `run_ray_work` submits the step's function
as a Ray job and stages inputs and outputs through the registry's S3 store (SeaweedFS here, as
on the cluster) or a shared folder; the job's driver joins that cluster (not a Ray of its own),
which the probe proves by the GCS address it saw. The head starts with the S3 keys in its
environment, as the chart gives them to the Ray pods.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mainsail.config import config_to_json, load_config
from mainsail.config.pipelines import KubeRayConfig
from mainsail.config.registry import RegistryConfig
from mainsail.pipeline.ray_jobs import STAGING_PREFIX, RayClusterError, run_ray_work
from mainsail.pipeline.steps import preprocess_step, split_step, tune_step, validate_step
from mainsail.registry.seaweedfs import SeaweedS3, free_port
from tests.support.configs import REPO, tiny_overrides

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN_ENV = "MAINSAIL_TEST_RAY_TOKEN"


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory: pytest.TempPathFactory, s3: SeaweedS3) -> Iterator[tuple[str, int]]:
    """A one-CPU Ray head with dashboard/Jobs API on free ports; yields (jobs URL, GCS port)."""
    from ray.job_submission import JobSubmissionClient

    tmp = tmp_path_factory.mktemp("ray")
    token = secrets.token_hex(16)
    gcs, dash = free_port(), free_port()
    ports = {
        "--ray-client-server-port": free_port(),
        "--node-manager-port": free_port(),
        "--object-manager-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--runtime-env-agent-port": free_port(),
        "--metrics-export-port": free_port(),
        "--min-worker-port": free_port(),
    }
    bin_dir = Path(sys.executable).parent
    cmd = [
        str(bin_dir / "ray"),
        "start",
        "--head",
        "--block",
        "--port",
        str(gcs),
        "--dashboard-host",
        "127.0.0.1",
        "--dashboard-port",
        str(dash),
        "--include-dashboard",
        "true",
        "--num-cpus",
        "1",
        "--disable-usage-stats",
        "--temp-dir",
        str(tmp / "t"),
        "--max-worker-port",
        "0",
    ]
    for flag, port in ports.items():
        cmd += [flag, str(port)]
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    log = (tmp / "head.log").open("w")
    proc = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{dash}"
    os.environ[TOKEN_ENV] = token
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                JobSubmissionClient(url, headers={"Authorization": f"Bearer {token}"})
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"ray head did not come up; see {tmp / 'head.log'}")
                time.sleep(1)
        yield url, gcs
    finally:
        os.environ.pop(TOKEN_ENV, None)
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:  # `ray start --block` lingers on SIGTERM
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


def test_probe_runs_on_the_cluster_not_a_local_ray(
    ray_head: tuple[str, int], tmp_path: Path
) -> None:
    url, gcs_port = ray_head
    cfg = load_config(REPO / "configs" / "churn.yaml", tiny_overrides(tmp_path))
    kuberay = KubeRayConfig(
        dashboard_url=url,
        working_dir=str(tmp_path / "shared"),
        poll_interval_s=0.5,
        token_env=TOKEN_ENV,
        timeout_s=180,
    )
    out = tmp_path / "probe.json"
    result = run_ray_work(
        "mainsail.pipeline.ray_jobs:cluster_probe",
        {"config_json": config_to_json(cfg), "out_path": str(out)},
        kuberay,
        outputs=["out_path"],
    )
    assert result["squares"] == [0, 1, 4, 9]
    assert result["gcs_address"].endswith(f":{gcs_port}")  # joined our head's GCS
    assert result["ray_job_id"].startswith("mainsail-job-")
    assert json.loads(out.read_text())["cpus"] == 1  # copied back from the shared folder
    assert list((tmp_path / "shared").iterdir()) == []  # the job folder was cleaned up


def test_tune_step_on_the_cluster_matches_local(ray_head: tuple[str, int], tmp_path: Path) -> None:
    url, _ = ray_head
    cfg = load_config(REPO / "configs" / "churn.yaml", tiny_overrides(tmp_path))
    cj = config_to_json(cfg)
    validate_step(cj, str(cfg.data.path), str(tmp_path / "ds"), str(tmp_path / "v.html"))
    split_step(cj, str(tmp_path / "ds"), str(tmp_path / "sp"))
    preprocess_step(cj, str(tmp_path / "ds"), str(tmp_path / "sp"), str(tmp_path / "prep"))

    local = tune_step(cj, str(tmp_path / "prep"), str(tmp_path / "tuned-local"))
    kuberay = KubeRayConfig(
        dashboard_url=url,
        working_dir=str(tmp_path / "shared"),
        poll_interval_s=0.5,
        token_env=TOKEN_ENV,
        timeout_s=300,
    )
    on_cluster = _with_kuberay(cj, kuberay, tmp_path)
    assert on_cluster.pop("ray_job_id").startswith("mainsail-job-")
    assert on_cluster == local  # same seed, same trials, same best score
    local_best = json.loads((tmp_path / "tuned-local" / "tuned.json").read_text())
    remote_best = json.loads((tmp_path / "tuned-cluster" / "tuned.json").read_text())
    assert remote_best["linear"]["best_params"] == local_best["linear"]["best_params"]


def _with_kuberay(cj: str, kuberay: KubeRayConfig, tmp_path: Path) -> dict[str, object]:
    # What tune_step does when the config's `pipelines.kuberay` names a cluster; the target is
    # passed explicitly because ProjectConfig gains its `pipelines` section at integration.
    return run_ray_work(
        "mainsail.pipeline.steps:tune_work",
        {
            "config_json": cj,
            "prepared_dir": str(tmp_path / "prep"),
            "tuned_dir": str(tmp_path / "tuned-cluster"),
        },
        kuberay,
        inputs=["prepared_dir"],
        outputs=["tuned_dir"],
    )


def test_unreachable_cluster_is_a_clear_error(tmp_path: Path) -> None:
    kuberay = KubeRayConfig(
        dashboard_url=f"http://127.0.0.1:{free_port()}", working_dir=str(tmp_path / "shared")
    )
    with pytest.raises(RayClusterError, match=r"cannot submit a Ray job to http://127\.0\.0\.1"):
        run_ray_work(
            "mainsail.pipeline.ray_jobs:cluster_probe",
            {"config_json": "{}", "out_path": "x"},
            kuberay,
        )
    assert list((tmp_path / "shared").iterdir()) == []


def test_probe_stages_through_the_registrys_s3_store(
    ray_head: tuple[str, int], s3: SeaweedS3, tmp_path: Path
) -> None:
    """No shared volume: the call, inputs and outputs travel through the registry's bucket."""
    url, gcs_port = ray_head
    cfg = load_config(REPO / "configs" / "churn.yaml", tiny_overrides(tmp_path))
    registry = RegistryConfig(endpoint=s3.endpoint.endpoint, bucket="mainsail-models")
    client = s3.client()
    if not client.bucket_exists(registry.bucket):
        client.make_bucket(registry.bucket)
    kuberay = KubeRayConfig(
        dashboard_url=url, poll_interval_s=0.5, token_env=TOKEN_ENV, timeout_s=180
    )
    given = tmp_path / "given"
    given.mkdir()
    (given / "rows.txt").write_text("1 2 3")
    out = tmp_path / "probe.json"
    result = run_ray_work(
        "mainsail.pipeline.ray_jobs:cluster_probe",
        {"config_json": config_to_json(cfg), "out_path": str(out), "inputs_dir": str(given)},
        kuberay,
        inputs=["inputs_dir"],
        outputs=["out_path"],
        registry=registry,
    )
    assert result["gcs_address"].endswith(f":{gcs_port}")
    assert result["inputs"] == {"rows.txt": "1 2 3"}  # uploaded, then fetched by the job
    assert json.loads(out.read_text())["squares"] == [0, 1, 4, 9]  # downloaded from S3
    left = list(client.list_objects(registry.bucket, prefix=STAGING_PREFIX, recursive=True))
    assert left == []  # the job's staging folder was removed


def test_cluster_without_staging_area_is_refused() -> None:
    with pytest.raises(RayClusterError, match="needs a staging area"):
        run_ray_work(
            "mainsail.pipeline.ray_jobs:cluster_probe",
            {},
            KubeRayConfig(dashboard_url="http://x:8265"),
        )
