"""The entity-key path end to end: a V2 request carries customer ids, our MLServer runtime
fetches their features from a real `feast serve` (SQLite online store, freshly materialized)
and scores them exactly as if the features had been sent raw.

Also the failure modes: an unknown id is a 400 naming it; a feature server that is down gives
the configured fallback: a 503 with the reason (`feature_fallback: fail`, counted in
`mainsail_feature_lookup_errors_total`) or imputed values (`impute`, counted in
`mainsail_feature_fallback_total`). Nothing is mocked: the "down" server is a port with
nothing listening, which is what a crashed feature server looks like to a client.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from mainsail.config import ProjectConfig, parse_config
from mainsail.data.schema import FeatureSchema
from mainsail.features.freshness import LookupSpec
from mainsail.features.server import FeatureServer
from mainsail.serving.mlserver import (
    MLServerProcess,
    ServedModel,
    free_port,
    server_settings,
    write_repository,
)
from tests.support.serving import churn_frame, expected_proba, v2_inputs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ENTITIES = 40
KEY = "customer_id"


def _config(repo: Path) -> ProjectConfig:
    """One default view holding every feature column of the churn table (the model's features,
    in the same order), SQLite online store, TTL long enough for rows stamped an hour ago."""
    return parse_config(
        {
            "name": "churn",
            "data": {
                "path": "unused.parquet",
                "target": "churned",
                "entity_key": KEY,
                "event_timestamp": "event_timestamp",
                "label_timestamp": "label_timestamp",
            },
            "features": {
                "project": f"ek_{repo.name.replace('-', '_')[-20:]}",
                "repo_dir": str(repo),
                "online_store": "sqlite",
                "default_ttl": "2d",
            },
        }
    )


@pytest.fixture(scope="module")
def entity_rows() -> pd.DataFrame:
    """Unseen churn rows (missing values among them), one per entity, stamped an hour ago."""
    frame = churn_frame(600, seed=99).head(ENTITIES).copy()
    frame[KEY] = pd.array([f"E{i:04d}" for i in range(len(frame))], dtype="string")
    stamp = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1)
    frame["event_timestamp"] = pd.Timestamp(stamp).as_unit("ns")
    frame["label_timestamp"] = frame["event_timestamp"] + pd.Timedelta(days=30)
    assert frame.drop(columns=[KEY]).isna().any(axis=None), "want missing values in the rows"
    return frame.reset_index(drop=True)


@pytest.fixture(scope="module")
def feature_server(
    tmp_path_factory: pytest.TempPathFactory, entity_rows: pd.DataFrame
) -> Iterator[tuple[FeatureServer, LookupSpec]]:
    from mainsail.features import store
    from mainsail.features.online import spec_for

    repo = tmp_path_factory.mktemp("entity-repo")
    cfg = _config(repo)
    store.apply(cfg, repo, entity_rows)
    now = datetime.now(UTC)
    store.materialize(cfg, repo, start=now - timedelta(days=2), end=now)
    spec = spec_for(cfg, repo)
    server = FeatureServer(repo, port=free_port())
    server.start(
        timeout_s=120,
        warmup={"feature_service": spec.service, "entities": {KEY: ["E0000"]}},
    )
    try:
        yield server, spec
    finally:
        server.stop()


@pytest.fixture(scope="module")
def served(
    feature_server: tuple[FeatureServer, LookupSpec],
    sealed_artifact: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[MLServerProcess]:
    """One MLServer with the same sealed churn model four times:

    churn-fs         entity keys looked up at the live feature server
    churn-fs-fail    feature server down, fallback "fail" (503)
    churn-fs-impute  feature server down, fallback "impute" (every value missing -> imputers)
    churn-fs-fill    feature server down, fallback "impute" with a configured value
    """
    server, spec = feature_server
    spec_json = json.loads(spec.to_json())
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    repo = tmp_path_factory.mktemp("mlserver-entity")
    settings = server_settings(
        repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port()
    )
    common = {"lookup_spec": spec_json, "feature_timeout_s": 5.0}
    models = [
        ServedModel(
            "churn-fs",
            uri=str(sealed_artifact),
            extra={**common, "feature_server_url": server.url},
        ),
        ServedModel(
            "churn-fs-fail",
            uri=str(sealed_artifact),
            extra={**common, "feature_server_url": dead, "feature_fallback": "fail"},
        ),
        ServedModel(
            "churn-fs-impute",
            uri=str(sealed_artifact),
            extra={**common, "feature_server_url": dead, "feature_fallback": "impute"},
        ),
        ServedModel(
            "churn-fs-fill",
            uri=str(sealed_artifact),
            extra={
                **common,
                "feature_server_url": dead,
                "feature_fallback": "impute",
                "feature_imputation": {"satisfaction_score": 2.0, "contract": "two-year"},
            },
        ),
    ]
    write_repository(repo, models, settings)
    with MLServerProcess(repo).start([m.name for m in models]) as proc:
        yield proc


@pytest.fixture(scope="module")
def schema(sealed_artifact: Path) -> FeatureSchema:
    return FeatureSchema.load(sealed_artifact / "feature_schema.json")


def _infer(server: MLServerProcess, model: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/models/{model}/infer", json=body, timeout=30)


def _keys(ids: list[str]) -> dict[str, Any]:
    return {
        "inputs": [{"name": KEY, "shape": [len(ids)], "datatype": "BYTES", "data": ids}],
        "outputs": [{"name": "label"}, {"name": "probabilities"}],
    }


def _positive(response: httpx.Response) -> np.ndarray:
    out = next(o for o in response.json()["outputs"] if o["name"] == "probabilities")
    return np.asarray(out["data"]).reshape(out["shape"])[:, 1]


def _metric(server: MLServerProcess, name: str, labels: dict[str, str]) -> float:
    text = httpx.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).text
    want = [f'{k}="{v}"' for k, v in labels.items()]
    for line in text.splitlines():
        if line.startswith(name + "{") and all(w in line for w in want):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_entity_keys_give_the_prediction_of_the_same_features_sent_raw(
    served: MLServerProcess,
    entity_rows: pd.DataFrame,
    schema: FeatureSchema,
    sealed_artifact: Path,
) -> None:
    ids = entity_rows[KEY].tolist()
    by_key = _infer(served, "churn-fs", _keys(ids))
    assert by_key.status_code == 200, by_key.text
    raw = _infer(
        served,
        "churn-fs",
        {"inputs": v2_inputs(entity_rows, schema), "outputs": [{"name": "probabilities"}]},
    )
    assert raw.status_code == 200, raw.text
    # Bit-for-bit: the fetched frame must be the one the raw request decodes to.
    np.testing.assert_array_equal(_positive(by_key), _positive(raw))
    np.testing.assert_allclose(
        _positive(by_key), expected_proba(sealed_artifact, entity_rows), rtol=1e-12
    )
    # Order follows the request, not the store: reversed ids, reversed answers.
    back = _infer(served, "churn-fs", _keys(ids[::-1]))
    assert back.status_code == 200, back.text
    np.testing.assert_array_equal(_positive(back), _positive(by_key)[::-1])


def test_an_unknown_entity_is_a_400_that_names_it(served: MLServerProcess) -> None:
    response = _infer(served, "churn-fs", _keys(["E0001", "NOBODY-42", "E0002"]))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert "unknown entity id" in error and "NOBODY-42" in error and "E0001" not in error
    # An id of the wrong type (the key is a string) is the client's error too.
    wrong = {"inputs": [{"name": KEY, "shape": [1], "datatype": "INT64", "data": [7]}]}
    response = _infer(served, "churn-fs", wrong)
    assert response.status_code == 400, response.text
    assert KEY in response.json()["error"]


def test_feature_server_down_with_fallback_fail_is_a_503_with_the_reason(
    served: MLServerProcess,
) -> None:
    before = _metric(served, "mainsail_feature_lookup_errors_total", {"model": "churn-fs-fail"})
    response = _infer(served, "churn-fs-fail", _keys(["E0001", "E0002"]))
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert "feature lookup" in error and "unreachable" in error, error
    after = _metric(served, "mainsail_feature_lookup_errors_total", {"model": "churn-fs-fail"})
    assert after == before + 1
    # The server is still up and serves raw features on the same model.
    assert httpx.get(f"{served.url}/v2/models/churn-fs-fail/ready", timeout=5).status_code == 200


def test_feature_server_down_with_fallback_impute_serves_imputed_values_and_counts_them(
    served: MLServerProcess, schema: FeatureSchema, sealed_artifact: Path
) -> None:
    labels = {"reason": "feature_server_unreachable"}
    before = _metric(served, "mainsail_feature_fallback_total", labels)
    ids = ["E0001", "E0002", "E0003"]
    response = _infer(served, "churn-fs-impute", _keys(ids))
    assert response.status_code == 200, response.text
    # Every value missing: the model's own imputers decide, exactly as for an all-null row.
    empty = pd.DataFrame({name: [None] * len(ids) for name in schema.names})
    for spec in schema.features:
        if spec.kind == "numeric":
            empty[spec.name] = np.nan
        elif spec.kind == "categorical":
            empty[spec.name] = pd.array([pd.NA] * len(ids), dtype="object")
        else:
            empty[spec.name] = pd.array([pd.NA] * len(ids), dtype="boolean")
    np.testing.assert_allclose(
        _positive(response), expected_proba(sealed_artifact, empty), rtol=1e-12
    )
    # Configured imputation values are used where given.
    filled = _infer(served, "churn-fs-fill", _keys(ids))
    assert filled.status_code == 200, filled.text
    empty["satisfaction_score"] = 2.0
    empty["contract"] = pd.array(["two-year"] * len(ids), dtype="object")
    np.testing.assert_allclose(
        _positive(filled), expected_proba(sealed_artifact, empty), rtol=1e-12
    )
    after = _metric(served, "mainsail_feature_fallback_total", labels)
    assert after == before + 2 * len(ids)
