"""`mainsail demo …`: narrated demos on the local stack (`mainsail.demos`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mainsail.cli.common import console, fail

demo_app = typer.Typer(help="Narrated demos on the local stack.", no_args_is_help=True)


@demo_app.command("loop")
def demo_loop(
    worse: Annotated[
        bool, typer.Option("--worse", help="Retrain on scrambled labels: must end in a rollback.")
    ] = False,
    rows: Annotated[
        int, typer.Option(min=1000, help="Rows of history and of the fresh window.")
    ] = 6000,
    workdir: Annotated[
        Path | None, typer.Option(help="Folder for the demo's processes and data.")
    ] = None,
) -> None:
    """Train and serve a champion, inject drift, let the alert retrain a challenger, deploy it as
    a canary, feed back ground truth, and let the A/B analysis promote or roll it back."""
    from mainsail.demos.loop import run_loop_demo

    outcome = run_loop_demo(workdir=workdir, worse=worse, rows=rows, echo=console.print)
    expected = "rollback" if worse else "promote"
    if outcome.get("final") != expected:
        raise fail(f"the loop ended in {outcome.get('final')!r}, expected {expected!r}", code=1)


@demo_app.command("drift")
def demo_drift(
    drift: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Strength of the injected drift.")
    ] = 0.6,
    rows: Annotated[int, typer.Option(min=100, help="Rows per traffic phase.")] = 800,
    workdir: Annotated[
        Path | None, typer.Option(help="Folder for the demo's processes and data.")
    ] = None,
) -> None:
    """Normal traffic, then drifted traffic: watch the drift metric rise, the alert fire and the
    retraining run start, step by step with timestamps."""
    from mainsail.demos.drift import run_drift_demo

    outcome = run_drift_demo(drift=drift, rows=rows, workdir=workdir, echo=console.print)
    if not outcome.get("run"):
        raise fail("the demo ended without a retraining run; see the steps above", code=1)
