"""`mainsail deploy MODEL [--canary 10 | --shadow] [--backend local|kubernetes] [--dry-run]`.

Mount with :func:`register` (a top-level command) or use :data:`app`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mainsail.cli.common import EnvOpt
from mainsail.config import ConfigError, load_config

app = typer.Typer(help="Deploy a model version as canary.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)


def deploy(
    model: Annotated[str, typer.Argument(help="Model name (the config's `name`).")],
    canary: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=100,
            help="Percent of traffic for the challenger (skips the shadow stage).",
        ),
    ] = None,
    shadow: Annotated[
        bool | None,
        typer.Option(
            "--shadow/--no-shadow",
            help="Start in the shadow: weight 0, every request mirrored to the challenger "
            "(default: promotion.shadow.enabled, unless --canary is given).",
        ),
    ] = None,
    version: Annotated[
        str, typer.Option("--version", "-v", help="Version number, `latest` or an alias.")
    ] = "latest",
    backend: Annotated[
        str | None, typer.Option(help="local or kubernetes (default: stack.backend).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Change nothing; print the YAML / the plan.")
    ] = False,
    mirror: Annotated[
        str | None, typer.Option(help="Also mirror traffic to this version (kubernetes).")
    ] = None,
    measure_s: Annotated[
        float,
        typer.Option(help="Local: seconds of load to fill the model card's deployment fields."),
    ] = 0.0,
    measure_request: Annotated[
        Path | None, typer.Option(help="Local: V2 request JSON used for the load run.")
    ] = None,
    config: Annotated[Path, typer.Option("--config", "-c", help="Project config.")] = Path(
        "configs/churn.yaml"
    ),
    env: EnvOpt = None,
) -> None:
    """Move the challenger alias to VERSION of MODEL and send it CANARY percent of traffic, or
    put it in the shadow (the ramp's first stage: it answers mirrored copies only). With --env,
    the environment's aliases, stack folder (where --measure-s writes the measured card that
    `mainsail promote-env` checks) and namespace."""
    from mainsail.deploy.kubernetes import DeployError
    from mainsail.deploy.service import deploy as run_deploy

    try:
        cfg = load_config(config)
        cfg = cfg if env is None else cfg.for_environment(env)
    except ConfigError as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False)
        raise typer.Exit(2) from None
    if model != cfg.name:
        err_console.print(
            f"[bold red]error:[/] {config} configures model {cfg.name!r}, not {model!r}",
            highlight=False,
        )
        raise typer.Exit(2)
    body = json.loads(measure_request.read_text()) if measure_request else None
    if measure_s > 0 and body is None:
        err_console.print(
            "[bold red]error:[/] --measure-s needs --measure-request", highlight=False
        )
        raise typer.Exit(2)
    if shadow and canary is not None:
        err_console.print(
            "[bold red]error:[/] --shadow and --canary exclude each other", highlight=False
        )
        raise typer.Exit(2)
    if shadow is None:
        shadow = canary is None and mirror is None and cfg.promotion.shadow.enabled
    ref: str | int = int(version) if version.isdigit() else version
    try:
        result = run_deploy(
            cfg,
            ref,
            10 if canary is None else canary,
            backend=backend,
            dry_run=dry_run,
            mirror=mirror,
            shadow=shadow,
            measure_s=measure_s,
            measure_body=body,
            log=lambda line: console.print(f"[green]✓[/] {line}"),
        )
    except Exception as err:
        from mainsail.registry import RegistryError
        from mainsail.registry.errors import store_error_message
        from mainsail.stack.process import StackError

        message = store_error_message(err)
        if message is not None or isinstance(err, DeployError | RegistryError | StackError):
            err_console.print(f"[bold red]error:[/] {message or err}", highlight=False)
            raise typer.Exit(1) from None
        raise
    if result.yaml is not None and dry_run:
        typer.echo(result.yaml, nl=False)
    elif dry_run:
        for line in result.actions:
            console.print(line)


def register(parent: typer.Typer) -> None:
    """Add `deploy` as a top-level command of `parent`."""
    parent.command("deploy")(deploy)


app.command("deploy")(deploy)
