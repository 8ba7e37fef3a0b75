"""The retrain trigger: an Alertmanager webhook receiver that turns drift alerts into runs.

One incident starts one run:

* an incident is one firing of one alert: its fingerprint (a hash of its labels) plus its start
  time. Alertmanager re-sends a firing group every `group_interval` / `repeat_interval`; those
  repeats are duplicates and start nothing;
* after a run starts for a model, alerts for that model start nothing for `cooldown_s`
  (an incident that arrives during the cool-down starts its run when it is re-sent after it);
* the state (incidents, runs, last start per model) is a JSON file written atomically before the
  action starts, so a restarted trigger does not start the same run again.

The action is pluggable: any callable `(RetrainRequest) -> RunInfo`. Built in: a local command
(default `mainsail run CONFIG`, with the drifted window saved as parquet) and a Kubeflow
Pipelines run. Before the action, the trigger saves the sidecar's current window of the drifted
model version (`GET /v1/window`) so the run can use the data that drifted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from mainsail.config.monitor import RetrainTriggerConfig

__all__ = [
    "CommandAction",
    "KFPAction",
    "PayloadError",
    "RetrainAction",
    "RetrainRequest",
    "RetrainTrigger",
    "RunInfo",
    "TriggerServer",
    "build_action",
]

log = logging.getLogger("mainsail.trigger")

STATE_FILE = "trigger-state.json"
MAX_BODY_BYTES = 8 * 1024 * 1024


class PayloadError(ValueError):
    """A webhook body that is not an Alertmanager notification; the message says what is wrong."""


@dataclass(frozen=True)
class RetrainRequest:
    """What a retraining action is asked to do."""

    run_id: str
    model: str
    version: str
    alertname: str
    fingerprint: str
    group_key: str
    labels: dict[str, str]
    window: Path | None
    """Parquet file with the drifted window (served rows), when the sidecar could provide it."""


@dataclass
class RunInfo:
    """What an action started."""

    action: str
    detail: dict[str, Any] = field(default_factory=dict)


class RetrainAction(Protocol):
    def __call__(self, request: RetrainRequest) -> RunInfo: ...


class _Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.alerts = Counter(
            "mainsail_retrain_alerts_received",
            "Alerts received from Alertmanager, by name and status",
            ["alertname", "status"],
            registry=r,
        )
        self.decisions = Counter(
            "mainsail_retrain_decisions",
            "What the trigger did with an alert (started, duplicate, cooldown, ignored, "
            "resolved, failed)",
            ["decision"],
            registry=r,
        )
        self.started = Counter(
            "mainsail_retrain_runs_started", "Retraining runs started", ["model"], registry=r
        )
        self.finished = Counter(
            "mainsail_retrain_runs_finished",
            "Retraining runs that ended, by outcome (succeeded, failed)",
            ["model", "outcome"],
            registry=r,
        )
        self.running = Gauge(
            "mainsail_retrain_runs_running", "Retraining runs in progress", ["model"], registry=r
        )
        self.last_start = Gauge(
            "mainsail_retrain_last_run_start_timestamp_seconds",
            "Unix time the latest retraining run of a model started",
            ["model"],
            registry=r,
        )
        self.duration = Histogram(
            "mainsail_retrain_run_duration_seconds",
            "Wall time of finished local retraining runs",
            ["model"],
            buckets=(1, 10, 30, 60, 300, 600, 1800, 3600, 7200, 14400),
            registry=r,
        )


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class RetrainTrigger:
    """De-duplication, cool-down, persisted state and the action (no HTTP here)."""

    def __init__(
        self,
        cfg: RetrainTriggerConfig,
        state_dir: Path,
        action: RetrainAction | None = None,
        *,
        clock: Callable[[], float] = time.time,
        config_path: Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.state_dir = state_dir
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.metrics = _Metrics()
        # Re-entrant: an action may report its end from inside the call that started it.
        self._lock = threading.RLock()
        self.state = self._load_state()
        self.action: RetrainAction = action or build_action(
            cfg, state_dir, config_path=config_path, on_finish=self.finish_run
        )

    # -- state ----------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.state_dir / STATE_FILE

    def _load_state(self) -> dict[str, Any]:
        if not self.state_path.exists():
            return {"incidents": {}, "runs": {}, "last_run": {}}
        try:
            state = json.loads(self.state_path.read_text())
        except ValueError as err:
            raise ValueError(
                f"{self.state_path}: the trigger state is not valid JSON ({err}); move it away "
                "to start with an empty state"
            ) from None
        for key in ("incidents", "runs", "last_run"):
            state.setdefault(key, {})
        return dict(state)

    def _save(self) -> None:
        tmp = self.state_path.with_name(STATE_FILE + ".tmp")
        with tmp.open("w") as fh:
            json.dump(self.state, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(self.state_path)

    def runs(self) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self.state["runs"]))

    # -- webhook --------------------------------------------------------------------------
    def handle(self, payload: Any) -> list[dict[str, Any]]:
        """Process one Alertmanager notification; returns one decision per alert."""
        alerts = _validate(payload)
        group_key = str(payload.get("groupKey", ""))
        decisions = []
        with self._lock:
            for alert in alerts:
                decisions.append(self._decide(alert, group_key))
        return decisions

    def _decide(self, alert: dict[str, Any], group_key: str) -> dict[str, Any]:
        labels: dict[str, str] = {str(k): str(v) for k, v in alert["labels"].items()}
        name = labels["alertname"]
        status = alert["status"]
        self.metrics.alerts.labels(name, status).inc()
        fingerprint = str(alert.get("fingerprint") or _fingerprint(labels))
        incident = f"{fingerprint}|{alert.get('startsAt', '')}"
        out: dict[str, Any] = {"alertname": name, "fingerprint": fingerprint, "incident": incident}

        def decided(decision: str, **extra: Any) -> dict[str, Any]:
            self.metrics.decisions.labels(decision).inc()
            out.update(decision=decision, **extra)
            log.info("alert %s %s (%s): %s", name, status, labels, decision)
            return out

        if name not in self.cfg.alerts:
            return decided("ignored")
        known = self.state["incidents"].get(incident)
        if status == "resolved":
            if known is not None:
                known["resolved"] = _now_iso()
                self._save()
            return decided("resolved")
        if known is not None and known["status"] in ("starting", "started"):
            return decided("duplicate", run_id=known.get("run_id"))
        model = labels.get("model", "")
        version = labels.get("version", "")
        now = self.clock()
        last = self.state["last_run"].get(model)
        if last is not None and now - float(last) < self.cfg.cooldown_s:
            self.state["incidents"][incident] = {
                "status": "cooldown",
                "alertname": name,
                "model": model,
                "version": version,
                "group_key": group_key,
                "updated": _now_iso(),
            }
            self._save()
            return decided(
                "cooldown", retry_after_s=round(self.cfg.cooldown_s - (now - float(last)), 1)
            )

        stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%S}"
        seq = len(self.state["runs"]) + 1
        run_id = f"{model or 'model'}-{version or 'x'}-{stamp}-{seq:04d}"
        # Written before the action starts: a crash from here on never starts this run twice.
        self.state["incidents"][incident] = {
            "status": "starting",
            "alertname": name,
            "model": model,
            "version": version,
            "group_key": group_key,
            "run_id": run_id,
            "updated": _now_iso(),
        }
        previous_last = last
        self.state["last_run"][model] = now
        self.state["runs"][run_id] = {
            "model": model,
            "version": version,
            "alertname": name,
            "fingerprint": fingerprint,
            "group_key": group_key,
            "status": "starting",
            "started": _now_iso(),
            "started_unix": now,
        }
        self._save()

        window, window_error = self._fetch_window(labels, model, version, run_id)
        request = RetrainRequest(
            run_id=run_id,
            model=model,
            version=version,
            alertname=name,
            fingerprint=fingerprint,
            group_key=group_key,
            labels=labels,
            window=window,
        )
        try:
            info = self.action(request)
        except Exception as err:
            log.exception("retraining action for %s failed to start", run_id)
            # No run happened: no cool-down, and the next notification may try again.
            if previous_last is None:
                self.state["last_run"].pop(model, None)
            else:
                self.state["last_run"][model] = previous_last
            self.state["incidents"][incident]["status"] = "failed"
            self.state["runs"][run_id].update(status="failed_to_start", error=str(err))
            self._save()
            return decided("failed", run_id=run_id, error=str(err))
        run = self.state["runs"][run_id]
        if run["status"] == "starting":  # a very fast action may have finished already
            run["status"] = "running"
        run.update(action=info.action, window=str(window) if window else None, **info.detail)
        if window_error:
            run["window_error"] = window_error
        self.state["incidents"][incident]["status"] = "started"
        self._save()
        self.metrics.started.labels(model).inc()
        self.metrics.last_start.labels(model).set(now)
        if run["status"] == "running":
            self.metrics.running.labels(model).inc()
        return decided("started", run_id=run_id)

    def finish_run(self, run_id: str, returncode: int) -> None:
        """Record the end of a run (called by actions that can watch their run)."""
        with self._lock:
            run = self.state["runs"].get(run_id)
            if run is None:
                return
            was_running = run.get("status") == "running"
            outcome = "succeeded" if returncode == 0 else "failed"
            run.update(status=outcome, returncode=returncode, finished=_now_iso())
            self._save()
            model = run.get("model", "")
            self.metrics.finished.labels(model, outcome).inc()
            if was_running:
                self.metrics.running.labels(model).dec()
            started = run.get("started_unix")
            if started is not None:
                self.metrics.duration.labels(model).observe(max(0.0, self.clock() - float(started)))

    def _fetch_window(
        self, labels: dict[str, str], model: str, version: str, run_id: str
    ) -> tuple[Path | None, str | None]:
        base = self.cfg.sidecar_url or (
            f"http://{labels['instance']}" if labels.get("instance") else None
        )
        if not base or not model or not version:
            return None, "no sidecar URL (monitor.trigger.sidecar_url or the alert's instance)"
        query = urllib.parse.urlencode({"model": model, "version": version})
        url = f"{base.rstrip('/')}/v1/window?{query}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                data = resp.read()
        except (urllib.error.URLError, OSError) as err:
            log.warning("could not fetch the drifted window from %s: %s", url, err)
            return None, f"GET {url}: {err}"
        path = self.state_dir / "windows" / f"{run_id}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path, None


def _fingerprint(labels: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]


def _validate(payload: Any) -> list[dict[str, Any]]:
    if not isinstance(payload, dict):
        raise PayloadError("body: expected an Alertmanager webhook object with an `alerts` list")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError("alerts: expected a list of alerts")
    for i, alert in enumerate(alerts):
        if not isinstance(alert, dict):
            raise PayloadError(f"alerts[{i}]: expected an object")
        if alert.get("status") not in ("firing", "resolved"):
            raise PayloadError(
                f"alerts[{i}].status: expected 'firing' or 'resolved', got {alert.get('status')!r}"
            )
        labels = alert.get("labels")
        if not isinstance(labels, dict) or not isinstance(labels.get("alertname"), str):
            raise PayloadError(f"alerts[{i}].labels: expected an object with an alertname")
    return alerts


# -- actions --------------------------------------------------------------------------------


def _fill(template: str, values: dict[str, str]) -> str:
    out = template
    for key, value in values.items():
        out = out.replace("{" + key + "}", value)
    return out


class CommandAction:
    """Run a local command per retraining run; its output goes to `<log_dir>/<run_id>.log`."""

    def __init__(
        self,
        command: list[str],
        log_dir: Path,
        *,
        config_path: Path | None = None,
        on_finish: Callable[[str, int], None] | None = None,
    ) -> None:
        self.command = command
        self.log_dir = log_dir
        self.config_path = config_path
        self.on_finish = on_finish

    def __call__(self, request: RetrainRequest) -> RunInfo:
        values = {
            "config": str(self.config_path or ""),
            "model": request.model,
            "version": request.version,
            "window": str(request.window or ""),
            "alert": request.alertname,
            "run_id": request.run_id,
        }
        argv = [_fill(part, values) for part in self.command]
        env = dict(os.environ)
        env.update(
            MAINSAIL_DRIFT_WINDOW=values["window"],
            MAINSAIL_RETRAIN_RUN_ID=request.run_id,
            MAINSAIL_RETRAIN_MODEL=request.model,
            MAINSAIL_RETRAIN_VERSION=request.version,
        )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{request.run_id}.log"
        with log_path.open("ab") as handle:
            proc = subprocess.Popen(
                argv, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        if self.on_finish is not None:
            callback = self.on_finish

            def wait() -> None:
                callback(request.run_id, proc.wait())

            threading.Thread(target=wait, name=f"run-{request.run_id}", daemon=True).start()
        return RunInfo("command", {"pid": proc.pid, "argv": argv, "log": str(log_path)})


class KFPAction:
    """Submit the compiled retraining pipeline to Kubeflow Pipelines (kfp imported lazily)."""

    def __init__(
        self,
        host: str,
        pipeline: Path,
        experiment: str,
        *,
        config_path: Path | None = None,
        client_factory: Callable[[str], Any] | None = None,
    ) -> None:
        self.host = host
        self.pipeline = pipeline
        self.experiment = experiment
        self.config_path = config_path
        self.client_factory = client_factory

    def _client(self) -> Any:
        if self.client_factory is not None:
            return self.client_factory(self.host)
        import kfp

        return kfp.Client(host=self.host)

    def __call__(self, request: RetrainRequest) -> RunInfo:
        if not self.pipeline.is_file():
            raise FileNotFoundError(f"monitor.trigger.kfp_pipeline {self.pipeline} does not exist")
        arguments = {
            "model": request.model,
            "drifted_version": request.version,
            "drift_window": str(request.window or ""),
        }
        result = self._client().create_run_from_pipeline_package(
            str(self.pipeline),
            arguments=arguments,
            run_name=f"retrain-{request.run_id}",
            experiment_name=self.experiment,
        )
        return RunInfo("kfp", {"kfp_run_id": str(result.run_id), "kfp_host": self.host})


def build_action(
    cfg: RetrainTriggerConfig,
    state_dir: Path,
    *,
    config_path: Path | None = None,
    on_finish: Callable[[str, int], None] | None = None,
) -> RetrainAction:
    """The action the config asks for."""
    if cfg.action == "kfp":
        if not cfg.kfp_host or cfg.kfp_pipeline is None:
            raise ValueError("monitor.trigger.action 'kfp' needs kfp_host and kfp_pipeline")
        return KFPAction(
            cfg.kfp_host, cfg.kfp_pipeline, cfg.kfp_experiment, config_path=config_path
        )
    return CommandAction(
        cfg.command, state_dir / "runs", config_path=config_path, on_finish=on_finish
    )


# -- HTTP -----------------------------------------------------------------------------------


class TriggerServer:
    """`POST /alerts` (Alertmanager webhook), `GET /v1/runs`, `/metrics`, `/healthz`."""

    def __init__(self, trigger: RetrainTrigger, host: str = "127.0.0.1", port: int = 0) -> None:
        self.trigger = trigger
        handler = type("Handler", (_Handler,), {"trigger": trigger})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> TriggerServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        with contextlib.suppress(KeyboardInterrupt):
            self.httpd.serve_forever()
        self.httpd.server_close()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    trigger: RetrainTrigger
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate writes: without this, Nagle and delayed ACKs add
    # ~40 ms to every keep-alive request.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, obj: Any) -> None:
        self._send(code, json.dumps(obj).encode())

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path == "/metrics":
            self._send(
                200, generate_latest(self.trigger.metrics.registry), "text/plain; version=0.0.4"
            )
        elif path == "/healthz":
            self._json(200, {"status": "ok"})
        elif path == "/v1/runs":
            self._json(200, {"runs": self.trigger.runs()})
        else:
            self._json(404, {"error": f"no such endpoint: GET {path}"})

    def do_POST(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._json(411, {"error": "a Content-Length header is required"})
            return
        if int(length) > MAX_BODY_BYTES:
            self.close_connection = True
            self._json(413, {"error": f"body exceeds {MAX_BODY_BYTES} bytes"})
            return
        raw = self.rfile.read(int(length))
        if path not in ("/alerts", "/v1/alerts"):
            self._json(404, {"error": f"no such endpoint: POST {path}"})
            return
        try:
            payload = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            self._json(400, {"error": f"body is not valid JSON: {err}"})
            return
        try:
            decisions = self.trigger.handle(payload)
        except PayloadError as err:
            self._json(400, {"error": str(err)})
            return
        except Exception as err:
            log.exception("webhook handling failed")
            self._json(500, {"error": f"internal error: {err}"})
            return
        self._json(200, {"decisions": decisions})


def state_dir_for(cfg: RetrainTriggerConfig, config_file: Path | None) -> Path:
    """`monitor.trigger.state_dir`, relative to the config file's folder unless absolute."""
    if cfg.state_dir.is_absolute() or config_file is None:
        return cfg.state_dir
    return (config_file.resolve().parent / cfg.state_dir).resolve()


def describe(request: RetrainRequest) -> dict[str, Any]:
    """A request as JSON (for logs and tests)."""
    out = asdict(request)
    out["window"] = str(request.window) if request.window else None
    return out
