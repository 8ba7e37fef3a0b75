"""What the retrain trigger starts: a retraining run per incident.

The action is pluggable: any callable `(RetrainRequest) -> RunInfo`. Built in: a local command
(default `mainsail run CONFIG`, with the drifted window saved as parquet) and a Kubeflow
Pipelines run (:func:`build_action` picks the one `monitor.trigger.action` names).
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mainsail.config.monitor import RetrainTriggerConfig

__all__ = [
    "CommandAction",
    "KFPAction",
    "RetrainAction",
    "RetrainRequest",
    "RunInfo",
    "build_action",
    "describe",
]


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


def describe(request: RetrainRequest) -> dict[str, Any]:
    """A request as JSON (for logs and tests)."""
    out = asdict(request)
    out["window"] = str(request.window) if request.window else None
    return out
