"""Config section: Prometheus, Alertmanager, retrain trigger, A/B analysis and promotion."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from mainsail.config.base import StrictModel
from mainsail.core import naming

#: A Prometheus duration such as `30s`, `5m`, `1h30m`.
DURATION_PATTERN = r"^([0-9]+(ms|s|m|h|d|w|y))+$"


class AlertRulesConfig(StrictModel):
    """Thresholds and durations of the alert rules (rendered into Prometheus rule files)."""

    drift_windows: int = Field(default=3, ge=1, le=100)
    """Drift alerts only after this many consecutive drifted checks (one window is not enough)."""
    drift_for: str = Field(default="5m", pattern=DURATION_PATTERN)
    """... and only after the condition held this long."""
    rate_window: str = Field(default="5m", pattern=DURATION_PATTERN)
    """Range of `rate()` in the error-rate, latency and canary rules."""
    error_rate: float = Field(default=0.05, gt=0.0, lt=1.0)
    """Share of failed requests per variant above which the error-rate alert fires."""
    error_for: str = Field(default="5m", pattern=DURATION_PATTERN)
    """How long the error rate must stay high."""
    latency_p99_s: float = Field(default=0.5, gt=0.0)
    """p99 request latency per variant (seconds) above which the latency alert fires."""
    latency_for: str = Field(default="10m", pattern=DURATION_PATTERN)
    """How long the p99 latency must stay high."""
    feature_stale_s: float = Field(default=3600.0, gt=0.0)
    """Age of the newest online feature value (seconds) above which features count as stale."""
    stale_for: str = Field(default="10m", pattern=DURATION_PATTERN)
    """How long features must stay stale."""
    sidecar_down_for: str = Field(default="1m", pattern=DURATION_PATTERN)
    """How long the drift sidecar's scrape must fail before the sidecar-down alert."""
    canary_error_margin: float = Field(default=0.02, ge=0.0, lt=1.0)
    """The canary is worse when its error rate exceeds the champion's by more than this."""
    canary_latency_ratio: float = Field(default=1.5, gt=1.0)
    """... or when its p99 latency exceeds the champion's times this."""
    canary_min_rps: float = Field(default=0.05, ge=0.0)
    """Canary comparisons need at least this many requests per second on each variant."""
    canary_for: str = Field(default="10m", pattern=DURATION_PATTERN)
    """How long the canary must stay worse."""
    feature_drift_for: str = Field(default="15m", pattern=DURATION_PATTERN)
    """How long one feature must stay drifted (corrected p-value significant AND distance at
    least its floor) before the per-feature (info) alert."""
    srm_for: str = Field(default="0s", pattern=DURATION_PATTERN)
    """How long a sample-ratio mismatch must hold before its alert (the controller's test is
    already sequential and the experiment is paused at once)."""
    shadow_for: str = Field(default="0s", pattern=DURATION_PATTERN)
    """How long a failed shadow gate is shown before its alert."""
    performance_margin: float = Field(default=0.05, gt=0.0, lt=1.0)
    """The label-free estimate of accuracy, F1 or ROC AUC alerts when it falls below the model
    card's validated value by more than this (absolute)."""
    performance_error_margin: float = Field(default=0.25, gt=0.0)
    """... of MAE or RMSE (regression) when it rises above the validated value by more than
    this share of it."""
    performance_for: str = Field(default="15m", pattern=DURATION_PATTERN)
    """How long the estimate must stay beyond the margin."""
    champion_variant: str = "champion"
    """`variant` label value of the champion in the router's metrics."""
    canary_variant: str = "challenger"
    """`variant` label value of the canary (challenger) in the router's metrics."""


class RayJobActionConfig(StrictModel):
    """The trigger's `rayjob` action: each retraining run is a KubeRay RayJob on a RayCluster."""

    cluster: str | None = None
    """Name of the RayCluster that runs the job (the chart's is `<release>-ray`)."""
    namespace: str = Field(default="mainsail", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    """Namespace of the RayCluster and of the RayJobs."""
    entrypoint: str | None = None
    """Shell command the job runs on the Ray head; `{model}`, `{version}`, `{alert}` and
    `{run_id}` are filled in. `command` (joined) when null."""


class RetrainTriggerConfig(StrictModel):
    """The Alertmanager webhook receiver that starts retraining runs."""

    host: str = "127.0.0.1"
    """Address the trigger's HTTP server binds to."""
    port: int = Field(default=8020, ge=0, le=65535)
    """TCP port of the trigger; 0 picks a free port."""
    alerts: list[str] = Field(default_factory=lambda: ["MainsailDriftSustained"])
    """Alert names that start a retraining run (others are acknowledged and ignored)."""
    cooldown_s: float = Field(default=3600.0, ge=0.0)
    """After a run starts for a model, further alerts for it start nothing for this long."""
    state_dir: Path = Path("monitor-state")
    """Folder of the trigger's persisted state and the drifted windows it saved, relative to
    the config file's folder unless absolute."""
    action: Literal["command", "kfp", "rayjob"] = "command"
    """`command` runs `command` locally; `kfp` submits the compiled pipeline to `kfp_host`;
    `rayjob` creates a KubeRay RayJob (`rayjob`) through the Kubernetes API."""
    command: list[str] = Field(default_factory=lambda: ["mainsail", "run", "{config}"])
    """Local retraining command; `{config}`, `{model}`, `{version}`, `{window}` (parquet of the
    drifted window, also in the env as MAINSAIL_DRIFT_WINDOW) and `{alert}` are filled in."""
    kfp_host: str | None = None
    """Kubeflow Pipelines API host; with `action: kfp` each retraining run is a KFP run."""
    kfp_pipeline: Path | None = None
    """Compiled pipeline IR YAML submitted for a KFP retraining run."""
    kfp_experiment: str = "mainsail-retrain"
    """KFP experiment that receives the retraining runs."""
    rayjob: RayJobActionConfig = Field(default_factory=RayJobActionConfig)
    """With `action: rayjob`: the RayCluster, namespace and entrypoint of each RayJob."""
    sidecar_url: str | None = None
    """Base URL of the drift sidecar to fetch the drifted window from (with the drift token,
    `drift.token_env`); when empty no window is fetched. Alert labels never choose a URL."""
    token_env: str = Field(default=naming.ENV_TRIGGER_TOKEN, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Environment variable holding the bearer token that `POST /alerts` and `GET /v1/runs`
    require (Alertmanager sends it through its webhook's `http_config.authorization`); both are
    refused while it is unset or empty."""
    models: list[str] = Field(default_factory=list)
    """Model names (the alerts' `model` label) the trigger may retrain besides the project's
    own (`name`); an alert for any other model is acknowledged and ignored."""

    @field_validator("command")
    @classmethod
    def _command_not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("monitor.trigger.command must name a program")
        return value


class MonitorConfig(StrictModel):
    """Prometheus, Alertmanager, retrain trigger, A/B analysis and promotion."""

    prometheus_port: int = Field(default=9090, ge=0, le=65535)
    """TCP port of the local Prometheus; 0 picks a free port."""
    alertmanager_port: int = Field(default=9093, ge=0, le=65535)
    """TCP port of the local Alertmanager; 0 picks a free port."""
    scrape_interval: str = Field(default="15s", pattern=DURATION_PATTERN)
    """How often Prometheus scrapes every target."""
    evaluation_interval: str = Field(default="15s", pattern=DURATION_PATTERN)
    """How often Prometheus evaluates the alert rules."""
    group_wait: str = Field(default="30s", pattern=DURATION_PATTERN)
    """Alertmanager: wait before the first notification of a new alert group."""
    group_interval: str = Field(default="5m", pattern=DURATION_PATTERN)
    """Alertmanager: wait before notifying about new alerts of a group already notified."""
    repeat_interval: str = Field(default="4h", pattern=DURATION_PATTERN)
    """Alertmanager: resend a still-firing group after this long."""
    rules: AlertRulesConfig = Field(default_factory=AlertRulesConfig)
    """Alert rule thresholds and durations."""
    trigger: RetrainTriggerConfig = Field(default_factory=RetrainTriggerConfig)
    """Retrain trigger (Alertmanager webhook receiver)."""
