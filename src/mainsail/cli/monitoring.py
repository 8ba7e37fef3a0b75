"""`mainsail monitoring …`: the generated Prometheus, Alertmanager and Grafana artifacts.

mainsail monitoring render [--out monitoring]   # rules, configs, dashboards JSON
mainsail monitoring check [--out monitoring]    # exit 1 when the checked-in files are stale
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Generated monitoring artifacts: rules, Prometheus/Alertmanager configs, dashboards.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

OutOpt = Annotated[Path, typer.Option("--out", help="Folder of the checked-in artifacts.")]


@app.command()
def render(out: OutOpt = Path("monitoring")) -> None:
    """Write every artifact under OUT."""
    from mainsail.monitor.artifacts import write_all

    for path in write_all(out):
        typer.echo(str(path))


@app.command()
def check(out: OutOpt = Path("monitoring")) -> None:
    """Fail when a checked-in artifact differs from what the code generates."""
    from mainsail.monitor.artifacts import stale_files

    stale = stale_files(out)
    if stale:
        typer.secho(
            f"stale: {', '.join(stale)}; run `mainsail monitoring render`",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(1)
    typer.echo("monitoring artifacts are up to date")


@app.command("demo-drift")
def demo_drift(
    drift: Annotated[float, typer.Option(help="Drift knob of the generator (0..1).")] = 0.6,
    rows: Annotated[int, typer.Option(help="Rows per traffic phase.")] = 800,
    run_config: Annotated[
        Path | None,
        typer.Option(help="Start a real `mainsail run CONFIG` as the retraining run."),
    ] = None,
    workdir: Annotated[Path | None, typer.Option(help="Keep logs and state here.")] = None,
) -> None:
    """Normal, then drifted traffic: drift metrics, alert and retraining run, step by step."""
    from mainsail.demos.drift import run_drift_demo

    run_drift_demo(drift=drift, rows=rows, run_config=run_config, workdir=workdir, echo=typer.echo)
