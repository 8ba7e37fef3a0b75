"""The sidecar reads a model version's reference from S3 (SeaweedFS, as the registry stores it)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from mainsail.demos.churn import churn_rows, write_churn_reference
from mainsail.drift.process import SidecarProcess
from mainsail.registry.seaweedfs import SeaweedS3, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


TOKEN = "drift-s3-test-token"


def _post(url: str, body: Any) -> tuple[int, Any]:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_reference_is_loaded_from_the_registry_layout_on_s3(tmp_path: Path) -> None:
    local = write_churn_reference(tmp_path / "ref", rows=1000)
    with SeaweedS3(tmp_path / "s3", buckets=["mainsail-models"]) as s3:
        client = s3.client()
        for name in ("reference.parquet", "feature_schema.json"):
            client.fput_object("mainsail-models", f"churn/versions/4/{name}", str(local / name))
        ep = s3.endpoint
        sidecar = SidecarProcess(
            reference="s3://mainsail-models/{model}/versions/{version}",
            port=free_port("127.0.0.1"),
            log=tmp_path / "sidecar.log",
            settings={"min_rows": 100, "check_every_rows": 1_000_000},
            env={
                **os.environ,
                "AWS_ACCESS_KEY_ID": ep.access_key,
                "AWS_SECRET_ACCESS_KEY": ep.secret_key,
                "MAINSAIL_DRIFT_TOKEN": TOKEN,
            },
            extra_args=["--s3-endpoint", ep.url],
        )
        with sidecar:
            rows, preds = churn_rows(300, seed=4)
            code, body = _post(
                sidecar.url + "/v1/rows",
                {"model": "churn", "version": "4", "rows": rows, "predictions": preds},
            )
            assert code == 202, body
            code, result = _post(sidecar.url + "/v1/check?model=churn&version=4", {})
            assert code == 200, result
            assert result["window_rows"] == 300
            assert set(result["features"]) >= {"tenure_months", "contract", "paperless_billing"}
            # A version that is not in the bucket: 404 naming the object.
            code, body = _post(
                sidecar.url + "/v1/rows", {"model": "churn", "version": "5", "rows": rows[:1]}
            )
            assert code == 404
            assert (
                "s3://mainsail-models/churn/versions/5/feature_schema.json: NoSuchKey"
                in body["error"]
            )
