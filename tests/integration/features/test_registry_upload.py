"""`mainsail features apply --upload-registry KEY` writes the Feast registry where the chart's
feature server reads it (`s3://<bucket>/<feast.registryKey>`), creating the bucket first.

Real S3 (SeaweedFS, an empty server: no bucket yet) and real Feast: a FeatureStore configured
like the chart's ConfigMap (registry `s3://...`, FEAST_S3_ENDPOINT_URL) reads the uploaded
registry and finds the project's FeatureService.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from mainsail.cli.features import app
from mainsail.config import load_config
from mainsail.features.layout import feast_project_name
from mainsail.registry.seaweedfs import SeaweedS3
from tests.integration.features.test_features_cli import _write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUCKET = "mainsail-feast-test"
KEY = "feast/registry.db"


@pytest.fixture
def s3_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SeaweedS3]:
    with SeaweedS3(tmp_path / "s3") as server:
        endpoint = server.endpoint
        for name, value in {
            "MAINSAIL_S3_ENDPOINT": endpoint.url,
            "MAINSAIL_S3_BUCKET": BUCKET,
            "MAINSAIL_S3_ACCESS_KEY": server.access_key,
            "MAINSAIL_S3_SECRET_KEY": server.secret_key,
            "AWS_ACCESS_KEY_ID": server.access_key,
            "AWS_SECRET_ACCESS_KEY": server.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "FEAST_S3_ENDPOINT_URL": endpoint.url,
        }.items():
            monkeypatch.setenv(name, value)
        yield server


def test_apply_uploads_the_registry_the_feature_server_reads(
    tmp_path: Path, frame: pd.DataFrame, s3_env: SeaweedS3
) -> None:
    client = s3_env.endpoint.client()
    assert not client.bucket_exists(BUCKET)
    config = _write_config(tmp_path, frame)
    result = CliRunner().invoke(app, ["apply", "--config", str(config), "--upload-registry", KEY])
    assert result.exit_code == 0, result.output
    assert f"s3://{BUCKET}/{KEY}" in result.output
    assert client.stat_object(BUCKET, KEY).size > 0

    # the chart's feature_store.yaml, pointed at this S3
    from feast import FeatureStore

    project = feast_project_name(load_config(config))
    served = tmp_path / "served"
    served.mkdir()
    (served / "feature_store.yaml").write_text(
        f"project: {project}\nprovider: local\nregistry:\n  registry_type: file\n"
        f"  path: s3://{BUCKET}/{KEY}\n  cache_ttl_seconds: 60\n"
        "online_store:\n  type: sqlite\n  path: online.db\noffline_store:\n  type: file\n"
        "entity_key_serialization_version: 3\n"
    )
    store = FeatureStore(repo_path=str(served))
    services = [s.name for s in store.list_feature_services()]
    assert services and all(s.startswith(project) for s in services), services
    assert os.environ["MAINSAIL_S3_BUCKET"] == BUCKET


def test_upload_without_s3_credentials_fails_with_a_message(
    tmp_path: Path, frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("MAINSAIL_S3_ACCESS_KEY", "MAINSAIL_S3_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MAINSAIL_S3_ENDPOINT", "http://127.0.0.1:9")
    config = _write_config(tmp_path, frame)
    result = CliRunner().invoke(app, ["apply", "--config", str(config), "--upload-registry", KEY])
    assert result.exit_code == 1
    assert "S3 credentials missing" in result.output and "Traceback" not in result.output
