"""`mainsail up / status / down`: the local stack's commands.

Mount them at the top level with :func:`register` (`register(app)` in mainsail.cli), or use the
Typer :data:`app` as a group. Each command reads the config once and calls
:mod:`mainsail.stack.manager`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from mainsail.cli.common import EnvOpt
from mainsail.config import ConfigError, ProjectConfig, load_config
from mainsail.stack.process import StackError

app = typer.Typer(help="Local stack: SeaweedFS, MLServer, router, Feast.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)

ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", help="Project config (YAML).", show_default=True)
]
DEFAULT_CONFIG = Path("configs/churn.yaml")


def _config(path: Path, env: str | None = None) -> ProjectConfig:
    try:
        cfg = load_config(path)
        return cfg if env is None else cfg.for_environment(env)
    except ConfigError as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False)
        raise typer.Exit(2) from None


def up(config: ConfigOpt = DEFAULT_CONFIG, env: EnvOpt = None) -> None:
    """Start the local stack and wait until every process is healthy."""
    from mainsail.stack.manager import up as start_stack

    cfg = _config(config, env)
    token_env = cfg.stack.router.token_env
    if not os.environ.get(token_env):
        err_console.print(
            f"[yellow]warning:[/] {token_env} is not set: the router's admin API stays disabled "
            "and `mainsail deploy --backend local` cannot change the split",
            highlight=False,
        )
    try:
        started = start_stack(cfg, log=lambda line: console.print(f"[green]✓[/] {line}"))
    except StackError as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False)
        raise typer.Exit(1) from None
    console.print(f"stack up: {len(started)} processes; `mainsail status` shows them")


def down(config: ConfigOpt = DEFAULT_CONFIG, env: EnvOpt = None) -> None:
    """Stop exactly the processes `mainsail up` started."""
    from mainsail.stack.manager import down as stop_stack

    cfg = _config(config, env)
    try:
        results = stop_stack(cfg)
    except StackError as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False)
        raise typer.Exit(1) from None
    if not results:
        console.print("nothing to stop: the stack is not running")
    for name, outcome in results:
        console.print(f"{name}: {outcome}")


def status(config: ConfigOpt = DEFAULT_CONFIG, env: EnvOpt = None) -> None:
    """Show each stack process, its port and health; exit 1 when any is not healthy."""
    from mainsail.stack.manager import status as stack_status

    cfg = _config(config, env)
    try:
        rows = stack_status(cfg)
    except StackError as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False)
        raise typer.Exit(1) from None
    if not rows:
        console.print("the stack is not running (`mainsail up` starts it)")
        raise typer.Exit(1)
    table = Table(title=f"mainsail stack ({cfg.stack.data_dir})")
    for column in ("process", "pid", "port", "health", "health URL"):
        table.add_column(column)
    colours = {"healthy": "green", "running": "green", "dead": "red"}
    for row in rows:
        colour = colours.get(row["health"], "yellow")
        table.add_row(
            row["name"],
            str(row["pid"]),
            str(row["port"] or "-"),
            f"[{colour}]{row['health']}[/]",
            row["health_url"] or "-",
        )
    console.print(table)
    if any(row["health"] not in ("healthy", "running") for row in rows):
        raise typer.Exit(1)


def register(parent: typer.Typer) -> None:
    """Add `up`, `down` and `status` as top-level commands of `parent`."""
    parent.command("up")(up)
    parent.command("down")(down)
    parent.command("status")(status)


app.command("up")(up)
app.command("down")(down)
app.command("status")(status)
