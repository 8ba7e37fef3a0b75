"""`mainsail promote-env MODEL --from staging --to production`: move a version between
environments through the target's gate (see `mainsail.promotion.environments`).

Mount with :func:`register` (a top-level command).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from mainsail.cli.common import fail, read_config
from mainsail.cli.models import EndpointOpt, JsonOpt

console = Console()


def promote_env(
    model: Annotated[str, typer.Argument(help="Model name (the config's `name`).")],
    to: Annotated[str, typer.Option("--to", help="Target environment, e.g. production.")],
    source: Annotated[
        str | None,
        typer.Option(
            "--from", help="Source environment, e.g. staging: its version and its evidence."
        ),
    ] = None,
    version: Annotated[
        int | None,
        typer.Option("--version", "-v", help="Version to move (default: the source's)."),
    ] = None,
    config: Annotated[Path, typer.Option("--config", "-c", help="Project config.")] = Path(
        "configs/churn.yaml"
    ),
    endpoint: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Move a version of MODEL into the environment --to when its gate passes: a complete model
    card, a metric CI beyond the target champion's, latency and throughput measured in --from
    within the card's budget, a passed shadow or canary in --from. Every move and refusal is
    written to the target's decision log; a refusal exits 1 and names its reasons."""
    from mainsail.promotion.environments import EnvironmentPromotionError, promote_environment
    from mainsail.registry import RegistryError, open_registry
    from mainsail.registry.errors import store_error_message

    cfg = read_config(config)
    if model != cfg.name:
        raise fail(f"{config} configures model {cfg.name!r}, not {model!r}")
    try:
        registry = open_registry(cfg, endpoint=endpoint)
        move = promote_environment(cfg, registry, model, source, to, version=version)
    except EnvironmentPromotionError as err:
        raise fail(str(err)) from None
    except Exception as err:
        message = store_error_message(err)
        if message is None and not isinstance(err, RegistryError):
            raise
        raise fail(message or str(err), code=1) from None
    if as_json:
        typer.echo(json.dumps(move.to_dict(), indent=2, sort_keys=True))
    else:
        table = Table("check", "result", "detail")
        for check in move.checks:
            table.add_row(check.name, "pass" if check.passed else "FAIL", check.detail)
        console.print(table)
        where = f"{source} → " if source else ""
        if move.moved:
            console.print(
                f"[bold green]moved:[/] {model} v{move.version} {where}{to} (alias {move.alias})",
                highlight=False,
            )
        else:
            console.print(
                f"[bold red]refused:[/] {model} v{move.version} {where}{to}: "
                + "; ".join(move.reasons),
                highlight=False,
            )
    if not move.moved:
        raise typer.Exit(1)


def register(parent: typer.Typer) -> None:
    """Add `promote-env` as a top-level command of `parent`."""
    parent.command("promote-env")(promote_env)
