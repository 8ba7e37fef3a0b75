"""The drift-to-retraining chain on this machine: sidecar, Prometheus, Alertmanager, trigger.

:class:`MonitoringChain` starts the four in a work folder with their own free ports and short
intervals (seconds, not minutes), wires them together and stops them again. The integration
test and `mainsail monitoring demo-drift` both use it. Prometheus also scrapes any `extra`
targets (the router, the feature server) when given.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from mainsail.config.drift import DriftConfig
from mainsail.config.monitor import AlertRulesConfig, MonitorConfig, RetrainTriggerConfig
from mainsail.core.files import write_private
from mainsail.core.ports import free_port
from mainsail.drift.process import SidecarProcess
from mainsail.monitor.local import LocalAlertmanager, LocalPrometheus
from mainsail.monitor.prometheus import (
    ScrapeTarget,
    alertmanager_config,
    local_targets,
    prometheus_config,
    write_yaml,
)
from mainsail.monitor.rules import render_rules
from mainsail.retrain.actions import RetrainAction
from mainsail.retrain.server import TriggerServer
from mainsail.retrain.trigger import RetrainTrigger

__all__ = ["ChainSettings", "MonitoringChain"]

HOST = "127.0.0.1"


@dataclass
class ChainSettings:
    """Fast defaults: a drift alert can fire within seconds of drifted traffic."""

    reference: str
    """Reference location template of the sidecar (`{model}`, `{version}`)."""
    retrain_command: list[str]
    """Command the trigger runs per retraining run (placeholders as in monitor.trigger.command)."""
    sidecar: dict[str, object] = field(
        default_factory=lambda: {
            "window_rows": 400,
            "min_rows": 200,
            "check_every_rows": 200,
            "check_interval_s": 3600,
            # The trigger hands the drifted window to the retraining run.
            "window_export": True,
        }
    )
    """Drift settings of the sidecar (`--set` values)."""
    rules: AlertRulesConfig = field(
        default_factory=lambda: AlertRulesConfig(
            drift_windows=2, drift_for="2s", sidecar_down_for="2s", rate_window="30s"
        )
    )
    """Alert rules; `for` durations of seconds."""
    cooldown_s: float = 3600.0
    """Trigger cool-down."""
    extra_targets: Sequence[ScrapeTarget] = ()
    """More scrape jobs (router, feature server...)."""
    action: RetrainAction | None = None
    """A Python callable instead of `retrain_command`."""
    models: Sequence[str] = ("churn",)
    """Models the trigger may retrain (its allow-list)."""


class MonitoringChain:
    """Start with `with MonitoringChain(workdir, settings) as chain: ...`."""

    def __init__(self, workdir: Path, settings: ChainSettings) -> None:
        self.workdir = workdir
        self.settings = settings
        workdir.mkdir(parents=True, exist_ok=True)
        ports = {k: free_port(HOST) for k in ("sidecar", "prom", "am")}
        #: Tokens of the trigger (Alertmanager sends it) and the sidecar (the trigger sends it).
        self.trigger_token = secrets.token_hex(16)
        self.drift_token = secrets.token_hex(16)
        self.trigger = RetrainTrigger(
            RetrainTriggerConfig(
                command=settings.retrain_command,
                cooldown_s=settings.cooldown_s,
                sidecar_url=f"http://{HOST}:{ports['sidecar']}",
            ),
            workdir / "trigger",
            action=settings.action,
            models=set(settings.models),
            token=self.trigger_token,
            drift_token=self.drift_token,
        )
        self.trigger_server = TriggerServer(self.trigger, HOST, 0)
        trigger_port = int(self.trigger_server.url.rsplit(":", 1)[1])
        self.config = MonitorConfig(
            prometheus_port=ports["prom"],
            alertmanager_port=ports["am"],
            scrape_interval="1s",
            evaluation_interval="1s",
            group_wait="1s",
            group_interval="2s",
            repeat_interval="3s",
            rules=settings.rules,
            trigger=RetrainTriggerConfig(port=trigger_port),
        )
        prom_dir = workdir / "prometheus"
        prom_dir.mkdir(exist_ok=True)
        (prom_dir / "rules.yml").write_text(render_rules(settings.rules))
        targets = local_targets(
            self.config, host=HOST, drift_port=ports["sidecar"], extra=settings.extra_targets
        )
        write_yaml(
            prom_dir / "prometheus.yml",
            prometheus_config(
                self.config,
                targets,
                rule_files=["rules.yml"],
                alertmanagers=[f"{HOST}:{ports['am']}"],
            ),
        )
        credentials = write_private(workdir / "trigger.token", self.trigger_token)
        write_yaml(
            workdir / "alertmanager.yml",
            alertmanager_config(
                self.config, f"{self.trigger_server.url}/alerts", credentials_file=credentials
            ),
        )
        self.sidecar = SidecarProcess(
            reference=settings.reference,
            port=ports["sidecar"],
            log=workdir / "sidecar.log",
            settings=settings.sidecar,
            env={**os.environ, DriftConfig().token_env: self.drift_token},
        )
        self.alertmanager = LocalAlertmanager(
            workdir / "alertmanager.yml", workdir / "alertmanager", ports["am"]
        )
        self.prometheus = LocalPrometheus(prom_dir / "prometheus.yml", prom_dir, ports["prom"])
        self._started: list[Any] = []

    def start(self) -> MonitoringChain:
        try:
            self.trigger_server.start()
            self._started.append(self.trigger_server)
            for proc in (self.sidecar, self.alertmanager, self.prometheus):
                proc.start()
                self._started.append(proc)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        while self._started:
            self._started.pop().stop()

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Series of an instant PromQL query."""
        result: list[dict[str, Any]] = self.prometheus.query(expr)["result"]
        return result

    def __enter__(self) -> MonitoringChain:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
