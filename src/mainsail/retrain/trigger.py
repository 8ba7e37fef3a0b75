"""The retrain trigger: an Alertmanager webhook receiver that turns drift alerts into runs.

One incident starts one run:

* an incident is one firing of one alert: its fingerprint (a hash of its labels) plus its start
  time. Alertmanager re-sends a firing group every `group_interval` / `repeat_interval`; those
  repeats are duplicates and start nothing;
* after a run starts for a model, alerts for that model start nothing for `cooldown_s`
  (an incident that arrives during the cool-down starts its run when it is re-sent after it);
* the state (incidents, runs, last start per model) is a JSON file written atomically before the
  action starts, so a restarted trigger does not start the same run again.

The action is pluggable (`mainsail.retrain.actions`). Before the action, the trigger saves the
sidecar's current window of the drifted model version (`GET /v1/window`, with the drift token)
so the run can use the data that drifted. The HTTP side is `mainsail.retrain.server`.

Alert labels are the caller's words: the trigger only acts on a `model` label in its allow-list
(the project's name and `monitor.trigger.models`) and a `version` label of digits (a registry
version); anything else is acknowledged as `ignored` and writes nothing. No path or URL is built
from a label: the window comes from `monitor.trigger.sidecar_url` only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from mainsail.config.monitor import RetrainTriggerConfig
from mainsail.retrain.actions import RetrainAction, RetrainRequest, build_action

__all__ = ["PayloadError", "RetrainTrigger", "state_dir_for"]

log = logging.getLogger("mainsail.trigger")

STATE_FILE = "trigger-state.json"
MAX_BODY_BYTES = 1024 * 1024
_VERSION = re.compile(r"[0-9]{1,9}")


class PayloadError(ValueError):
    """A webhook body that is not an Alertmanager notification; the message says what is wrong."""


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
        models: frozenset[str] | set[str] | None = None,
        token: str | None = None,
        drift_token: str | None = None,
    ) -> None:
        self.cfg = cfg
        #: Models the trigger may retrain (the alert's `model` label must be one of them).
        self.models = frozenset(models or ()) | frozenset(cfg.models)
        #: Bearer token of `POST /alerts` and `GET /v1/runs` (None: both refused).
        self.token = token or None
        self.drift_token = drift_token or None
        self.state_dir = state_dir
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.metrics = _Metrics()
        # Re-entrant: an action may report its end from inside the call that started it.
        self._lock = threading.RLock()
        self.state = self._load_state()
        if action is None and cfg.action == "rayjob":
            from mainsail.retrain.rayjob import RayJobAction

            action = RayJobAction(cfg.rayjob, cfg.command, config_path=config_path)
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
        model = labels.get("model", "")
        version = labels.get("version", "")
        if model not in self.models:
            return decided("ignored", reason="model label not in the trigger's allow-list")
        if _VERSION.fullmatch(version) is None:
            return decided("ignored", reason="version label is not a registry version number")
        known = self.state["incidents"].get(incident)
        if status == "resolved":
            if known is not None:
                known["resolved"] = _now_iso()
                self._save()
            return decided("resolved")
        if known is not None and known["status"] in ("starting", "started"):
            return decided("duplicate", run_id=known.get("run_id"))
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
        run_id = f"{model}-{version}-{stamp}-{seq:04d}"  # allow-listed parts: a safe file name
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

        window, window_error = self._fetch_window(model, version, run_id)
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
        self, model: str, version: str, run_id: str
    ) -> tuple[Path | None, str | None]:
        base = self.cfg.sidecar_url
        if not base:
            return None, "no sidecar URL (monitor.trigger.sidecar_url)"
        query = urllib.parse.urlencode({"model": model, "version": version})
        url = f"{base.rstrip('/')}/v1/window?{query}"
        request = urllib.request.Request(url)
        if self.drift_token:
            request.add_header("Authorization", f"Bearer {self.drift_token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                data = resp.read()
        except (urllib.error.URLError, OSError) as err:
            log.warning("could not fetch the drifted window from %s: %s", url, err)
            return None, f"GET {url}: {err}"
        folder = (self.state_dir / "windows").resolve()
        path = folder / f"{run_id}.parquet"
        if path.parent != folder:  # run ids are built from allow-listed parts; belt and braces
            return None, f"refusing to write outside {folder}"
        folder.mkdir(parents=True, exist_ok=True)
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


def state_dir_for(cfg: RetrainTriggerConfig, config_file: Path | None) -> Path:
    """`monitor.trigger.state_dir`, relative to the config file's folder unless absolute."""
    if cfg.state_dir.is_absolute() or config_file is None:
        return cfg.state_dir
    return (config_file.resolve().parent / cfg.state_dir).resolve()
