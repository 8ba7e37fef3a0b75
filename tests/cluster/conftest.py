"""Fixtures of the cluster tests: the live kind cluster with Mainsail installed.

`make kind-e2e` runs these after `scripts/kind/install.sh`; run by hand they need the same:
`make kind-up && scripts/kind/install.sh`. Without a cluster they fail, naming what is missing
(they are not in `testpaths`: `make test` never collects them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import kind


@pytest.fixture(scope="session")
def admin() -> Iterator[Any]:
    """The API server, with the kubeconfig's admin credentials; fails without Mainsail on it."""
    from kubernetes import client

    api = kind.api_client()
    try:
        client.CoreV1Api(api).read_namespace(kind.NAMESPACE)
        client.AppsV1Api(api).read_namespaced_deployment(
            f"{kind.RELEASE}-retrain-trigger", kind.NAMESPACE
        )
    except Exception as err:
        pytest.fail(
            f"Mainsail is not installed on cluster {kind.CLUSTER} ({err}); run "
            "`make kind-up` and `scripts/kind/install.sh` (or `make kind-e2e`)"
        )
    yield api
    api.close()


@pytest.fixture(scope="session")
def s3_keys(admin: Any) -> dict[str, str]:
    """The keys of the cluster's S3 store, as the chart's Secret holds them."""
    return kind.secret_data(admin, "mainsail-s3")


@pytest.fixture(scope="session")
def s3_client(s3_keys: dict[str, str]) -> Iterator[Any]:
    """A minio client on the cluster's S3 store, through a port-forward."""
    from minio import Minio

    with kind.port_forward("service/seaweedfs-s3", 8333, kind.S3_NAMESPACE) as port:
        yield Minio(
            f"127.0.0.1:{port}",
            access_key=s3_keys["AWS_ACCESS_KEY_ID"],
            secret_key=s3_keys["AWS_SECRET_ACCESS_KEY"],
            secure=False,
        )


BUCKET = "mainsail-models"


@pytest.fixture(scope="session")
def model_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small trained churn model artifact (scikit-learn only), to publish under test names."""
    from tests.support.serving import build_churn_artifact

    return build_churn_artifact(tmp_path_factory.mktemp("artifact") / "model", rows=600)


@pytest.fixture(scope="session")
def publish(s3_client: Any, admin: Any, model_artifact: Path) -> Callable[[str, int], Any]:
    """`publish(model, n)`: the cluster's registry, with at least `n` versions of `model`."""
    from mainsail.registry.store import ModelRegistry

    registry = kind.signed_registry(s3_client, admin, BUCKET)
    registry.ensure_bucket()

    def at_least(model: str, count: int) -> ModelRegistry:
        while len(registry.versions(model)) < count:
            registry.publish(model, model_artifact)
        return registry

    return at_least
