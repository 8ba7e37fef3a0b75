"""Prometheus and Alertmanager configuration for the local stack (and for tests).

:func:`prometheus_config` writes the scrape jobs, rule files and Alertmanager target;
:func:`alertmanager_config` routes alerts labelled `action="retrain"` to the retrain trigger's
webhook and everything else to a receiver that drops them (the local stack has no pager).
Both return plain mappings; :func:`write_yaml` writes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mainsail.config.monitor import MonitorConfig
from mainsail.monitor.rules import DRIFT_JOB

__all__ = [
    "ScrapeTarget",
    "alertmanager_config",
    "local_targets",
    "prometheus_config",
    "write_yaml",
]

TRIGGER_JOB = "mainsail-trigger"
#: Scrape job of the promotion controller (`mainsail promote --watch`).
PROMOTION_JOB = "mainsail-promotion"
RETRAIN_RECEIVER = "mainsail-retrain"


@dataclass(frozen=True)
class ScrapeTarget:
    """One scrape job."""

    job: str
    """`job` label of its series (the rules refer to `mainsail-drift`)."""
    targets: Sequence[str]
    """`host:port` of each instance."""
    metrics_path: str = "/metrics"
    """Path of the metrics endpoint."""
    labels: dict[str, str] = field(default_factory=dict)
    """Extra labels put on every series of the job."""


def prometheus_config(
    cfg: MonitorConfig,
    targets: Sequence[ScrapeTarget],
    *,
    rule_files: Sequence[str | Path] = (),
    alertmanagers: Sequence[str] = (),
) -> dict[str, Any]:
    """The `prometheus.yml` mapping."""
    jobs = sorted({t.job for t in targets})
    if len(jobs) != len(targets):
        raise ValueError("each scrape job must appear once; merge their targets")
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": cfg.scrape_interval,
            "evaluation_interval": cfg.evaluation_interval,
            # Scrapes must finish within the interval; short intervals (tests) need short timeouts.
            "scrape_timeout": cfg.scrape_interval,
        },
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {
                "job_name": t.job,
                "metrics_path": t.metrics_path,
                "static_configs": [
                    {"targets": list(t.targets), **({"labels": dict(t.labels)} if t.labels else {})}
                ],
            }
            for t in targets
        ],
    }
    if alertmanagers:
        config["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]
        }
    return config


def alertmanager_config(
    cfg: MonitorConfig, webhook_url: str, *, credentials_file: str | Path | None = None
) -> dict[str, Any]:
    """The `alertmanager.yml` mapping: retrain alerts to the trigger, the rest dropped.

    The webhook authenticates with `Authorization: Bearer <token>` read from
    `credentials_file` (the trigger refuses calls without it); the default path is where the
    chart mounts the trigger token's Secret into Alertmanager."""
    webhook: dict[str, Any] = {
        "url": webhook_url,
        "send_resolved": True,
        "max_alerts": 0,
        "http_config": {
            "authorization": {
                "type": "Bearer",
                "credentials_file": str(credentials_file or TRIGGER_CREDENTIALS_FILE),
            }
        },
    }
    return {
        "route": {
            "receiver": "default",
            "group_by": ["alertname", "model", "version"],
            "group_wait": cfg.group_wait,
            "group_interval": cfg.group_interval,
            "repeat_interval": cfg.repeat_interval,
            "routes": [
                {
                    "receiver": RETRAIN_RECEIVER,
                    "matchers": ['action="retrain"'],
                    "continue": False,
                }
            ],
        },
        "receivers": [
            {"name": "default"},
            {
                "name": RETRAIN_RECEIVER,
                "webhook_configs": [webhook],
            },
        ],
    }


#: Where Alertmanager reads the trigger's token on a cluster: the chart's Secret
#: `<release>-auth`, key `trigger-token`, mounted into Alertmanager (`alertmanager.secrets`).
TRIGGER_CREDENTIALS_FILE = "/etc/alertmanager/secrets/mainsail-auth/trigger-token"


def local_targets(
    cfg: MonitorConfig,
    *,
    host: str = "127.0.0.1",
    drift_port: int,
    promotion_port: int | None = None,
    extra: Sequence[ScrapeTarget] = (),
) -> list[ScrapeTarget]:
    """Scrape jobs of the local stack: Prometheus, Alertmanager, drift sidecar, trigger, the
    promotion controller (when it serves metrics), `extra`."""
    targets = [
        ScrapeTarget("prometheus", [f"{host}:{cfg.prometheus_port}"]),
        ScrapeTarget("alertmanager", [f"{host}:{cfg.alertmanager_port}"]),
        ScrapeTarget(DRIFT_JOB, [f"{host}:{drift_port}"]),
        ScrapeTarget(TRIGGER_JOB, [f"{host}:{cfg.trigger.port}"]),
    ]
    if promotion_port is not None:
        targets.append(ScrapeTarget(PROMOTION_JOB, [f"{host}:{promotion_port}"]))
    return targets + list(extra)


def write_yaml(path: Path, mapping: dict[str, Any], header: str = "") -> Path:
    """Write a mapping as YAML (atomically: a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(header + yaml.safe_dump(mapping, sort_keys=False, width=100))
    tmp.replace(path)
    return path
