"""`mainsail data …`: the training-data snapshots of runs: show, diff, reproduce.

A run folder's lineage.json names its snapshot (sha256); the snapshot is read from the registry
of the run's own config.json (`--endpoint` or MAINSAIL_S3_ENDPOINT override its endpoint;
without either, the local stack's SeaweedFS).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from mainsail.cli.common import fail
from mainsail.cli.models import EndpointOpt, JsonOpt

app = typer.Typer(help="Training-data snapshots: show, diff, reproduce.", no_args_is_help=True)
_console = Console()

RunArg = Annotated[Path, typer.Argument(help="Run folder (runs/<name>-<time>-<digest>).")]


def _store(run_dir: Path, endpoint: str | None) -> Any:
    """The snapshot store of the registry named by the run's config.json."""
    from mainsail.config import ConfigError, config_from_json
    from mainsail.registry import open_registry
    from mainsail.registry.errors import RegistryError
    from mainsail.registry.snapshots import SnapshotStore

    config_path = run_dir / "config.json"
    try:
        cfg = config_from_json(config_path.read_text())
        registry = open_registry(cfg, endpoint=endpoint)
    except FileNotFoundError:
        raise fail(f"{run_dir} is not a run folder: it has no config.json") from None
    except (ConfigError, RegistryError) as err:
        raise fail(f"{config_path}: {err}") from None
    return SnapshotStore(registry, cfg.snapshots.prefix)


def _guard(action: Any) -> Any:
    """Run `action`, turning bad input and an unreachable store into one error line."""
    from mainsail.lifecycle.snapshot import SnapshotError
    from mainsail.registry.errors import RegistryError, store_error_message

    try:
        return action()
    except (SnapshotError, RegistryError, OSError) as err:
        raise fail(str(err), code=1) from None
    except Exception as err:
        message = store_error_message(err)
        if message is None:
            raise
        raise fail(message, code=1) from None


def _emit(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


@app.command("show")
def show(run: RunArg, endpoint: EndpointOpt = None, as_json: JsonOpt = False) -> None:
    """The run's training-data snapshot: where it is, its schema, rows and column summaries."""
    from mainsail.lifecycle.snapshot import show_snapshot

    info = _guard(lambda: show_snapshot(run, _store(run, endpoint)))
    if as_json:
        _emit(info)
        return
    _console.print(
        f"[bold]{info['run']}[/]: {info['rows']} rows, {len(info['columns'])} columns, "
        f"sha256 {info['sha256']}\n{info['uri']}",
        highlight=False,
    )
    table = Table("column", "dtype", "missing", "summary")
    for name, col in info["columns"].items():
        rest = {k: v for k, v in col.items() if k not in ("dtype", "missing")}
        table.add_row(name, col["dtype"], str(col["missing"]), json.dumps(rest, default=str))
    _console.print(table)


@app.command("diff")
def diff(
    run_a: RunArg, run_b: RunArg, endpoint: EndpointOpt = None, as_json: JsonOpt = False
) -> None:
    """What changed from RUN_A's training data to RUN_B's: schema, row counts, column summaries."""
    from mainsail.lifecycle.snapshot import diff_snapshots

    result = _guard(lambda: diff_snapshots(run_a, run_b, _store(run_a, endpoint)))
    if as_json:
        _emit(result)
        return
    if result["same_data"]:
        _console.print(f"same data (sha256 {result['a']['sha256']})", highlight=False)
        return
    rows = result["rows"]
    _console.print(
        f"rows: {rows['before']} → {rows['after']} ({rows['change']:+d})\n"
        f"added columns: {', '.join(result['added_columns']) or 'none'}\n"
        f"removed columns: {', '.join(result['removed_columns']) or 'none'}",
        highlight=False,
    )
    table = Table("column", "field", "before", "after")
    for name, fields in result["dtype_changes"].items():
        table.add_row(name, "dtype", *fields)
    for name, fields in result["changed_columns"].items():
        for field, (before, after) in fields.items():
            if field != "dtype":
                table.add_row(name, field, json.dumps(before), json.dumps(after))
    _console.print(table)


@app.command("reproduce")
def reproduce(
    run: RunArg,
    runs_dir: Annotated[
        Path | None,
        typer.Option(help="Where the new run goes; default: beside RUN."),
    ] = None,
    endpoint: EndpointOpt = None,
) -> None:
    """Run RUN again from its config.json and its data snapshot alone; say whether model.joblib
    and metrics.json came out byte-identical."""
    from mainsail.cli.common import user_errors
    from mainsail.lifecycle.snapshot import reproduce as reproduce_run

    store = _store(run, endpoint)
    try:
        result = _guard(lambda: reproduce_run(run, store, runs_dir or run.parent))
    except user_errors() as err:
        raise fail(str(err)) from None
    _console.print(f"[bold green]reproduced:[/] {result.run_dir}", highlight=False)
    same = True
    for name in ("model/model.joblib", "model/metrics.json"):
        before, after = run / name, result.run_dir / name
        if before.exists() or after.exists():
            equal = before.exists() and after.exists() and before.read_bytes() == after.read_bytes()
            same = same and equal
            _console.print(f"{name}: {'identical' if equal else 'DIFFERENT'}", highlight=False)
    if not same:
        raise typer.Exit(1)
