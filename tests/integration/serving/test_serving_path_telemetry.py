"""The serving path observed and kept private, on real processes.

One small lifecycle (`mainsail.lifecycle.run`, Feast included) trains on churn rows with a
planted `email` column; its model is served by MLServer with the mainsail runtime, fed to the
drift sidecar (drift env), behind the router (a `python -m mainsail.serving.router` process)
that records every answer in a SQLite feedback store. JSON logs and traces are on, the way
`mainsail up` hands them to its processes (`mainsail.core.telemetry.telemetry_env`); spans go
to OpenTelemetry's console exporter writing one JSON file per process (the `file` exporter:
no collector can be had here).

* one request id follows each request through every log line and span of the path;
* the planted emails appear in no file, log line, metric or answer that the stack writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from mainsail.config import ProjectConfig, load_config
from mainsail.core.telemetry import telemetry_env
from mainsail.data.synthetic import generate_churn
from mainsail.drift.process import SidecarProcess
from mainsail.features.online import spec_for
from mainsail.features.server import FeatureServer
from mainsail.features.store import materialize
from mainsail.lifecycle.run import run
from mainsail.registry.manifest import seal_folder
from mainsail.serving.mlserver import (
    MLServerProcess,
    ServedModel,
    free_port,
    server_settings,
    write_repository,
)
from tests.support.configs import REPO, tiny_overrides

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOMAIN = "privacy-test.example"
DRIFT_TOKEN = "telemetry-test-token"


@dataclass
class Stack:
    root: Path
    cfg: ProjectConfig
    run_dir: Path
    data: pd.DataFrame
    features: list[dict[str, Any]]
    router: str
    mlserver: MLServerProcess
    sidecar: SidecarProcess
    logs: dict[str, Path]
    answers: dict[str, httpx.Response]


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        assert proc.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() < deadline, f"{url} never became healthy"
        time.sleep(0.2)


def _request(features: list[dict[str, Any]], row: pd.Series) -> dict[str, Any]:
    types = {"numeric": "FP64", "categorical": "BYTES", "boolean": "BOOL"}
    inputs = []
    for spec in features:
        value = row[spec["name"]]
        if pd.isna(value):
            value = None
        elif spec["kind"] == "numeric":
            value = float(value)
        elif spec["kind"] == "boolean":
            value = bool(value)
        else:
            value = str(value)
        inputs.append(
            {"name": spec["name"], "shape": [1], "datatype": types[spec["kind"]], "data": [value]}
        )
    return {"inputs": inputs}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("telemetry")
    frame = generate_churn(600, seed=3)
    frame["email"] = [f"customer.{i}@{DOMAIN}" for i in range(len(frame))]
    frame.to_parquet(root / "churn.parquet")
    cfg = load_config(
        REPO / "configs" / "churn.yaml",
        {
            **tiny_overrides(root),
            "features.repo_dir": str(root / "feature_repo"),
            "observability.json_logs": True,
            "observability.tracing": True,
            "observability.trace_dir": str(root / "traces"),
        },
    )
    run_dir = run(cfg).run_dir
    model_dir = run_dir / "model"
    seal_folder(model_dir, "churn", 1)
    # The run registered its Feast sources (without the email); put them online and serve them.
    feast_repo = Path(cfg.features.repo_dir)
    materialize(cfg, feast_repo, start=datetime(2000, 1, 1, tzinfo=UTC), end=datetime.now(UTC))
    spec = spec_for(cfg, feast_repo)
    key = cfg.data.entity_key
    assert key is not None
    customer = str(frame[key].iloc[0])
    feature_server = FeatureServer(feast_repo, port=free_port())
    features = json.loads((model_dir / "feature_schema.json").read_text())["features"]
    env = {
        **os.environ,
        **telemetry_env(cfg.observability, cfg.privacy, root / "traces"),
        cfg.drift.token_env: DRIFT_TOKEN,
    }
    logs = {name: root / f"{name}.log" for name in ("router", "sidecar")}
    sidecar = SidecarProcess(
        reference=str(model_dir),
        port=free_port(),
        log=logs["sidecar"],
        settings={"window_rows": 20, "min_rows": 10, "check_every_rows": 10},
        env=env,
    )
    repo = root / "mlserver"
    mlserver = MLServerProcess(
        write_repository(
            repo,
            [],
            server_settings(
                repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port()
            ),
        ),
        env=env,
    )
    logs["mlserver"] = mlserver.log_path
    router_port = free_port()
    settings = root / "router.json"
    router_proc: subprocess.Popen[bytes] | None = None
    try:
        feature_server.start(
            timeout_s=120, warmup={"feature_service": spec.service, "entities": {key: [customer]}}
        )
        sidecar.start()
        # The runtime feeds the sidecar without waiting for it (linger 0: one POST a request).
        served = ServedModel(
            "churn",
            uri=str(model_dir),
            extra={
                "drift_url": sidecar.url,
                "drift_linger_s": 0.0,
                "feature_server_url": feature_server.url,
            },
        )
        write_repository(repo, [served], json.loads((repo / "settings.json").read_text()))
        mlserver.start(["churn"])
        settings.write_text(
            json.dumps(
                {
                    "model_name": "churn",
                    "variants": [
                        {
                            "role": "champion",
                            "url": mlserver.url,
                            "model": "churn",
                            "version": "1",
                            "weight": 100,
                        }
                    ],
                    "feedback_url": f"sqlite:///{root / 'feedback.db'}",
                    "positive_label": "1",
                }
            )
        )
        with logs["router"].open("wb") as out:
            router_proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "mainsail.serving.router"),
                    *("--settings", str(settings), "--port", str(router_port)),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        router = f"http://127.0.0.1:{router_port}"
        _wait_healthy(f"{router}/v2/health/ready", router_proc, logs["router"])
        answers: dict[str, httpx.Response] = {}
        rows = frame.drop(columns=["email", "churned"]).head(30)
        with httpx.Client(base_url=router, timeout=20) as client:
            for i, (_, row) in enumerate(rows.iterrows()):
                rid = f"trace-{i:03d}"
                answers[rid] = client.post(
                    "/v2/models/churn/infer",
                    json=_request(features, row),
                    headers={"x-request-id": rid},
                )
            # By entity key: the runtime looks the features up at the feature server.
            by_key = {"inputs": [{"name": key, "shape": [1], "datatype": "BYTES"}]}
            by_key["inputs"][0]["data"] = [customer]
            answers["trace-entity"] = client.post(
                "/v2/models/churn/infer", json=by_key, headers={"x-request-id": "trace-entity"}
            )
            # A client that sends the email along, and one that puts it into a feature.
            leaky = _request(features, rows.iloc[0])
            leaky["inputs"].append(
                {"name": "email", "shape": [1], "datatype": "BYTES", "data": [frame.email[0]]}
            )
            answers["leak-extra"] = client.post(
                "/v2/models/churn/infer", json=leaky, headers={"x-request-id": "leak-extra"}
            )
            wrong = _request(features, rows.iloc[1])
            wrong["inputs"][0]["data"] = [frame.email[1]]  # an FP64 input holding an email
            answers["leak-value"] = client.post(
                "/v2/models/churn/infer", json=wrong, headers={"x-request-id": "leak-value"}
            )
            # An email as the request id (ids are stored and logged): refused by name.
            answers["leak-id"] = client.post(
                "/v2/models/churn/infer",
                json=_request(features, rows.iloc[2]),
                headers={"x-request-id": frame.email[2]},
            )
            labels = {f"trace-{i:03d}": str(i % 2) for i in range(10)}
            answers["feedback"] = client.post("/feedback", json={"labels": labels})
            time.sleep(1.0)  # the feedback writer (0.2 s) and the drift feed have flushed
        yield Stack(root, cfg, run_dir, frame, features, router, mlserver, sidecar, logs, answers)
    finally:
        if router_proc is not None:
            router_proc.terminate()
            router_proc.wait(10)
        mlserver.stop()
        sidecar.stop()
        feature_server.stop()


def _json_lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if line.startswith("{") and '"service"' in line:
            out.append(json.loads(line))
    return out


def _spans(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for f in sorted(folder.glob("*.jsonl")) for line in f.open()]


def test_one_request_id_follows_a_request_through_every_log_line_and_span(stack: Stack) -> None:
    assert all(stack.answers[f"trace-{i:03d}"].status_code == 200 for i in range(30))
    rid = "trace-004"
    assert stack.answers[rid].headers["x-request-id"] == rid
    lines = {name: _json_lines(path) for name, path in stack.logs.items()}
    mine = {
        name: [
            ln for ln in found if ln.get("request_id") == rid or rid in ln.get("request_ids", [])
        ]
        for name, found in lines.items()
    }
    messages = {(ln["service"], ln["msg"]) for found in mine.values() for ln in found}
    assert messages >= {
        ("mainsail-router", "request routed"),
        ("mainsail-router", "prediction stored in the feedback store"),
        ("mainsail-runtime", "request served"),
        ("mainsail-drift", "served rows received"),
    }, messages
    # The runtime's one line per request names what its stages did: rows queued for the drift
    # sidecar (the feed's decision, not a line of its own: each line costs the request path).
    (served,) = [ln for ln in mine["mlserver"] if ln["msg"] == "request served"]
    assert served["drift_queued"] is True, served
    # The traced processes' lines of this request are all in its one trace (the sidecar works
    # per batch of many requests: its line names the request ids of its batch).
    traced = mine["router"] + mine["mlserver"]
    trace_ids = {ln.get("trace_id") for ln in traced}
    assert len(trace_ids) == 1 and None not in trace_ids, traced
    # Every line in that trace names this request, and only this one.
    in_trace = [ln for found in lines.values() for ln in found if ln.get("trace_id") in trace_ids]
    assert {ln.get("request_id") for ln in in_trace} == {rid}

    spans = [s for s in _spans(stack.root / "traces") if s["trace_id"] in trace_ids]
    names = {s["name"] for s in spans}
    assert names >= {
        "router.infer",
        "router.feedback",
        "runtime.infer",
        "validation",
        "predict",
        "drift_enqueue",
    }, names
    assert {s["attributes"]["mainsail.request_id"] for s in spans} == {rid}
    services = {s["service"] for s in spans}
    assert services == {"mainsail-router", "mainsail-runtime"}
    # One tree: the runtime's root span is a child of the router's (through `traceparent`).
    by_id = {s["span_id"]: s for s in spans}
    runtime_root = next(s for s in spans if s["name"] == "runtime.infer")
    assert by_id[runtime_root["parent_id"]]["name"] == "router.infer"
    # The entity-key request: its features were looked up inside its trace.
    assert stack.answers["trace-entity"].status_code == 200, stack.answers["trace-entity"].text
    entity = [s for s in _spans(stack.root / "traces") if s["name"] == "feature_lookup"]
    assert [s["attributes"]["mainsail.request_id"] for s in entity] == ["trace-entity"]
    looked_up = [ln for ln in lines["mlserver"] if ln["msg"] == "features looked up"]
    assert [ln["request_id"] for ln in looked_up] == ["trace-entity"]
    assert looked_up[0]["trace_id"] == entity[0]["trace_id"]
    # Every other request has its own trace.
    all_rids = {
        s["attributes"]["mainsail.request_id"]
        for s in _spans(stack.root / "traces")
        if s["name"] == "router.infer"
    }
    assert {f"trace-{i:03d}" for i in range(30)} <= all_rids


def _scrape(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def _text_of(path: Path) -> str:
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
        return " ".join(map(str, frame.columns)) + " " + frame.astype(str).to_string()
    return path.read_bytes().decode("latin-1")


def test_a_planted_email_column_never_leaves_the_input_file(stack: Stack) -> None:
    report = json.loads((stack.run_dir / "validation_report.json").read_text())
    assert report["sensitive"]["email"].startswith("detected: email addresses")
    assert "email" not in report["features"]
    card = yaml.safe_load((stack.run_dir / "model" / "model_card.yaml").read_text())
    assert card["sensitive_columns_removed"] == ["email"]
    # The requests that carried an email were refused without echoing it.
    for key in ("leak-extra", "leak-value", "leak-id"):
        answer = stack.answers[key]
        assert answer.status_code == 400 and DOMAIN not in answer.text, answer.text
    assert "<email:" in stack.answers["leak-value"].text
    assert stack.answers["feedback"].status_code == 200

    written = [p for p in stack.root.rglob("*") if p.is_file() and p.name != "churn.parquet"]
    assert len(written) > 40  # run folder, Feast repo, MLServer, logs, traces, feedback store
    leaks = [str(p.relative_to(stack.root)) for p in written if DOMAIN in _text_of(p)]
    assert leaks == []

    mlserver_metrics = f"http://127.0.0.1:{stack.mlserver.metrics_port}/metrics"
    for url in (
        f"{stack.router}/metrics",
        mlserver_metrics,
        f"{stack.sidecar.url}/metrics",
        f"{stack.sidecar.url}/v1/status",
    ):
        code, body = _scrape(url)
        assert code == 200 and DOMAIN not in body, url
    # The sidecar keeps its window: export is off unless drift.window_export says otherwise.
    code, body = _scrape(f"{stack.sidecar.url}/v1/window?model=churn&version=1", DRIFT_TOKEN)
    assert code == 403 and "drift.window_export" in body
