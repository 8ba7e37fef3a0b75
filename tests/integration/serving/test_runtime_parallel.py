"""MLServer parallel inference workers with our runtime.

MLServer 1.7.1's worker process calls `asyncio.get_event_loop()` right after installing
uvloop's policy and before any loop exists; uvloop >= 0.22's policy raises "There is no current
event loop" there (older ones create a loop), so every worker died. requirements/serving.in pins
uvloop<0.22; these tests fail if that pin is lost.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from mainsail.data.schema import FeatureSchema
from mainsail.serving.mlserver import (
    MLServerProcess,
    ServedModel,
    find_mlserver,
    free_port,
    server_settings,
    write_repository,
)
from tests.support.serving import churn_frame, v2_inputs

pytestmark = pytest.mark.integration


def test_worker_start_sequence_has_an_event_loop() -> None:
    """The exact calls MLServer's Worker.run makes, in a fresh serving-env process."""
    python = find_mlserver().parent / "python"
    code = (
        "import asyncio\n"
        "from mlserver.utils import install_uvloop_event_loop\n"
        "install_uvloop_event_loop()\n"
        "loop = asyncio.get_event_loop()\n"
        "print(type(loop).__module__)\n"
    )
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-800:]
    assert result.stdout.strip().startswith("uvloop")


@pytest.fixture(scope="module")
def parallel_server(
    sealed_artifact: Path, tmp_path_factory: pytest.TempPathFactory, drift_sink: Any
) -> Any:
    repo = tmp_path_factory.mktemp("mlserver-parallel")
    settings = server_settings(
        repo,
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        parallel_workers=2,
    )
    model = ServedModel(
        "churn", uri=str(sealed_artifact), version="1", extra={"drift_url": drift_sink.url}
    )
    write_repository(repo, [model], settings)
    with MLServerProcess(repo).start(["churn"]) as server:
        yield server


def test_parallel_workers_serve_valid_and_reject_bad_requests(
    parallel_server: MLServerProcess, sealed_artifact: Path
) -> None:
    schema = FeatureSchema.load(sealed_artifact / "feature_schema.json")
    good = {"inputs": v2_inputs(churn_frame(300, seed=11).head(4), schema)}
    with httpx.Client(base_url=parallel_server.url, timeout=15) as client:
        codes = [client.post("/v2/models/churn/infer", json=good).status_code for _ in range(20)]
        bad = dict(good)
        bad["inputs"] = [dict(i) for i in good["inputs"]]
        bad["inputs"][0]["name"] = "tenure"
        response = client.post("/v2/models/churn/infer", json=bad)
    assert codes == [200] * 20
    assert response.status_code == 400
    assert "'tenure'" in response.json()["error"]
    log = parallel_server.log_tail(400)
    assert "There is no current event loop" not in log


def test_with_workers_the_runtime_collectors_are_not_on_metrics(
    parallel_server: MLServerProcess, sealed_artifact: Path, drift_sink: Any
) -> None:
    """Why the chart's Server sets MLSERVER_PARALLEL_WORKERS=0 (Seldon's ServerConfig: 1).

    With workers, MLServer's /metrics serves only prometheus_client's multiprocess files; the
    runtime's drift-feed collector lives in the workers' default registries, so the rows are
    fed to the sidecar but `mainsail_drift_feed_rows_total` is never exported (with 0 workers
    it is: tests/integration/serving/test_runtime_mlserver.py)."""
    schema = FeatureSchema.load(sealed_artifact / "feature_schema.json")
    good = {"inputs": v2_inputs(churn_frame(300, seed=11).head(4), schema)}
    before = drift_sink.rows()
    with httpx.Client(base_url=parallel_server.url, timeout=15) as client:
        for _ in range(5):
            assert client.post("/v2/models/churn/infer", json=good).status_code == 200
    deadline = time.monotonic() + 10
    while drift_sink.rows() < before + 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert drift_sink.rows() >= before + 20, "the workers did not feed the sidecar"
    metrics = httpx.get(f"http://127.0.0.1:{parallel_server.metrics_port}/metrics").text
    assert "model_infer_request_success" in metrics or "# HELP" in metrics, metrics[:400]
    assert "mainsail_drift_feed_rows" not in metrics
