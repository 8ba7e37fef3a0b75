"""Our MLServer runtime, served by a real `mlserver` process: predictions over REST and gRPC
(tritonclient as an independent V2 client), bad inputs -> 400 naming the field, registry
loading and integrity, and the drift feed hook."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from mainsail.data.schema import FeatureSchema
from mainsail.serving.mlserver import MLServerProcess, ServedModel
from tests.support.kind import wait_until
from tests.support.serving import churn_frame, expected_proba, v2_inputs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def schema(sealed_artifact: Path) -> FeatureSchema:
    return FeatureSchema.load(sealed_artifact / "feature_schema.json")


@pytest.fixture(scope="module")
def rows() -> Any:
    # Rows the model never saw (another seed), with missing values among them.
    return churn_frame(400, seed=99).head(25)


def _infer(server: MLServerProcess, model: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/models/{model}/infer", json=body, timeout=10)


def _output(response: httpx.Response, name: str) -> list[Any]:
    return next(o["data"] for o in response.json()["outputs"] if o["name"] == name)


@pytest.mark.parametrize("model", ["churn", "churn-local"])
def test_rest_predictions_match_the_model(
    mlserver: MLServerProcess, sealed_artifact: Path, schema: FeatureSchema, rows: Any, model: str
) -> None:
    outputs = [{"name": n} for n in ("label", "probability", "probabilities")]
    response = _infer(mlserver, model, {"inputs": v2_inputs(rows, schema), "outputs": outputs})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["parameters"]["classes"] == ["0", "1"]
    proba = np.asarray(_output(response, "probabilities")).reshape(len(rows), 2)
    np.testing.assert_allclose(proba[:, 1], expected_proba(sealed_artifact, rows), rtol=1e-9)
    labels = _output(response, "label")
    assert labels == [str(int(p > 0.5)) for p in proba[:, 1]]
    np.testing.assert_allclose(_output(response, "probability"), proba.max(axis=1))
    assert body["model_version"] == "1"


def test_tritonclient_http_and_grpc_give_the_same_answer(
    mlserver: MLServerProcess, sealed_artifact: Path, schema: FeatureSchema, rows: Any
) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    expected = expected_proba(sealed_artifact, rows)

    def tensors(module: Any, binary: bool) -> list[Any]:
        out = []
        for spec in schema.features:
            col = rows[spec.name]
            if spec.kind == "numeric":
                arr = col.astype("float64").to_numpy()
                dtype = "FP64"
            elif spec.kind == "categorical":
                arr = np.array(
                    [
                        b"" if v is None else str(v).encode()
                        for v in col.astype(object).where(col.notna(), None)
                    ],
                    dtype=object,
                )
                dtype = "BYTES"
            else:
                arr = col.fillna(False).astype(bool).to_numpy()
                dtype = "BOOL"
            t = module.InferInput(spec.name, [len(arr)], dtype)
            if binary:
                t.set_data_from_numpy(arr)
            else:
                t.set_data_from_numpy(arr, binary_data=False)
            out.append(t)
        return out

    # Categorical NaNs become "" above, which is not a category: keep rows without them.
    keep = rows["payment_method"].notna().to_numpy()
    rows = rows[keep]
    expected = expected[keep]

    http = httpclient.InferenceServerClient(url=mlserver.url.removeprefix("http://"))
    outputs = [httpclient.InferRequestedOutput("probabilities", binary_data=False)]
    # MLServer's REST API has no binary-tensor extension: send JSON tensors.
    result = http.infer("churn", tensors(httpclient, binary=False), outputs=outputs)
    got_http = result.as_numpy("probabilities").reshape(-1, 2)[:, 1]

    grpc = grpcclient.InferenceServerClient(url=mlserver.grpc_address)
    assert grpc.is_model_ready("churn")
    wanted = [grpcclient.InferRequestedOutput(n) for n in ("label", "probabilities")]
    result = grpc.infer("churn", tensors(grpcclient, binary=True), outputs=wanted)
    got_grpc = result.as_numpy("probabilities").reshape(-1, 2)[:, 1]
    labels = result.as_numpy("label")

    np.testing.assert_allclose(got_http, expected, rtol=1e-9)
    np.testing.assert_allclose(got_grpc, expected, rtol=1e-9)
    assert [x.decode() if isinstance(x, bytes) else x for x in labels] == [
        str(int(p > 0.5)) for p in expected
    ]


def test_grpc_bad_input_is_invalid_argument_naming_the_field(
    mlserver: MLServerProcess, schema: FeatureSchema, rows: Any
) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    grpc = grpcclient.InferenceServerClient(url=mlserver.grpc_address)
    t = grpcclient.InferInput("tenure_monthz", [1], "FP64")
    t.set_data_from_numpy(np.array([3.0]))
    with pytest.raises(InferenceServerException) as info:
        grpc.infer("churn", [t])
    assert "INVALID_ARGUMENT" in str(info.value.status())
    assert "'tenure_monthz'" in info.value.message()
    assert "did you mean 'tenure_months'" in info.value.message()


def _mutate(inputs: list[dict[str, Any]], target: str, **changes: Any) -> list[dict[str, Any]]:
    out = []
    for item in inputs:
        item = dict(item)
        if item["name"] == target:
            item.update(changes)
        out.append(item)
    return out


BAD_CASES = {
    "wrong name": (
        lambda x: _mutate(x, "region", name="regoin"),
        "'regoin'",
    ),
    "missing feature": (lambda x: [i for i in x if i["name"] != "plan"], "'plan'"),
    "wrong shape": (
        lambda x: _mutate(x, "support_calls", shape=[1, 2], data=[1.0, 2.0]),
        "'support_calls' has shape [1, 2]",
    ),
    "shape/data mismatch": (
        lambda x: _mutate(x, "tenure_months", shape=[3]),
        "'tenure_months': shape [3] needs 3 values, got 1",
    ),
    "wrong dtype": (
        lambda x: _mutate(x, "tenure_months", datatype="BYTES", data=["12"]),
        "'tenure_months' has datatype BYTES",
    ),
    "string in numeric": (
        lambda x: _mutate(x, "monthly_charges", data=["lots"]),
        "'monthly_charges'",
    ),
    "NaN where not allowed": (
        lambda x: _mutate(x, "tenure_months", data=[None]),
        "'tenure_months': row 0 is missing",
    ),
    "out-of-vocabulary category": (
        lambda x: _mutate(x, "contract", data=["weekly"]),
        "'contract': row 0 value 'weekly' is not a known category",
    ),
    "category as number": (
        lambda x: _mutate(x, "plan", data=[3]),
        "'plan'",
    ),
    "bool as string": (
        lambda x: _mutate(x, "paperless_billing", data=["yes"]),
        "'paperless_billing'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_is_400_naming_the_field(
    mlserver: MLServerProcess, schema: FeatureSchema, rows: Any, case: str
) -> None:
    mutate, expected = BAD_CASES[case]
    good = v2_inputs(rows.head(1).fillna({"payment_method": "card"}), schema)
    response = _infer(mlserver, "churn", {"inputs": mutate(good)})
    assert response.status_code == 400, response.text
    assert expected in response.json()["error"]
    # Still serving after the bad request.
    assert _infer(mlserver, "churn", {"inputs": good}).status_code == 200


def test_nan_and_infinity_in_raw_json_are_400(
    mlserver: MLServerProcess, schema: FeatureSchema, rows: Any
) -> None:
    good = v2_inputs(rows.head(1).fillna({"payment_method": "card"}), schema)
    text = json.dumps({"inputs": _mutate(good, "monthly_charges", data=[float("inf")])})
    response = httpx.post(
        f"{mlserver.url}/v2/models/churn/infer",
        content=text,
        headers={"content-type": "application/json"},
    )
    assert 400 <= response.status_code < 500, response.text


def test_entity_keys_without_feature_server_is_a_clear_400(mlserver: MLServerProcess) -> None:
    body = {"inputs": [{"name": "customer_id", "shape": [1], "datatype": "BYTES", "data": ["C1"]}]}
    response = _infer(mlserver, "churn", body)
    assert response.status_code == 400
    assert "feature server is not configured" in response.json()["error"]


def test_drift_feed_receives_served_rows(
    mlserver: MLServerProcess, schema: FeatureSchema, rows: Any, drift_sink: Any
) -> None:
    before = drift_sink.rows()
    for _ in range(3):
        assert (
            _infer(mlserver, "churn-drift", {"inputs": v2_inputs(rows, schema)}).status_code == 200
        )
    deadline = time.monotonic() + 10
    while drift_sink.rows() < before + 3 * len(rows) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert drift_sink.rows() == before + 3 * len(rows)
    body = drift_sink.bodies[-1]
    assert body["model"] == "churn" and body["version"] == "1"
    # Names once per POST, each row's values in that order: exactly what was served, with a
    # missing value (NaN or pandas.NA in the frame) as null.
    assert body["columns"] == schema.names
    served = [dict(zip(body["columns"], row, strict=True)) for row in body["rows"][-len(rows) :]]
    sent = rows[schema.names].astype(object).where(rows[schema.names].notna(), None)
    assert served == [
        {k: pytest.approx(v) if isinstance(v, float) else v for k, v in record.items()}
        for record in sent.to_dict("records")
    ]
    assert any(v is None for record in served for v in record.values())  # missing ones too


def _fed(sink: Any, model: str, rows: int, since: int) -> list[dict[str, Any]]:
    """The sink's POST bodies for `model` from its `since`-th on, once they hold `rows` rows
    (10 s at most)."""

    def probe() -> list[dict[str, Any]] | None:
        bodies = [b for b in list(sink.bodies)[since:] if b["model"] == model]
        return bodies if sum(len(b["rows"]) for b in bodies) >= rows else None

    return wait_until(f"{rows} rows of {model} at the drift sink", 10, probe, every=0.05)


def test_drift_feed_gets_labels_whatever_outputs_the_client_asked_for(
    mlserver: MLServerProcess, schema: FeatureSchema, rows: Any, drift_sink: Any
) -> None:
    # Only the probabilities asked for: the feed still sends one label per row (the first
    # output asked for, two values a row here, made a POST the sidecar refuses whole) and the
    # positive class's probability as the row's score.
    served = rows.head(4)
    body = {"inputs": v2_inputs(served, schema), "outputs": [{"name": "probabilities"}]}
    before = len(drift_sink.bodies)
    response = _infer(mlserver, "churn-drift", body)
    assert response.status_code == 200, response.text
    proba = np.asarray(_output(response, "probabilities")).reshape(len(served), 2)
    classes = response.json()["parameters"]["classes"]
    labels = _output(_infer(mlserver, "churn-drift", {"inputs": body["inputs"]}), "label")
    fed = _fed(drift_sink, "churn", 8, before)
    assert [p for b in fed for p in b["predictions"]] == labels + labels
    assert set(labels) <= set(classes)
    scores = [x for b in fed for x in b["scores"]]
    assert scores[:4] == pytest.approx(proba[:, 1].tolist())


def test_drift_feed_gets_the_served_matrix_with_nulls_and_labels(
    mlserver: MLServerProcess, drift_sink: Any
) -> None:
    # The matrix layout: the feed keeps the request's own array and encodes it with its POST;
    # a missing value goes out as null, and the predictions are the labels served.
    before = len(drift_sink.bodies)
    first = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, None]]
    second = [[5.9, 3.0, 4.2, 1.5]]
    labels = []
    for matrix, outputs in ((first, None), (second, [{"name": "probabilities"}])):
        body: dict[str, Any] = {
            "inputs": [
                {"name": "features", "shape": [len(matrix), 4], "datatype": "FP64", "data": matrix}
            ]
        }
        if outputs:
            body["outputs"] = outputs
        response = _infer(mlserver, "iris-drift", body)
        assert response.status_code == 200, response.text
        if outputs:
            proba = np.asarray(_output(response, "probabilities")).reshape(len(matrix), 3)
            classes = response.json()["parameters"]["classes"]
            labels += [classes[i] for i in proba.argmax(axis=1)]
        else:
            labels += _output(response, "label")
    fed = _fed(drift_sink, "iris", 3, before)
    assert [r for b in fed for r in b["rows"]] == first + second
    assert [p for b in fed for p in b["predictions"]] == labels
    assert all("scores" not in b for b in fed)  # three classes: no single score per row
    assert fed[0]["columns"] == ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def test_hung_drift_sidecar_never_slows_or_fails_requests_and_drops_are_counted(
    mlserver: MLServerProcess, schema: FeatureSchema, rows: Any
) -> None:
    body = {"inputs": v2_inputs(rows.head(1), schema)}
    with httpx.Client(base_url=mlserver.url, timeout=10) as client:

        def timed(model: str) -> tuple[list[int], float]:
            client.post(f"/v2/models/{model}/infer", json=body)
            start = time.perf_counter()
            codes = [
                client.post(f"/v2/models/{model}/infer", json=body).status_code for _ in range(30)
            ]
            return codes, time.perf_counter() - start

        codes, dead = timed("churn-dead")
        _, plain = timed("churn-local")
    assert codes == [200] * 30
    print(f"30 requests: hung feed {dead:.3f}s, no feed {plain:.3f}s")
    # Each POST hangs for the 0.3 s timeout: a request that waited would add >= 9 s in all.
    assert dead < plain + 3.0
    metrics = httpx.get(f"http://127.0.0.1:{mlserver.metrics_port}/metrics").text
    counts = {
        outcome: _sample(metrics, "churn-dead", outcome)
        for outcome in ("submitted", "sent", "dropped", "failed")
    }
    assert counts["sent"] == 0
    assert counts["dropped"] > 0  # the one-batch queue overflowed while the POST hung
    assert counts["submitted"] + counts["dropped"] == 31
    assert _sample(metrics, "churn-drift", "sent") > 0


def _sample(metrics: str, model: str, outcome: str) -> float:
    for line in metrics.splitlines():
        labels = (f'model="{model}"', f'outcome="{outcome}"')
        if line.startswith("mainsail_drift_feed_rows_total{") and all(x in line for x in labels):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no mainsail_drift_feed_rows_total for {model}/{outcome}:\n{metrics}")


def test_tampered_artifact_is_refused_at_load_and_the_server_stays_up(
    mlserver: MLServerProcess, sealed_artifact: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "tampered"
    shutil.copytree(sealed_artifact, folder)
    raw = bytearray((folder / "model.joblib").read_bytes())
    raw[-10] ^= 0x01
    (folder / "model.joblib").write_bytes(bytes(raw))
    model_dir = mlserver.folder / "churn-tampered"
    model_dir.mkdir()
    (model_dir / "model-settings.json").write_text(
        json.dumps(ServedModel("churn-tampered", uri=str(folder)).settings())
    )
    response = httpx.post(f"{mlserver.url}/v2/repository/models/churn-tampered/load", timeout=30)
    assert 400 <= response.status_code < 500, response.text
    assert "model.joblib has sha256" in response.text and "tampered" in response.text
    ready = httpx.get(f"{mlserver.url}/v2/models/churn-tampered/ready")
    assert ready.status_code != 200
    assert httpx.get(f"{mlserver.url}/v2/health/ready").status_code == 200
    assert mlserver.alive()


def test_default_and_requested_outputs(
    mlserver: MLServerProcess, schema: FeatureSchema, rows: Any
) -> None:
    inputs = v2_inputs(rows.head(2), schema)
    default = _infer(mlserver, "churn", {"inputs": inputs}).json()
    assert [o["name"] for o in default["outputs"]] == ["label", "probability"]
    only = _infer(mlserver, "churn", {"inputs": inputs, "outputs": [{"name": "probabilities"}]})
    assert [o["name"] for o in only.json()["outputs"]] == ["probabilities"]
    assert only.json()["outputs"][0]["shape"] == [2, 2]
    bad = _infer(mlserver, "churn", {"inputs": inputs, "outputs": [{"name": "score"}]})
    assert bad.status_code == 400
    assert "requested output 'score' does not exist" in bad.json()["error"]


def test_matrix_layout_is_refused_for_a_model_with_categorical_features(
    mlserver: MLServerProcess,
) -> None:
    body = {
        "inputs": [{"name": "features", "shape": [1, 14], "datatype": "FP64", "data": [0.0] * 14}]
    }
    response = _infer(mlserver, "churn", body)
    assert response.status_code == 400
    assert "all-numeric models" in response.json()["error"]
