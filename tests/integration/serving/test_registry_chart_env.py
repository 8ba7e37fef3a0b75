"""The registry reached the way the chart configures every workload: MAINSAIL_S3_ENDPOINT as a
URL (`http://host:9000`, the form boto3 and Feast take), MAINSAIL_S3_BUCKET, and the keys.

The minio client wants `host:port` and raises on a URL (`Minio("http://...")`); before the
registry parsed the URL, and read the variable at all where the config names no endpoint, no
chart workload could reach the registry. These tests fail on that wiring.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from mainsail.config import load_config
from mainsail.config.registry import RegistryConfig
from mainsail.core import naming
from mainsail.registry import open_registry
from mainsail.registry.errors import RegistryError
from mainsail.registry.seaweedfs import SeaweedS3
from mainsail.registry.store import ModelRegistry, s3_address

pytestmark = pytest.mark.integration

_names = itertools.count()


def _chart_env(seaweed: SeaweedS3, bucket: str = "mainsail-models") -> dict[str, str]:
    ep = seaweed.endpoint
    return {
        naming.ENV_S3_ENDPOINT: ep.url,  # http://127.0.0.1:PORT, as the chart renders it
        naming.ENV_S3_BUCKET: bucket,
        "MAINSAIL_S3_ACCESS_KEY": ep.access_key,
        "MAINSAIL_S3_SECRET_KEY": ep.secret_key,
    }


def test_the_registry_takes_the_charts_url_from_the_environment(
    seaweed: SeaweedS3, churn_artifact: Path
) -> None:
    model = f"chart-env-{next(_names)}"
    registry = ModelRegistry.from_config(RegistryConfig(), _chart_env(seaweed))
    registry.ensure_bucket()
    info = registry.publish(model, churn_artifact)
    assert [v.version for v in registry.versions(model)] == [info.version] == [1]


def test_the_bucket_comes_from_the_environment_unless_the_config_names_one(
    seaweed: SeaweedS3,
) -> None:
    env = _chart_env(seaweed, bucket="team-models")
    assert ModelRegistry.from_config(RegistryConfig(), env).bucket == "team-models"
    explicit = RegistryConfig(bucket="mine-models")
    assert ModelRegistry.from_config(explicit, env).bucket == "mine-models"


def test_the_pipeline_steps_registry_uses_the_environment(
    seaweed: SeaweedS3, repo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`open_registry` (what the register, compare-champion and deploy steps use) goes to
    MAINSAIL_S3_ENDPOINT when the config names no endpoint, not to the local stack."""
    for key, value in _chart_env(seaweed).items():
        monkeypatch.setenv(key, value)
    cfg = load_config(repo_root / "configs" / "churn.yaml")
    assert cfg.registry.endpoint is None
    registry = open_registry(cfg)
    registry.ensure_bucket()
    assert registry.client.bucket_exists("mainsail-models")


MINIO = "mainsail-minio.mainsail.svc.cluster.local:9000"


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("minio:9000", ("minio:9000", False)),
        (f"http://{MINIO}", (MINIO, False)),
        ("https://s3.eu-west-1.amazonaws.com", ("s3.eu-west-1.amazonaws.com", True)),
        ("http://minio:9000/", ("minio:9000", False)),
    ],
)
def test_s3_address_forms(endpoint: str, expected: tuple[str, bool]) -> None:
    assert s3_address(endpoint) == expected


@pytest.mark.parametrize("bad", ["ftp://minio:9000", "http://minio:9000/bucket", "http://"])
def test_a_bad_endpoint_is_a_clear_error(bad: str) -> None:
    with pytest.raises(RegistryError, match="S3 endpoint"):
        s3_address(bad)
