"""The drift sidecar as a real process in the drift env (alibi-detect), driven over HTTP.

Checks are requested explicitly (`POST /v1/check`; automatic checks are pushed out of reach by
the settings), so every assertion sees a known window.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from mainsail.demos.churn import churn_labelled_rows, churn_rows, write_churn_reference
from mainsail.drift.process import SidecarProcess
from mainsail.registry.seaweedfs import free_port

pytestmark = pytest.mark.slow

TOKEN = "drift-test-token"


def _call(
    url: str,
    body: Any = None,
    method: str = "POST",
    raw: bytes | None = None,
    token: str | None = TOKEN,
) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(
        url,
        data=data if method == "POST" else None,
        method=method,
        headers=headers,
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            payload = resp.read()
            code = resp.status
    except urllib.error.HTTPError as err:
        payload, code = err.read(), err.code
    try:
        return code, json.loads(payload)
    except ValueError:
        return code, payload


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    root = tmp_path_factory.mktemp("drift")
    for version in ("1", "2", "3", "4", "5"):
        write_churn_reference(root / "refs" / "churn" / version, rows=5000, seed=42)
    proc = SidecarProcess(
        reference=str(root / "refs" / "{model}" / "{version}"),
        port=free_port("127.0.0.1"),
        log=root / "sidecar.log",
        settings={
            "window_rows": 1000,
            "min_rows": 200,
            "check_every_rows": 1_000_000,
            "check_interval_s": 3600,
            "queue_batches": 3,
            "mmd_permutations": 50,
            "mmd_max_rows": 300,
            "window_export": True,
        },
        env={**os.environ, "MAINSAIL_DRIFT_TOKEN": TOKEN},
    )
    with proc:
        yield proc


def _feed(sc: SidecarProcess, version: str, rows: list[dict[str, Any]], preds: list[float]) -> None:
    for i in range(0, len(rows), 250):
        batch: dict[str, Any] = {"rows": rows[i : i + 250]}
        if i % 500:  # every other batch as value arrays under `columns` (the runtime's form)
            names = list(rows[0])
            batch = {"columns": names, "rows": [[r[n] for n in names] for r in batch["rows"]]}
        code, body = _call(
            sc.url + "/v1/rows",
            {"model": "churn", "version": version, **batch, "predictions": preds[i : i + 250]},
        )
        assert code == 202, body


def _check(sc: SidecarProcess, version: str, mmd: bool = False) -> dict[str, Any]:
    code, body = _call(f"{sc.url}/v1/check?model=churn&version={version}{'&mmd=1' if mmd else ''}")
    assert code == 200, body
    return dict(body)


def test_undrifted_traffic_is_not_flagged(sidecar: SidecarProcess) -> None:
    rows, preds = churn_rows(1000, drift=0.0, seed=101)
    _feed(sidecar, "1", rows, preds)
    result = _check(sidecar, "1")
    assert result["window_rows"] == 1000
    assert result["row_is_drift"] is False, result["drifted_features"]
    assert result["prediction"]["is_drift"] is False
    # Benjamini-Hochberg over the 14 features, nothing discovered: the threshold is 0.05 / 14.
    assert result["correction"] == "fdr"
    assert result["threshold"] == pytest.approx(0.05 / 14)
    for feature in result["features"].values():
        assert feature["corrected_p_value"] >= feature["p_value"]
        assert feature["min_distance"] == 0.05
    assert result["features"]["support_calls"]["test"] == "ks"
    assert result["features"]["contract"]["test"] == "chi2"


def test_drifted_traffic_is_flagged_per_feature_row_and_prediction(sidecar: SidecarProcess) -> None:
    rows, preds = churn_rows(1000, drift=0.6, seed=102)
    _feed(sidecar, "2", rows, preds)
    first = _check(sidecar, "2")
    assert first["row_is_drift"] is True
    # The generator's drift knob moves usage, support calls and the contract mix.
    for name in ("support_calls", "data_usage_gb", "contract"):
        assert first["features"][name]["is_drift"] is True, name
        assert first["features"][name]["p_value"] < first["threshold"]
    # Region is not touched by the drift knob.
    assert first["features"]["region"]["is_drift"] is False
    assert first["prediction"]["is_drift"] is True
    _check(sidecar, "2")
    code, status = _call(sidecar.url + "/v1/status", method="GET")
    assert code == 200
    assert status["versions"]["churn/2"]["consecutive_drifted_checks"] == 2
    assert status["versions"]["churn/1"]["consecutive_drifted_checks"] == 0


def test_metrics_pass_promtool_and_carry_the_check_results(sidecar: SidecarProcess) -> None:
    result = _check(sidecar, "2")
    code, text = _call(sidecar.url + "/metrics", method="GET")
    assert code == 200
    text = text.decode() if isinstance(text, bytes) else str(text)
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install the Debian package prometheus"
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(
        ln
        for ln in text.splitlines()
        if ln.startswith("mainsail_drift_feature_p_value{")
        and 'feature="support_calls"' in ln
        and 'version="2"' in ln
    )
    assert float(line.rsplit(" ", 1)[1]) == pytest.approx(
        result["features"]["support_calls"]["p_value"]
    )
    assert 'mainsail_drift_row_is_drift{model="churn",version="2"} 1.0' in text
    assert 'mainsail_drift_window_rows{model="churn",version="2"} 1000.0' in text
    assert 'mainsail_drift_row_is_drift{model="churn",version="1"} 0.0' in text
    assert "mainsail_drift_last_check_timestamp_seconds{" in text
    assert "mainsail_drift_worker_heartbeat_timestamp_seconds " in text


def test_performance_is_estimated_from_scores_and_exported(sidecar: SidecarProcess) -> None:
    """CBPE on the real sidecar path: the version's calibration sample and card are read, the
    served scores estimate the accuracy of the window, the metrics carry it all."""
    rows, scores, labels = churn_labelled_rows(1000, drift=0.0, seed=104)
    predicted = [int(s >= 0.5) for s in scores]
    for i in range(0, 1000, 250):
        code, body = _call(
            sidecar.url + "/v1/rows",
            {
                "model": "churn",
                "version": "5",
                "rows": rows[i : i + 250],
                "predictions": predicted[i : i + 250],
                "scores": scores[i : i + 250],
            },
        )
        assert code == 202, body
    perf = _check(sidecar, "5")["performance"]
    truth = sum(int(p == y) for p, y in zip(predicted, labels, strict=True)) / 1000
    assert perf["kind"] == "cbpe" and perf["rows"] == 1000
    assert abs(perf["estimate"]["accuracy"] - truth) <= 0.03, (perf["estimate"], truth)
    assert set(perf["estimate"]) == {"accuracy", "f1", "roc_auc"}
    assert perf["validated"]["accuracy"] > 0.8  # from the version's model card
    assert perf["calibration"]["calibrated_ece"] < 0.05
    text = urllib.request.urlopen(sidecar.url + "/metrics", timeout=10).read().decode()
    estimate = next(
        ln
        for ln in text.splitlines()
        if ln.startswith('mainsail_performance_estimate{metric="accuracy"') and 'version="5"' in ln
    )
    assert float(estimate.rsplit(" ", 1)[1]) == pytest.approx(perf["estimate"]["accuracy"])
    assert 'mainsail_performance_reliable{model="churn",version="5"} 1.0' in text
    assert 'mainsail_performance_validated{metric="roc_auc",model="churn",version="5"}' in text
    # Scores outside [0, 1] are refused with the reason.
    code, body = _call(
        sidecar.url + "/v1/rows",
        {"model": "churn", "version": "5", "rows": rows[:1], "scores": [1.5]},
    )
    assert code == 400 and "scores[0]" in body["error"]


def test_window_is_served_as_parquet_with_predictions(sidecar: SidecarProcess) -> None:
    rows, _ = churn_rows(1000, drift=0.6, seed=102)
    req = urllib.request.Request(
        sidecar.url + "/v1/window?model=churn&version=2",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    frame = pd.read_parquet(io.BytesIO(urllib.request.urlopen(req, timeout=30).read()))
    assert len(frame) == 1000
    assert "prediction" in frame.columns
    assert frame["support_calls"].tolist() == [r["support_calls"] for r in rows]
    code, body = _call(sidecar.url + "/v1/window?model=churn&version=9", method="GET")
    assert code == 404 and "version '9'" in body["error"]


def test_raw_rows_and_checks_need_the_token(sidecar: SidecarProcess) -> None:
    window = sidecar.url + "/v1/window?model=churn&version=2"
    check = sidecar.url + "/v1/check?model=churn&version=2"
    for token in (None, "wrong"):
        code, body = _call(window, method="GET", token=token)
        assert code == 401 and "token" in body["error"]
        assert _call(check, token=token)[0] == 401
    # The feed from the runtime in the same pod (loopback) needs no token.
    rows, preds = churn_rows(10, seed=9)
    got = _call(
        sidecar.url + "/v1/rows",
        {"model": "churn", "version": "4", "rows": rows, "predictions": preds},
        token=None,
    )
    assert got[0] == 202


def test_mmd_runs_on_demand(sidecar: SidecarProcess) -> None:
    result = _check(sidecar, "2", mmd=True)
    assert result["mmd"]["p_value"] < 0.05
    assert result["mmd"]["is_drift"] == 1.0


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({"model": "churn", "rows": [{}]}, 400, "version: expected"),
        (
            {"model": "churn", "version": "1", "rows": [{"tenure_months": "x"}]},
            400,
            "rows[0].tenure_months",
        ),
        (
            {"model": "churn", "version": "77", "rows": [{"a": 1}]},
            404,
            "77/feature_schema.json: no such file",
        ),
        ({"model": "../etc", "version": "1", "rows": [{"a": 1}]}, 404, "not a valid name"),
        (
            {"model": "churn", "version": "1", "columns": "plan", "rows": [["gold"]]},
            400,
            "columns: expected a non-empty list of feature names",
        ),
        (
            {"model": "churn", "version": "1", "columns": ["plan", "plan"], "rows": [[1, 2]]},
            400,
            "columns: ['plan'] named more than once",
        ),
        (
            {"model": "churn", "version": "1", "columns": ["plan", "region"], "rows": [["a"]]},
            400,
            "rows[0]: expected an array of 2 values (one per column), got 1 values",
        ),
        (
            {"model": "churn", "version": "1", "columns": ["plan"], "rows": [{"plan": "a"}]},
            400,
            "rows[0]: expected an array of 1 values (one per column), got dict",
        ),
    ],
)
def test_bad_batches_get_4xx_with_the_reason(
    sidecar: SidecarProcess, body: dict[str, Any], code: int, message: str
) -> None:
    got, answer = _call(sidecar.url + "/v1/rows", body)
    assert got == code
    assert message in answer["error"]


def test_malformed_requests_are_4xx_never_500(sidecar: SidecarProcess) -> None:
    assert _call(sidecar.url + "/v1/rows", raw=b"{not json")[0] == 400
    assert _call(sidecar.url + "/nope", method="GET")[0] == 404
    assert _call(sidecar.url + "/v1/check?model=churn")[0] == 400
    code, body = _call(sidecar.url + "/v1/check?model=churn&version=4")
    assert code == 409 and "drift.min_rows" in body["error"]


def test_a_full_queue_answers_503_and_counts_the_drop(sidecar: SidecarProcess) -> None:
    rows, preds = churn_rows(200, seed=5)
    _feed(sidecar, "3", rows, preds)
    # Keep the worker busy with an MMD check while batches pile up behind it.
    busy = threading.Thread(target=_check, args=(sidecar, "3", True))
    busy.start()
    codes = []
    for _ in range(12):
        codes.append(
            _call(sidecar.url + "/v1/rows", {"model": "churn", "version": "3", "rows": rows[:5]})[0]
        )
    busy.join(120)
    assert 503 in codes and 202 in codes
    text = urllib.request.urlopen(sidecar.url + "/metrics", timeout=10).read().decode()
    dropped = next(
        ln for ln in text.splitlines() if ln.startswith("mainsail_drift_rows_dropped_total")
    )
    assert float(dropped.split()[-1]) == 5 * codes.count(503)
