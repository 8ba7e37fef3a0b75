"""Independent V2 clients with their defaults, through MLServer and through the router.

tritonclient (HTTP and gRPC) runs in this env; the kserve client (REST and gRPC) in the clients
env (`.venv/clients`, its pins cannot share this one) as a subprocess. Their defaults are what
a user meets first: the binary tensor extension, NaN for a missing value, kserve's `model_name`
in the body, JSON bodies on live/ready. Each client must discover the 14 inputs from the model
metadata and get a default inference back. The router speaks REST only (on a cluster Seldon's
Envoy carries gRPC), so the gRPC clients talk to MLServer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mainsail.serving.mlserver import MLServerProcess
from mainsail.serving.router.app import RouterSettings, create_router
from tests.support.router import LeanServerThread
from tests.support.serving import churn_frame

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
CLIENTS_PYTHON = REPO / ".venv" / "clients" / "bin" / "python"
MODEL = "churn-local"


@pytest.fixture(scope="module")
def router(mlserver: MLServerProcess) -> Iterator[LeanServerThread]:
    """The canary router serving `churn-local` under its own name, both variants on MLServer."""
    settings = RouterSettings.model_validate(
        {
            "model_name": MODEL,
            "router": {"health_interval_s": 0.5},
            "variants": [
                {"role": "champion", "url": mlserver.url, "model": MODEL, "weight": 90},
                {"role": "challenger", "url": mlserver.url, "model": MODEL, "weight": 10},
            ],
        }
    )
    server = LeanServerThread(create_router(settings, None)).start()
    yield server
    server.stop()


def _triton_inputs(module: Any, metadata: list[Any], rows: int) -> list[Any]:
    frame = churn_frame(rows, seed=3)
    tensors = []
    for spec in metadata:
        name = spec["name"] if isinstance(spec, dict) else spec.name
        datatype = spec["datatype"] if isinstance(spec, dict) else spec.datatype
        column = frame[name]
        if datatype == "FP64":
            values = column.astype("float64").to_numpy()  # NaN where missing: the default
        elif datatype == "BYTES":
            values = np.array([str(v) for v in column.fillna("")], dtype=object)
        else:
            values = column.fillna(False).astype(bool).to_numpy()
        tensor = module.InferInput(name, [rows], datatype)
        tensor.set_data_from_numpy(values)  # binary_data=True: the default
        tensors.append(tensor)
    return tensors


@pytest.mark.parametrize("target", ["mlserver", "router"])
def test_tritonclient_http_with_its_defaults(
    mlserver: MLServerProcess, router: LeanServerThread, target: str
) -> None:
    import tritonclient.http as th

    url = (mlserver.url if target == "mlserver" else router.url).removeprefix("http://")
    client = th.InferenceServerClient(url)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL)
    metadata = client.get_model_metadata(MODEL)
    assert len(metadata["inputs"]) == 14
    assert {"name": "label", "datatype": "BYTES", "shape": [-1]} in metadata["outputs"]
    result = client.infer(MODEL, _triton_inputs(th, metadata["inputs"], 4))
    assert result.as_numpy("label").shape == (4,)
    assert np.all((result.as_numpy("probability") >= 0.5) & (result.as_numpy("probability") <= 1))
    client.close()


def test_tritonclient_grpc_with_its_defaults(mlserver: MLServerProcess) -> None:
    import tritonclient.grpc as tg

    client = tg.InferenceServerClient(mlserver.grpc_address)
    assert client.is_server_live() and client.is_model_ready(MODEL)
    metadata = client.get_model_metadata(MODEL)
    assert len(metadata.inputs) == 14
    assert [o.name for o in metadata.outputs] == ["label", "probability", "probabilities"]
    result = client.infer(MODEL, _triton_inputs(tg, list(metadata.inputs), 4))
    assert [v in (b"0", b"1") for v in result.as_numpy("label")] == [True] * 4
    classes = result.get_response().parameters["classes"].string_param
    assert json.loads(classes) == ["0", "1"]
    client.close()


def _kserve(rest: str, grpc_address: str | None) -> dict[str, Any]:
    if not CLIENTS_PYTHON.exists():
        pytest.fail(f"{CLIENTS_PYTHON} is missing: build the clients env (make envs)")
    argv = [str(CLIENTS_PYTHON), str(REPO / "tests" / "support" / "kserve_client.py"), rest]
    argv += [grpc_address, MODEL] if grpc_address else [MODEL]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return seen


def test_the_kserve_clients_rest_and_grpc_through_mlserver(mlserver: MLServerProcess) -> None:
    seen = _kserve(mlserver.url, mlserver.grpc_address)
    assert seen["rest_live"] is True and seen["rest_ready"] is True
    assert seen["rest_model_ready"] is True
    assert seen["rest_metadata_inputs"] == 14 and seen["grpc_metadata_inputs"] == 14
    assert len(seen["rest_outputs"]["label"]) == 3 and len(seen["grpc_outputs"]["label"]) == 3
    assert seen["grpc_live"] is True and seen["grpc_model_ready"] is True
    assert "classes" in seen["grpc_parameters"]


def test_the_kserve_rest_client_through_the_router(router: LeanServerThread) -> None:
    seen = _kserve(router.url, None)
    assert seen["rest_live"] is True and seen["rest_ready"] is True
    assert seen["rest_model_ready"] is True and seen["rest_metadata_inputs"] == 14
    assert len(seen["rest_outputs"]["label"]) == 3


def test_the_clients_env_holds_kserve_not_this_one() -> None:
    """kserve lives in its own env: importing it here would mean its pins leaked in."""
    probe = "import importlib.util,sys; sys.exit(importlib.util.find_spec('kserve') is None)"
    assert subprocess.run([sys.executable, "-c", probe], check=False).returncode == 1
