"""The `mainsail` command line (Typer + Rich).

The config is read once here and passed down. Heavy libraries are imported inside the commands
that need them, so `mainsail --help` is instant and the CLI loads in every environment.
Errors that users can fix (bad config, bad data) print one clear message and exit with code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from mainsail.config import ConfigError, ProjectConfig, load_config

app = typer.Typer(
    name="mainsail",
    help="Kubernetes-native MLOps for tabular models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

ConfigArg = Annotated[Path, typer.Argument(help="Project config (YAML).", show_default=False)]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config key: --set data.synthetic.rows=5000 (repeatable)."),
]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a user-facing error and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """`key=value` pairs; values are parsed as YAML scalars (numbers, booleans, lists)."""
    import yaml

    overrides: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise fail(f"--set expects key=value, got {item!r}")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def read_config(path: Path, overrides: list[str] | None = None) -> ProjectConfig:
    try:
        return load_config(path, parse_overrides(overrides))
    except ConfigError as err:
        raise fail(str(err)) from None


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean bad input rather than a bug (shown without traceback)."""
    errors: list[type[BaseException]] = [ConfigError, FileNotFoundError]
    try:
        from mainsail.data.errors import DataError

        errors.append(DataError)
    except ImportError:
        pass
    return tuple(errors)


@app.command()
def run(
    config: ConfigArg,
    set_: SetOpt = None,
    runner: Annotated[
        str, typer.Option(help="`local` runs the stages in this process; `kfp-local` runs the pipeline.")
    ] = "local",
) -> None:
    """Run the lifecycle on CONFIG and write a run folder (data stage, training, evaluation)."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from mainsail.run import run as run_stages

    cfg = read_config(config, set_)
    if runner == "kfp-local":
        _run_kfp_local(config, cfg)
        return
    if runner != "local":
        raise fail(f"--runner must be 'local' or 'kfp-local', got {runner!r}")

    console.print(f"[bold]mainsail run[/] {cfg.name} (seed {cfg.seed}) from {config}")
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description:<12}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: float) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=1.0)
            bar.update(tasks[stage], completed=max(0.0, min(1.0, done)))

        try:
            result = run_stages(cfg, config_path=config.resolve(), progress=progress)
        except user_errors() as err:
            raise fail(str(err)) from None

    detected = " (detected)" if result.problem_type_detected else ""
    console.print(f"problem type: [bold]{result.problem_type}[/]{detected}")
    table = Table(title="run folder contents", show_header=True, header_style="bold")
    table.add_column("artifact")
    table.add_column("path")
    for name, path in result.artifacts.items():
        if "/" not in name or name.startswith("model/"):
            table.add_row(name, str(path))
    console.print(table)
    console.print(f"[bold green]run folder:[/] {result.run_dir}")


def _run_kfp_local(config: Path, cfg: ProjectConfig) -> None:
    try:
        runner = importlib.import_module("mainsail.kfp_runner")
    except ImportError:
        raise fail("the kfp-local runner is not available in this environment") from None
    outcome = runner.run_local(config, cfg)
    console.print(f"[bold green]pipeline finished:[/] {outcome}")


@app.command("check-config")
def check_config(config: ConfigArg, set_: SetOpt = None) -> None:
    """Validate CONFIG and print the resolved settings."""
    import yaml

    cfg = read_config(config, set_)
    console.print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), highlight=False)
    console.print(f"[bold green]ok:[/] {config} (sha256 {cfg.digest()[:12]})")


@app.command()
def generate(
    out: Annotated[Path, typer.Argument(help="Output file (.parquet or .csv).")],
    rows: Annotated[int, typer.Option(min=1)] = 20_000,
    drift: Annotated[float, typer.Option(min=0.0, max=1.0, help="0 = training, 1 = strong drift.")] = 0.0,
    seed: int = 42,
) -> None:
    """Write the synthetic churn dataset (optionally drifted) to OUT."""
    from mainsail.data.synthetic import generate_churn

    if out.suffix not in {".parquet", ".csv"}:
        raise fail(f"{out}: the output must end in .parquet or .csv")
    frame = generate_churn(rows, drift=drift, seed=seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if out.suffix == ".parquet":
        frame.to_parquet(tmp, index=False)
    else:
        frame.to_csv(tmp, index=False)
    tmp.replace(out)
    console.print(
        f"wrote {len(frame):,} rows to {out} (churn rate {frame['churned'].mean():.1%}, drift {drift})"
    )


# Sub-command groups that live with their stage; each module exposes a Typer `app`.
SUBCOMMANDS: dict[str, tuple[str, str]] = {}


def _mount_subcommands() -> None:
    for name, (module, help_text) in SUBCOMMANDS.items():
        sub = importlib.import_module(module).app
        app.add_typer(sub, name=name, help=help_text)


def main() -> None:
    _mount_subcommands()
    app()


if __name__ == "__main__":
    main()
