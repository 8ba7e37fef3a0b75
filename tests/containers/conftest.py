"""Fixtures of the container tests: the engine, the three images, and a "cluster" (a docker
network, the chart rendered by the real Helm engine, SeaweedFS in MinIO's place).

The tests skip only when no container engine can run here, naming why; with
MAINSAIL_REQUIRE_CONTAINERS=1 (CI) that is a failure too. Images that are missing or older than
the source fail the tests (`make images`; `make test` builds them first).
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mainsail.core import naming
from tests.support.containers import BUCKET, SEAWEED_LAUNCHER, source_digest
from tests.support.pods import Cluster, Engine, Pod

REQUIRE = os.environ.get("MAINSAIL_REQUIRE_CONTAINERS") == "1"


def unavailable(reason: str) -> None:
    """Skip naming the reason; fail instead where containers are required (CI)."""
    if REQUIRE:
        pytest.fail(f"{reason} (MAINSAIL_REQUIRE_CONTAINERS=1: the container tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def engine() -> Engine:
    """The container engine, with the three images built from the current source."""
    from mainsail.pipeline.containers import ContainerEngineError, docker_host, engine_client

    try:
        engine_client().close()
    except ContainerEngineError as err:
        unavailable(str(err))
    eng = Engine(docker_host() or "unix:///var/run/docker.sock")
    problems = []
    for env in naming.IMAGE_ENVS:
        image = naming.image(env)
        proc = eng.docker(
            "image", "inspect", "-f", '{{index .Config.Labels "io.mainsail.source"}}', image,
            check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            problems.append(f"{image} is not built")
        elif proc.stdout.strip() != source_digest(env):
            problems.append(f"{image} is older than the source")
    if problems:
        pytest.fail(f"{'; '.join(problems)} on {eng.host}: run `make images`")
    return eng


@pytest.fixture(scope="session")
def s3_keys() -> dict[str, str]:
    """The development credentials the chart renders into its Secret (minio.auth values)."""
    return {"rootUser": f"mainsail-{secrets.token_hex(4)}", "rootPassword": secrets.token_hex(20)}


@pytest.fixture(scope="session")
def redis_server(cluster_network: Cluster) -> Iterator[tuple[str, int]]:
    """A real Redis (Debian's redis-server, as `make services` installs it) on the cluster
    network's gateway address: the Feast online store that `redis.external` points at."""
    from mainsail.core.ports import free_port

    host = cluster_network.gateway()
    port = free_port(host)
    proc = subprocess.Popen(
        ["redis-server", "--bind", host, "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        yield host, port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def cluster_network(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("cluster")
    workdir.chmod(0o700)
    cluster = Cluster(engine, [], workdir)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def chart_values(s3_keys: dict[str, str], redis_server: tuple[str, int]) -> dict[str, Any]:
    """Values of the render: the defaults, with the test's MinIO credentials and Redis."""
    host, port = redis_server
    return {
        "minio": {"auth": dict(s3_keys)},
        "redis": {"enabled": False, "external": {"host": host, "port": port}},
    }


@pytest.fixture(scope="session")
def cluster(cluster_network: Cluster, chart_values: dict[str, Any]) -> Cluster:
    """The cluster network with the chart rendered by the real Helm engine."""
    from tests.k8s.checks import load_render_module

    render = load_render_module()
    cluster_network.objects = render.documents(render.render_chart(chart_values))
    return cluster_network


@pytest.fixture(scope="session")
def minio(cluster: Cluster) -> Pod:
    """SeaweedFS in the place of the chart's MinIO: the MinIO pod as rendered (its Secret, its
    Service's DNS name, port 9000, security context, /tmp), with the image and command replaced
    by the pipeline image running the project's SeaweedFS launcher (MinIO's image cannot be
    pulled here) and the PersistentVolumeClaim by an emptyDir."""
    spec, labels = cluster.pod_spec("Deployment", "mainsail-minio")
    container = dict(spec["containers"][0])
    container["image"] = naming.image("pipeline")
    container["command"] = ["python3", "-c", SEAWEED_LAUNCHER]
    container.pop("args", None)
    container["readinessProbe"] = {"httpGet": {"path": "/healthz", "port": "s3"}}
    container.pop("livenessProbe", None)
    container["env"] = [*container["env"], {"name": "BUCKET", "value": BUCKET}]
    spec = {
        **spec,
        "containers": [container],
        "volumes": [
            {"name": v["name"], "emptyDir": {}} if "persistentVolumeClaim" in v else v
            for v in spec["volumes"]
        ],
    }
    pod = cluster.start_pod("minio", spec, labels)
    pod.wait_probe("minio", timeout=90)
    return pod


@pytest.fixture(scope="session")
def s3_client(minio: Pod, s3_keys: dict[str, str]) -> Any:
    """A minio client of that S3, through the port published on the host."""
    from minio import Minio

    address = minio.url("minio", "s3").removeprefix("http://")
    return Minio(
        address, access_key=s3_keys["rootUser"], secret_key=s3_keys["rootPassword"], secure=False
    )


@pytest.fixture(scope="session")
def churn_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained churn model artifact (scikit-learn only), as the serving tests build it."""
    from tests.support.serving import build_churn_artifact

    return build_churn_artifact(tmp_path_factory.mktemp("artifact") / "churn")


@pytest.fixture(scope="session")
def signing_keys() -> tuple[str, str]:
    """The registry's Ed25519 key pair (private for the publisher, public for the servers)."""
    from mainsail.registry.signing import generate_keypair

    return generate_keypair()


@pytest.fixture(scope="session")
def published(s3_client: Any, churn_artifact: Path, signing_keys: tuple[str, str]) -> int:
    """The artifact published (signed) to the cluster's S3 as `churn`, alias champion; its
    version."""
    from mainsail.registry.signing import Signer
    from mainsail.registry.store import ModelRegistry

    registry = ModelRegistry(s3_client, BUCKET, signer=Signer(signing_keys[0]))
    registry.ensure_bucket()
    info = registry.publish("churn", churn_artifact)
    registry.promote("churn", info.version, "champion")
    return info.version
