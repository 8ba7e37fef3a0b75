"""The retrain trigger: one incident starts one run, across repeats, cool-downs and restarts.

Runs are real local commands (a small Python script that records its arguments); the webhook
is posted over HTTP to the real trigger server. Only Kubeflow Pipelines cannot run here: the
KFP action is tested against a stand-in client object and the test says so.
"""

from __future__ import annotations

import functools
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from mainsail.config.monitor import RetrainTriggerConfig
from mainsail.retrain.actions import KFPAction, RetrainRequest, RunInfo
from mainsail.retrain.server import TriggerServer
from mainsail.retrain.trigger import RetrainTrigger

pytestmark = pytest.mark.integration

TOKEN = "trigger-test-token"
#: The trigger as the CLI builds it for the churn project: only `churn` may be retrained.
Trigger = functools.partial(RetrainTrigger, models={"churn"}, token=TOKEN)

RECORDER = (
    "import json, os, sys; from pathlib import Path; "
    "out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True); "
    "(out / (os.environ['MAINSAIL_RETRAIN_RUN_ID'] + '.json')).write_text(json.dumps("
    "{'argv': sys.argv[2:], 'window': os.environ['MAINSAIL_DRIFT_WINDOW']}))"
)


def alert(
    status: str = "firing",
    name: str = "MainsailDriftSustained",
    version: str = "3",
    starts: str = "2026-11-26T10:00:00Z",
    fingerprint: str = "abc123def456",
    instance: str | None = None,
) -> dict[str, Any]:
    labels = {"alertname": name, "model": "churn", "version": version, "action": "retrain"}
    if instance:
        labels["instance"] = instance
    return {
        "status": status,
        "labels": labels,
        "annotations": {},
        "startsAt": starts,
        "fingerprint": fingerprint,
    }


def notification(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}/{action="retrain"}:{alertname="MainsailDriftSustained"}',
        "status": alerts[0]["status"],
        "receiver": "mainsail-retrain",
        "alerts": list(alerts),
    }


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _config(tmp_path: Path, **over: Any) -> RetrainTriggerConfig:
    command = [
        sys.executable,
        "-c",
        RECORDER,
        str(tmp_path / "ran"),
        "{config}",
        "{model}",
        "{version}",
        "{window}",
    ]
    values: dict[str, Any] = {"command": command, "cooldown_s": 600.0}
    values.update(over)
    return RetrainTriggerConfig(**values)


def _wait_runs(folder: Path, n: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = sorted(folder.glob("*.json")) if folder.exists() else []
        if len(files) >= n:
            return [json.loads(f.read_text()) for f in files]
        time.sleep(0.05)
    raise AssertionError(f"expected {n} runs in {folder}")


def test_one_incident_starts_one_run_across_repeats_and_restarts(tmp_path: Path) -> None:
    clock = Clock()
    cfg = _config(tmp_path)
    state = tmp_path / "state"
    trig = Trigger(cfg, state, clock=clock, config_path=tmp_path / "churn.yaml")
    first = trig.handle(notification(alert()))
    assert first[0]["decision"] == "started"
    runs = _wait_runs(tmp_path / "ran", 1)
    assert runs[0]["argv"] == [str(tmp_path / "churn.yaml"), "churn", "3", ""]
    # Alertmanager repeats the firing group: duplicates.
    clock.now += 300
    assert trig.handle(notification(alert()))[0]["decision"] == "duplicate"
    # A restarted trigger reads the state and still knows the incident.
    trig2 = Trigger(cfg, state, clock=clock)
    assert trig2.handle(notification(alert()))[0]["decision"] == "duplicate"
    time.sleep(0.3)
    assert len(list((tmp_path / "ran").glob("*.json"))) == 1
    assert len(trig2.runs()) == 1


def test_cooldown_blocks_new_incidents_of_the_model_until_it_ends(tmp_path: Path) -> None:
    clock = Clock()
    trig = Trigger(_config(tmp_path, cooldown_s=600), tmp_path / "state", clock=clock)
    assert trig.handle(notification(alert()))[0]["decision"] == "started"
    # The alert resolved and fired again: a new incident, but within the cool-down.
    trig.handle(notification(alert(status="resolved")))
    clock.now += 100
    again = alert(starts="2026-11-26T10:05:00Z")
    decision = trig.handle(notification(again))[0]
    assert decision["decision"] == "cooldown"
    assert decision["retry_after_s"] == pytest.approx(500)
    # Alertmanager re-sends it after the cool-down: now it starts its run.
    clock.now += 600
    assert trig.handle(notification(again))[0]["decision"] == "started"
    assert len(_wait_runs(tmp_path / "ran", 2)) == 2


def test_other_alerts_and_resolutions_start_nothing(tmp_path: Path) -> None:
    trig = Trigger(_config(tmp_path), tmp_path / "state", clock=Clock())
    out = trig.handle(
        notification(
            alert(name="MainsailHighErrorRate"), alert(status="resolved", fingerprint="zz")
        )
    )
    assert [d["decision"] for d in out] == ["ignored", "resolved"]
    assert trig.runs() == {}


def test_a_failed_start_leaves_no_cooldown_and_is_retried(tmp_path: Path) -> None:
    calls: list[RetrainRequest] = []

    def flaky(request: RetrainRequest) -> RunInfo:
        calls.append(request)
        if len(calls) == 1:
            raise RuntimeError("cluster unreachable")
        return RunInfo("test", {"attempt": len(calls)})

    trig = Trigger(_config(tmp_path), tmp_path / "state", action=flaky, clock=Clock())
    first = trig.handle(notification(alert()))[0]
    assert first["decision"] == "failed" and "cluster unreachable" in first["error"]
    assert trig.handle(notification(alert()))[0]["decision"] == "started"
    statuses = sorted(r["status"] for r in trig.runs().values())
    assert statuses == ["failed_to_start", "running"]


def test_run_end_is_recorded_with_its_outcome(tmp_path: Path) -> None:
    cfg = _config(tmp_path, command=[sys.executable, "-c", "import sys; sys.exit(3)"])
    trig = Trigger(cfg, tmp_path / "state", clock=Clock())
    run_id = trig.handle(notification(alert()))[0]["run_id"]
    deadline = time.monotonic() + 20
    while trig.runs()[run_id]["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    run = trig.runs()[run_id]
    assert run["status"] == "failed" and run["returncode"] == 3
    from prometheus_client import generate_latest

    text = generate_latest(trig.metrics.registry).decode()
    assert 'mainsail_retrain_runs_finished_total{model="churn",outcome="failed"} 1.0' in text
    assert 'mainsail_retrain_runs_started_total{model="churn"} 1.0' in text


class _WindowServer:
    """Stands in for the sidecar's GET /v1/window (the real one is in the chain test)."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.auth: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.paths.append(self.path)
                outer.auth.append(self.headers.get("Authorization"))
                body = b"PAR1-window-bytes"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.address = f"127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def window_server() -> Iterator[_WindowServer]:
    srv = _WindowServer()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def test_the_drifted_window_is_saved_and_handed_to_the_run(
    tmp_path: Path, window_server: _WindowServer
) -> None:
    cfg = _config(tmp_path, sidecar_url=f"http://{window_server.address}")
    trig = Trigger(cfg, tmp_path / "state", clock=Clock(), drift_token="d-token")
    trig.handle(notification(alert()))
    run = _wait_runs(tmp_path / "ran", 1)[0]
    assert window_server.paths == ["/v1/window?model=churn&version=3"]
    assert window_server.auth == ["Bearer d-token"]
    window = Path(run["window"])
    assert run["argv"][-1] == str(window)
    assert window.read_bytes() == b"PAR1-window-bytes"
    assert window.parent == tmp_path / "state" / "windows"


def test_kfp_action_submits_the_compiled_pipeline(tmp_path: Path) -> None:
    # No KFP API server can run here: a stand-in client records the call kfp.Client would make.
    class FakeClient:
        calls: ClassVar[list[tuple[str, dict[str, Any]]]] = []

        def __init__(self, host: str) -> None:
            self.host = host

        def create_run_from_pipeline_package(self, path: str, **kwargs: Any) -> Any:
            FakeClient.calls.append((path, kwargs))
            return type("Result", (), {"run_id": "kfp-run-1"})()

    pipeline = tmp_path / "retrain.yaml"
    pipeline.write_text("pipelineInfo: {name: retrain}\n")
    action = KFPAction(
        "http://kfp.example:8888", pipeline, "mainsail-retrain", client_factory=FakeClient
    )
    trig = Trigger(_config(tmp_path), tmp_path / "state", action=action, clock=Clock())
    out = trig.handle(notification(alert()))[0]
    assert out["decision"] == "started"
    path, kwargs = FakeClient.calls[0]
    assert path == str(pipeline)
    assert kwargs["experiment_name"] == "mainsail-retrain"
    assert kwargs["arguments"]["model"] == "churn" and kwargs["arguments"]["drifted_version"] == "3"
    assert trig.runs()[out["run_id"]]["kfp_run_id"] == "kfp-run-1"


def _post(url: str, raw: bytes, token: str | None = TOKEN) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=raw, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_webhook_server_answers_malformed_requests_with_4xx(tmp_path: Path) -> None:
    trig = Trigger(_config(tmp_path), tmp_path / "state", clock=Clock())
    server = TriggerServer(trig).start()
    try:
        assert _post(server.url + "/alerts", b"{oops")[0] == 400
        code, body = _post(
            server.url + "/alerts", json.dumps({"alerts": [{"status": "odd"}]}).encode()
        )
        assert code == 400 and "alerts[0].status" in body["error"]
        code, body = _post(
            server.url + "/alerts",
            json.dumps({"alerts": [{"status": "firing", "labels": {}}]}).encode(),
        )
        assert code == 400 and "alertname" in body["error"]
        assert _post(server.url + "/elsewhere", b"{}")[0] == 404
        code, body = _post(server.url + "/alerts", json.dumps(notification(alert())).encode())
        assert code == 200 and body["decisions"][0]["decision"] == "started"
        with urllib.request.urlopen(server.url + "/metrics", timeout=5) as resp:
            assert b"mainsail_retrain_decisions_total" in resp.read()
    finally:
        server.stop()


def test_a_corrupt_state_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "trigger-state.json").write_text("{half")
    with pytest.raises(ValueError, match="trigger state is not valid JSON"):
        Trigger(_config(tmp_path), tmp_path / "state")


def _get(url: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_the_webhook_and_the_runs_refuse_unauthenticated_calls(tmp_path: Path) -> None:
    trig = Trigger(_config(tmp_path), tmp_path / "state", clock=Clock())
    server = TriggerServer(trig).start()
    body = json.dumps(notification(alert())).encode()
    try:
        for token in (None, "wrong", TOKEN + "x"):
            code, answer = _post(server.url + "/alerts", body, token=token)
            assert code == 401 and "token" in answer["error"]
            assert _get(server.url + "/v1/runs", token) == 401
        assert trig.runs() == {} and not (tmp_path / "ran").exists()
        assert _get(server.url + "/v1/runs", TOKEN) == 200
        assert _get(server.url + "/healthz") == 200  # probes need no token
    finally:
        server.stop()
    # A trigger started without a token refuses every webhook call (403): closed by default.
    closed = RetrainTrigger(_config(tmp_path), tmp_path / "state2", models={"churn"})
    server = TriggerServer(closed).start()
    try:
        code, answer = _post(server.url + "/alerts", body)
        assert code == 403 and "MAINSAIL_TRIGGER_TOKEN" in answer["error"]
    finally:
        server.stop()


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_crafted_labels_write_nothing_outside_the_state_dir_and_fetch_nothing(
    tmp_path: Path, window_server: _WindowServer
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    cfg = _config(work, sidecar_url=f"http://{window_server.address}", cooldown_s=3600)
    trig = Trigger(cfg, work / "state", clock=Clock())
    before = _tree(tmp_path)
    crafted = [
        {"model": "../../escape", "version": "3"},
        {"model": "churn/../../escape", "version": "3"},
        {"model": "churn", "version": "../../../escape"},
        {"model": "churn", "version": "3/../../x"},
        {"model": "other-model", "version": "3"},
        {"model": "", "version": "3"},
        # `instance` never chooses the URL: the configured sidecar_url does.
        {"model": "evil", "version": "1", "instance": "attacker.example:9"},
    ]
    for i, labels in enumerate(crafted):
        bad = alert(fingerprint=f"fp{i}")
        bad["labels"].update(labels)
        out = trig.handle(notification(bad))[0]
        assert out["decision"] == "ignored", (labels, out)
    assert window_server.paths == []
    assert trig.runs() == {}
    assert _tree(tmp_path) - before <= {"work/state"}
    # Each new model value no longer slips past the cool-down: unknown models start nothing.
    ok = alert(instance="attacker.example:9")
    assert trig.handle(notification(ok))[0]["decision"] == "started"
    assert window_server.paths == ["/v1/window?model=churn&version=3"]
    for i in range(5):
        again = alert(starts=f"2026-11-26T11:0{i}:00Z", fingerprint=f"new{i}")
        again["labels"]["model"] = f"churn{i}"
        assert trig.handle(notification(again))[0]["decision"] == "ignored"
    outside = {p for p in _tree(tmp_path) - before if not p.startswith(("work/state", "work/ran"))}
    assert outside == set()
    assert not any(".." in p.name for p in (work / "state" / "windows").iterdir())
