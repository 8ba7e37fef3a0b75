"""`mainsail trigger …`: the retrain trigger (Alertmanager webhook receiver).

mainsail trigger serve CONFIG [--host H] [--port P] [--state-dir DIR] [--set KEY=VALUE ...]
mainsail trigger runs CONFIG           # what the trigger started, from its state file
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from mainsail.cli.common import SetOpt, parse_overrides
from mainsail.config import ConfigError, load_config

app = typer.Typer(
    help="Retrain trigger: turns firing drift alerts into retraining runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigArg = Annotated[Path, typer.Argument(help="Project config (YAML).", show_default=False)]


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(2)


@app.command()
def serve(
    config: ConfigArg,
    host: Annotated[str | None, typer.Option(help="Bind address (monitor.trigger.host).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (monitor.trigger.port).")] = None,
    state_dir: Annotated[
        Path | None, typer.Option(help="State folder (monitor.trigger.state_dir).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "INFO",
    set_: SetOpt = None,
) -> None:
    """Receive Alertmanager webhooks on POST /alerts and start retraining runs."""
    from mainsail.retrain.server import TriggerServer
    from mainsail.retrain.trigger import RetrainTrigger, state_dir_for

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        cfg = load_config(config, parse_overrides(set_))
    except ConfigError as err:
        raise _fail(str(err)) from None
    tcfg = cfg.monitor.trigger
    folder = state_dir or state_dir_for(tcfg, config)
    import os

    token = os.environ.get(tcfg.token_env)
    if not token:
        typer.secho(
            f"warning: {tcfg.token_env} is not set: POST /alerts and GET /v1/runs stay refused",
            err=True,
            fg=typer.colors.YELLOW,
        )
    try:
        trigger = RetrainTrigger(
            tcfg,
            folder,
            config_path=config.resolve(),
            models={cfg.name},
            token=token,
            drift_token=os.environ.get(cfg.drift.token_env),
        )
        server = TriggerServer(trigger, host or tcfg.host, tcfg.port if port is None else port)
    except (ValueError, OSError) as err:
        raise _fail(str(err)) from None
    typer.echo(f"mainsail retrain trigger listening on {server.url} (state: {folder})")
    server.serve_forever()


@app.command()
def runs(
    config: ConfigArg,
    state_dir: Annotated[Path | None, typer.Option(help="State folder.")] = None,
) -> None:
    """Print the retraining runs the trigger started (JSON)."""
    from mainsail.retrain.trigger import STATE_FILE, state_dir_for

    try:
        cfg = load_config(config)
    except ConfigError as err:
        raise _fail(str(err)) from None
    path = (state_dir or state_dir_for(cfg.monitor.trigger, config)) / STATE_FILE
    if not path.exists():
        typer.echo("{}")
        return
    typer.echo(json.dumps(json.loads(path.read_text()).get("runs", {}), indent=2))


if __name__ == "__main__":  # the local stack runs `python -m mainsail.cli.trigger serve …`
    app()
