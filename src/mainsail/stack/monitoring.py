"""Prometheus, Alertmanager and the retrain trigger in the local stack (`mainsail up`).

Registered as stack providers (see :mod:`mainsail.stack.providers`). Their configs are generated
into `<stack data dir>/monitoring/` at each `up`: Prometheus scrapes the router, both MLServers,
the drift sidecar, the trigger, the promotion controller (`promotion.metrics_port`), Alertmanager
and itself; Alertmanager calls the trigger.
"""

from __future__ import annotations

import sys

import yaml

from mainsail.monitor.local import alertmanager_argv, prometheus_argv
from mainsail.monitor.prometheus import (
    ScrapeTarget,
    alertmanager_config,
    local_targets,
    prometheus_config,
    write_yaml,
)
from mainsail.monitor.rules import render_rules
from mainsail.stack.process import ProcessSpec
from mainsail.stack.providers import StackContext, register_provider, stack_token


def monitoring_specs(ctx: StackContext) -> list[ProcessSpec]:
    """Alertmanager, the retrain trigger and Prometheus, with freshly generated configs."""
    cfg = ctx.config
    mon = cfg.monitor
    host = ctx.host
    folder = ctx.data_dir / "monitoring"
    folder.mkdir(parents=True, exist_ok=True)
    trigger_url = f"http://{host}:{mon.trigger.port}"

    (folder / "rules.yml").write_text(render_rules(mon.rules))
    extra = [
        ScrapeTarget("mainsail-router", [f"{host}:{cfg.stack.router.port}"]),
        ScrapeTarget(
            "mlserver",
            [f"{host}:{cfg.stack.champion.metrics}", f"{host}:{cfg.stack.challenger.metrics}"],
        ),
    ]
    targets = local_targets(
        mon,
        host=host,
        drift_port=cfg.drift.port,
        promotion_port=cfg.promotion.metrics_port,
        extra=extra,
    )
    write_yaml(
        folder / "prometheus.yml",
        prometheus_config(
            mon,
            targets,
            rule_files=["rules.yml"],
            alertmanagers=[f"{host}:{mon.alertmanager_port}"],
        ),
    )
    # Alertmanager authenticates to the trigger with the stack's token, read from a 0600 file.
    from mainsail.core.files import write_private

    trigger_token = stack_token(ctx, "trigger", mon.trigger.token_env)
    credentials = write_private(folder / "trigger.token", trigger_token)
    write_yaml(
        folder / "alertmanager.yml",
        alertmanager_config(mon, f"{trigger_url}/alerts", credentials_file=credentials),
    )
    # The trigger fills `{config}` with this copy of the project config (paths are absolute);
    # it fetches drifted windows from the stack's sidecar, never from a URL an alert names.
    project = folder / "project.yaml"
    dumped = cfg.model_dump(mode="json")
    if not mon.trigger.sidecar_url:
        dumped["monitor"]["trigger"]["sidecar_url"] = f"http://{host}:{cfg.drift.port}"
    project.write_text(yaml.safe_dump(dumped, sort_keys=False))
    state_dir = (
        mon.trigger.state_dir
        if mon.trigger.state_dir.is_absolute()
        else ctx.data_dir / mon.trigger.state_dir
    )
    return [
        ProcessSpec(
            name="alertmanager",
            argv=alertmanager_argv(
                folder / "alertmanager.yml",
                folder / "alertmanager-data",
                host,
                mon.alertmanager_port,
            ),
            port=mon.alertmanager_port,
            health_url=f"http://{host}:{mon.alertmanager_port}/-/ready",
            cwd=str(folder),
        ),
        ProcessSpec(
            name="retrain-trigger",
            argv=[
                sys.executable,
                "-m",
                "mainsail.cli.trigger",
                "serve",
                str(project),
                "--host",
                host,
                "--port",
                str(mon.trigger.port),
                "--state-dir",
                str(state_dir),
            ],
            env={
                mon.trigger.token_env: trigger_token,
                cfg.drift.token_env: stack_token(ctx, "drift", cfg.drift.token_env),
            },
            port=mon.trigger.port,
            health_url=f"{trigger_url}/healthz",
            cwd=str(folder),
        ),
        ProcessSpec(
            name="prometheus",
            argv=prometheus_argv(
                folder / "prometheus.yml", folder / "prometheus-data", host, mon.prometheus_port
            ),
            port=mon.prometheus_port,
            health_url=f"http://{host}:{mon.prometheus_port}/-/ready",
            cwd=str(folder),
        ),
    ]


register_provider("monitoring", monitoring_specs, order=60)
