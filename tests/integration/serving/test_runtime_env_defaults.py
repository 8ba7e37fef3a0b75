"""The serving container's environment wires the runtime, as the chart sets it.

A version folder's model-settings.json (what the registry writes and Seldon Core 2 loads) names
no drift sidecar and no feature server; the chart puts them in the MLServer container's
environment (MAINSAIL_DRIFT_URL, MAINSAIL_FEATURE_SERVER_URL). Before the runtime read them, no
served row ever reached the sidecar: the first test fails on that wiring.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mainsail.core import naming
from mainsail.data.schema import FeatureSchema
from mainsail.serving.mlserver import (
    MLServerProcess,
    ServedModel,
    free_port,
    server_settings,
    write_repository,
)
from tests.support.serving import DriftSink, churn_frame, v2_inputs

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def env_sink() -> Iterator[DriftSink]:
    sink = DriftSink()
    yield sink
    sink.close()


@pytest.fixture(scope="module")
def served(
    env_sink: DriftSink,
    drift_sink: DriftSink,
    sealed_artifact: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[MLServerProcess]:
    """One MLServer whose environment names a drift sidecar and a feature server (nothing
    listens there), with the sealed churn model as a version folder carries it (no options),
    and once more with an explicit drift_url, which wins over the environment."""
    repo = tmp_path_factory.mktemp("mlserver-env")
    settings = server_settings(
        repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port()
    )
    models = [
        ServedModel("churn-env", uri=str(sealed_artifact), version="1"),
        ServedModel(
            "churn-explicit", uri=str(sealed_artifact), extra={"drift_url": drift_sink.url}
        ),
    ]
    write_repository(repo, models, settings)
    env = {
        **os.environ,
        naming.ENV_DRIFT_URL: env_sink.url,
        naming.ENV_FEATURE_SERVER_URL: f"http://127.0.0.1:{free_port()}",
    }
    with MLServerProcess(repo, env=env).start([m.name for m in models]) as server:
        yield server


def _rows_arrive(sink: DriftSink, rows: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and sink.rows() < rows:
        time.sleep(0.05)
    return sink.rows()


def test_rows_reach_the_sidecar_the_environment_names(
    served: MLServerProcess, env_sink: DriftSink, sealed_artifact: Path
) -> None:
    schema = FeatureSchema.load(sealed_artifact / "feature_schema.json")
    frame = churn_frame(40, seed=3)
    response = httpx.post(
        f"{served.url}/v2/models/churn-env/infer",
        json={"inputs": v2_inputs(frame, schema)},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert _rows_arrive(env_sink, 40) == 40
    assert {b["model"] for b in env_sink.bodies} == {"churn"}


def test_an_explicit_drift_url_wins_over_the_environment(
    served: MLServerProcess, env_sink: DriftSink, drift_sink: DriftSink, sealed_artifact: Path
) -> None:
    schema = FeatureSchema.load(sealed_artifact / "feature_schema.json")
    before_env, before_explicit = env_sink.rows(), drift_sink.rows()
    response = httpx.post(
        f"{served.url}/v2/models/churn-explicit/infer",
        json={"inputs": v2_inputs(churn_frame(25, seed=4), schema)},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert _rows_arrive(drift_sink, before_explicit + 25) == before_explicit + 25
    assert env_sink.rows() == before_env


def test_entity_keys_go_to_the_feature_server_the_environment_names(
    served: MLServerProcess,
) -> None:
    """Without a feature server the runtime refuses entity keys as "not configured"; with the
    environment's it is configured (this artifact has no lookup spec, which it says)."""
    body = {"inputs": [{"name": "customer_id", "shape": [1], "datatype": "BYTES", "data": ["C1"]}]}
    response = httpx.post(f"{served.url}/v2/models/churn-env/infer", json=body, timeout=30)
    error = response.json().get("error", "")
    assert response.status_code == 400, response.text
    assert "feature server is configured" in error and "no feature lookup spec" in error, error
