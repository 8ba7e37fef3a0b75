"""`python -m mainsail.serving.launch`, the command of a variant's MLServer Deployment with the
chart's `serving.backend: mlserver`, run as the pod runs it: the serving venv's Python, the
environment the chart renders (model, version, the registry's URL and keys, the public key, the
drift sidecar's URL), a read-only view of nothing else.

It serves exactly the version MAINSAIL_MODEL_VERSION names, downloaded from the registry and
signature-checked; the runtime's drift feed is on MLServer's /metrics (one process); a version
signed by another key is never loaded.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mainsail.core import naming
from mainsail.registry.seaweedfs import SeaweedS3
from mainsail.registry.signing import generate_keypair
from mainsail.registry.store import ModelRegistry
from mainsail.serving.mlserver import find_mlserver, free_port
from tests.support.containers import v2_body
from tests.support.serving import DriftSink

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
_names = itertools.count()


def _launch(env: dict[str, str], tmp: Path, log: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    python = find_mlserver().parent / "python"
    http, grpc, metrics = free_port(), free_port(), free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(python),
                "-m",
                "mainsail.serving.launch",
                str(tmp / "repository"),
                "--http-port",
                str(http),
                "--grpc-port",
                str(grpc),
                "--metrics-port",
                str(metrics),
            ],
            env=env,
            cwd=tmp,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, f"http://127.0.0.1:{http}", f"http://127.0.0.1:{metrics}"


@pytest.fixture
def chart_env(seaweed: SeaweedS3, signing_keys: tuple[str, str], tmp_path: Path) -> dict[str, str]:
    ep = seaweed.endpoint
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO / "src"),
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
        naming.ENV_S3_ENDPOINT: ep.url,
        naming.ENV_S3_BUCKET: "mainsail-models",
        "MAINSAIL_S3_ACCESS_KEY": ep.access_key,
        "MAINSAIL_S3_SECRET_KEY": ep.secret_key,
        "MAINSAIL_REGISTRY_PUBLIC_KEYS": signing_keys[1],
        "MLSERVER_PARALLEL_WORKERS": "0",
    }
    return env


@pytest.fixture
def stopper() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    import signal

    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def _ready(url: str, model: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if httpx.get(f"{url}/v2/models/{model}/ready", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


def test_it_serves_the_version_the_environment_names_and_feeds_the_sidecar(
    registry: ModelRegistry,
    churn_artifact: Path,
    chart_env: dict[str, str],
    drift_sink: DriftSink,
    tmp_path: Path,
    stopper: list[subprocess.Popen[bytes]],
) -> None:
    model = f"launch-{next(_names)}"
    first = registry.publish(model, churn_artifact).version
    registry.publish(model, churn_artifact)  # a newer one, which must not be served
    env = {
        **chart_env,
        naming.ENV_MODEL_NAME: model,
        naming.ENV_MODEL_VERSION: str(first),
        naming.ENV_DRIFT_URL: drift_sink.url,
    }
    log = tmp_path / "mlserver.log"
    proc, url, metrics = _launch(env, tmp_path, log)
    stopper.append(proc)
    assert _ready(url, model, proc, log, 120), log.read_text()[-3000:]
    answer = httpx.post(
        f"{url}/v2/models/{model}/infer", json=v2_body(churn_artifact, 20, 5), timeout=30
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_version"] == str(first)
    assert {o["name"] for o in body["outputs"]} == {"label", "probability"}

    def fed() -> str | None:
        text = httpx.get(f"{metrics}/metrics", timeout=5).text
        line = next(
            (
                ln
                for ln in text.splitlines()
                if ln.startswith("mainsail_drift_feed_rows_total") and 'outcome="sent"' in ln
            ),
            None,
        )
        return line if line and not line.endswith(" 0.0") else None

    deadline = time.monotonic() + 30
    while (line := fed()) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert line is not None and f'version="{first}"' in line, line
    # the download lies outside the repository MLServer scans
    assert not list((tmp_path / "repository").rglob("manifest.json"))


def test_a_version_signed_by_another_key_is_never_loaded(
    registry: ModelRegistry,
    churn_artifact: Path,
    chart_env: dict[str, str],
    tmp_path: Path,
    stopper: list[subprocess.Popen[bytes]],
) -> None:
    model = f"launch-{next(_names)}"
    version = registry.publish(model, churn_artifact).version
    env = {
        **chart_env,
        naming.ENV_MODEL_NAME: model,
        naming.ENV_MODEL_VERSION: str(version),
        "MAINSAIL_REGISTRY_PUBLIC_KEYS": generate_keypair()[1],
    }
    log = tmp_path / "mlserver.log"
    proc, url, _ = _launch(env, tmp_path, log)
    stopper.append(proc)
    assert not _ready(url, model, proc, log, 20)
    assert "signature" in log.read_text().lower(), log.read_text()[-3000:]


def test_without_a_version_it_exits_naming_the_variable(tmp_path: Path) -> None:
    python = find_mlserver().parent / "python"
    env = {"PYTHONPATH": str(REPO / "src"), "TMPDIR": str(tmp_path), naming.ENV_MODEL_NAME: "x"}
    done = subprocess.run(
        [str(python), "-m", "mainsail.serving.launch"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert naming.ENV_MODEL_VERSION in done.stderr
