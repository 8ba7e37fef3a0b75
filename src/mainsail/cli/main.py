"""The `mainsail` command line (Typer + Rich): the top-level commands, and the command groups
that live in the other modules of this package, mounted by :func:`main`.

The config is read once here and passed down. Heavy libraries are imported inside the commands
that need them, so `mainsail --help` is instant and the CLI loads in every environment.
Errors that users can fix (bad config, bad data) print one clear message and exit with code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from mainsail.cli.common import (
    ConfigArg,
    EnvOpt,
    SetOpt,
    console,
    fail,
    read_config,
    user_errors,
)
from mainsail.cli.demo import demo_app
from mainsail.config import ConfigError, ProjectConfig

app = typer.Typer(
    name="mainsail",
    help="Kubernetes-native MLOps for tabular models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(demo_app, name="demo")


@app.command()
def run(
    config: ConfigArg,
    set_: SetOpt = None,
    runner: Annotated[
        str,
        typer.Option(
            help="`local` runs the stages in this process; `kfp-local` runs the pipeline with "
            "kfp.local's SubprocessRunner; `kfp-docker` runs each step in the pipeline image."
        ),
    ] = "local",
    publish: Annotated[
        bool,
        typer.Option(
            help="Publish the chosen model to the registry as its next version (local runner; "
            "registry.endpoint, else MAINSAIL_S3_ENDPOINT, else the local stack's S3)."
        ),
    ] = False,
    candidate: Annotated[
        bool,
        typer.Option(
            "--candidate",
            help="With --publish: also put the registry's candidate alias "
            "(registry.candidate_alias) on the new version, for a promotion controller with "
            "promotion.deploy_candidates to deploy as the next challenger (a retraining run).",
        ),
    ] = False,
) -> None:
    """Run the lifecycle on CONFIG and write a run folder (data stage, training, evaluation)."""

    cfg = read_config(config, set_)
    if candidate and not publish:
        raise fail("--candidate marks the version --publish makes: pass --publish too")
    if runner in ("kfp-local", "kfp-docker"):
        if publish:
            raise fail("--publish is for the local runner; the pipeline's register step publishes")
        _run_kfp_local(cfg, "docker" if runner == "kfp-docker" else "subprocess")
        return
    if runner != "local":
        raise fail(f"--runner must be 'local', 'kfp-local' or 'kfp-docker', got {runner!r}")
    registry = _publish_target(cfg) if publish else None
    snapshots = _snapshot_target(cfg)

    console.print(f"[bold]mainsail run[/] {cfg.name} (seed {cfg.seed}) from {config}")
    if not console.is_terminal:
        # Output to a file or a pipe: no live bar (it would draw nothing until the end), one
        # line per stage and quarter instead, so a long run shows where it is.
        result = _run_with_log_lines(cfg, config, snapshots)
    else:
        result = _run_with_bar(cfg, config, snapshots)
    _print_run_result(result)
    train = result.summary.get("train")
    if registry is not None and train is not None and train.get("chosen"):
        _publish_run(cfg, registry, result.run_dir / "model", candidate=candidate)
    elif candidate:
        console.print("[yellow]no candidate:[/] the run chose no model, nothing was published")


def _snapshot_target(cfg: ProjectConfig) -> Any:
    """Where the run stores its data snapshot (`snapshots.mode`), or None, said once."""
    from mainsail.lifecycle.snapshot import SnapshotError, open_snapshots

    try:
        store, note = open_snapshots(cfg)
    except SnapshotError as err:
        raise fail(str(err)) from None
    if store is None:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    return store


def _run_with_bar(cfg: ProjectConfig, config: Path, snapshots: Any = None) -> Any:
    """`mainsail run` with a live progress bar per stage (output to a terminal)."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from mainsail.lifecycle.run import run as run_stages

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
            return run_stages(
                cfg, config_path=config.resolve(), progress=progress, snapshots=snapshots
            )
        except user_errors() as err:
            raise fail(str(err)) from None


def _run_with_log_lines(cfg: ProjectConfig, config: Path, snapshots: Any = None) -> Any:
    """`mainsail run` with plain progress lines (`[  12.3s] tune 50%`), flushed as they come."""
    import time

    from mainsail.lifecycle.run import run as run_stages

    started = time.perf_counter()
    shown: dict[str, int] = {}

    def progress(stage: str, done: float) -> None:
        quarter = int(max(0.0, min(1.0, done)) * 4)
        if shown.get(stage, -1) >= quarter:
            return
        shown[stage] = quarter
        elapsed = time.perf_counter() - started
        print(f"[{elapsed:7.1f}s] {stage} {quarter * 25}%", flush=True)

    try:
        return run_stages(cfg, config_path=config.resolve(), progress=progress, snapshots=snapshots)
    except user_errors() as err:
        raise fail(str(err)) from None


def _print_run_result(result: Any) -> None:
    from rich.markup import escape

    detected = " (detected)" if result.problem_type_detected else ""
    console.print(f"problem type: [bold]{result.problem_type}[/]{detected}")
    train = result.summary.get("train")
    if train is not None:
        if train.get("chosen"):
            scores = ", ".join(
                f"{k} {v:.4f}" for k, v in (train.get("test") or {}).items() if isinstance(v, float)
            )
            console.print(
                f"chosen model: [bold]{train['chosen']}[/] ({escape(train.get('reason', ''))})"
            )
            if scores:
                console.print(f"test set (served model): {scores}", highlight=False, soft_wrap=True)
            for warning in train.get("warnings") or []:
                console.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False)
        else:
            console.print(
                f"[bold yellow]no model chosen:[/] {escape(train.get('reason', ''))}; "
                "nothing to publish",
                highlight=False,
            )
    table = Table(title="run folder contents", show_header=True, header_style="bold")
    table.add_column("artifact")
    table.add_column("path")
    for name, path in result.artifacts.items():
        if "/" not in name or name.startswith("model/"):
            table.add_row(name, str(path))
    console.print(table)
    console.print(f"[bold green]run folder:[/] {result.run_dir}")


def _publish_target(cfg: ProjectConfig) -> Any:
    """The registry `--publish` writes to, checked before the run (no hour of training for a
    registry that cannot be reached)."""
    from mainsail.registry import RegistryError, open_registry

    try:
        registry = open_registry(cfg)
        registry.ensure_bucket()
    except (RegistryError, OSError, ValueError) as err:
        raise fail(f"--publish: the registry cannot be used: {err}") from None
    except Exception as err:  # minio raises S3Error and urllib3's errors for an unreachable S3
        raise fail(f"--publish: the registry cannot be reached: {err}") from None
    return registry


def _publish_run(
    cfg: ProjectConfig, registry: Any, model_dir: Path, *, candidate: bool = False
) -> None:
    from mainsail.registry.errors import RegistryError

    try:
        info = registry.publish(cfg.name, model_dir)
    except RegistryError as err:
        raise fail(f"publishing {model_dir} failed: {err}", code=1) from None
    uri = registry.version_uri(cfg.name, info.version)
    console.print(f"[bold green]published:[/] {cfg.name} v{info.version} ({uri})")
    if candidate:
        alias = cfg.registry.candidate_alias
        try:
            registry.promote(cfg.name, info.version, alias=alias)
        except RegistryError as err:
            raise fail(f"v{info.version} published, but alias {alias!r} not set: {err}") from None
        console.print(f"{alias} -> v{info.version}: the next challenger (promotion controller)")


def _run_kfp_local(cfg: ProjectConfig, runner: Literal["subprocess", "docker"]) -> None:
    from mainsail.pipeline.runner import PipelineError, run_local

    kind = "SubprocessRunner" if runner == "subprocess" else "DockerRunner, the pipeline image"
    console.print(f"[bold]mainsail run[/] {cfg.name} with kfp.local ({kind})")
    log_file = cfg.runs_dir / ("kfp-local.log" if runner == "subprocess" else "kfp-docker.log")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with console.status("running the training pipeline (step logs in " + str(log_file) + ")"):
        try:
            result = run_local(cfg, "training", log_file=log_file, runner=runner)
        except PipelineError as err:
            raise fail(str(err)) from None
        except user_errors() as err:
            raise fail(str(err)) from None
    table = Table(title="pipeline steps", header_style="bold")
    table.add_column("step")
    table.add_column("ran")
    for step in result.executed:
        table.add_row(step, "yes")
    console.print(table)
    console.print(f"[bold green]pipeline finished[/] in {result.seconds:.1f} s: {result.run_dir}")


@app.command()
def submit(
    config: ConfigArg,
    host: Annotated[
        str | None, typer.Option(help="KFP API endpoint, e.g. http://localhost:8888.")
    ] = None,
    experiment: Annotated[str | None, typer.Option(help="KFP experiment name.")] = None,
    namespace: Annotated[
        str | None, typer.Option(help="Kubernetes namespace (multi-user KFP).")
    ] = None,
    schedule: Annotated[
        str | None, typer.Option(help="Cron expression: create a recurring run.")
    ] = None,
    pipeline: Annotated[str, typer.Option(help="`training` or `retraining`.")] = "training",
    set_: SetOpt = None,
) -> None:
    """Compile the pipeline for CONFIG and submit it to a Kubeflow Pipelines server."""
    from mainsail.pipeline.runner import KfpUnreachableError, PipelineError
    from mainsail.pipeline.runner import submit as submit_pipeline

    if pipeline not in ("training", "retraining"):
        raise fail(f"--pipeline must be 'training' or 'retraining', got {pipeline!r}")
    # Read once, with the --set overrides: this very config is what the run receives.
    cfg = read_config(config, set_)
    try:
        result = submit_pipeline(
            cfg,
            host,
            experiment,
            namespace,
            schedule,
            pipeline=pipeline,  # type: ignore[arg-type]
        )
    except (KfpUnreachableError, PipelineError, ConfigError) as err:
        raise fail(str(err)) from None
    console.print(f"[bold green]submitted[/] {result}")


@app.command("check-config")
def check_config(
    config: ConfigArg,
    set_: SetOpt = None,
    show: Annotated[bool, typer.Option("--show", help="Also print the resolved settings.")] = False,
) -> None:
    """Validate CONFIG, then open its data and validate it against the config (target and
    columns named, problem type, positive class, leakage suspects) without training."""
    import yaml

    from mainsail.lifecycle.data import load_validated

    cfg = read_config(config, set_)
    if show:
        console.print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), highlight=False)
    try:
        loaded = load_validated(cfg, features=False)
    except user_errors() as err:
        raise fail(f"{config}: {err}") from None
    report = loaded.checked.report
    positive = f", positive class {report.positive_class!r}" if report.positive_class else ""
    console.print(
        f"data: {loaded.path} ({report.rows:,} rows, {len(report.features)} features), "
        f"{report.problem_type}{positive}",
        highlight=False,
        soft_wrap=True,
    )
    from rich.markup import escape

    for issue in report.warnings():
        console.print(f"[yellow]warning:[/] {escape(issue.message)}", highlight=False)
    console.print(f"[bold green]ok:[/] {config} (sha256 {cfg.digest()[:12]})")


@app.command()
def generate(
    out: Annotated[Path, typer.Argument(help="Output file (.parquet or .csv).")],
    rows: Annotated[int, typer.Option(min=1)] = 20_000,
    drift: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="0 = training, 1 = strong drift.")
    ] = 0.0,
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
        f"wrote {len(frame):,} rows to {out} "
        f"(churn rate {frame['churned'].mean():.1%}, drift {drift})"
    )


@app.command()
def feedback(
    config: ConfigArg,
    labels: Annotated[
        Path,
        typer.Argument(help="CSV with columns request_id,label, or a JSON object id -> label."),
    ],
    router: Annotated[
        str | None, typer.Option(help="Router base URL; the local stack's router when omitted.")
    ] = None,
    set_: SetOpt = None,
) -> None:
    """Send ground truth for earlier predictions (by request id) to the router's feedback API."""
    import csv
    import json

    import httpx

    cfg = read_config(config, set_)
    if not labels.exists():
        raise fail(f"{labels}: no such file")
    try:
        if labels.suffix == ".json":
            mapping = json.loads(labels.read_text())
            if not isinstance(mapping, dict):
                raise ValueError("expected a JSON object of request id -> label")
        else:
            with labels.open(newline="") as fh:
                reader = csv.DictReader(fh)
                missing = {"request_id", "label"} - set(reader.fieldnames or [])
                if missing:
                    raise ValueError(f"missing column(s) {sorted(missing)}; need request_id,label")
                mapping = {row["request_id"]: row["label"] for row in reader}
    except (ValueError, OSError) as err:
        raise fail(f"{labels}: {err}") from None
    url = router or f"http://{cfg.stack.host}:{cfg.stack.router.port}"
    try:
        resp = httpx.post(f"{url}/feedback", json={"labels": mapping}, timeout=60)
    except httpx.HTTPError as err:
        raise fail(f"router at {url} unreachable ({err}); is the stack up?") from None
    if resp.status_code != 200:
        raise fail(f"router refused the feedback: {resp.status_code} {resp.text}")
    counts = resp.json()
    console.print(
        f"feedback: {counts['accepted']} accepted, {counts['unknown']} unknown request ids, "
        f"{counts['duplicate']} already labelled"
    )


@app.command()
def promote(
    config: ConfigArg,
    watch: Annotated[
        bool, typer.Option("--watch", help="Look every promotion.interval_s until a decision.")
    ] = False,
    timeout: Annotated[
        float | None, typer.Option(help="With --watch: give up after this many seconds.")
    ] = None,
    forever: Annotated[
        bool,
        typer.Option(
            "--forever",
            help="With --watch: keep looking after a promotion or rollback, so that the next "
            "challenger deployed starts the next experiment (the chart's controller pod).",
        ),
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Lift a pause (sample-ratio mismatch) after fixing its cause: the experiment "
            "restarts from now.",
        ),
    ] = False,
    set_: SetOpt = None,
    env: EnvOpt = None,
) -> None:
    """Analyse champion vs challenger and ramp, promote or roll back (one look; --watch to loop).
    With --env, in that environment: its aliases, and its decision log, which `mainsail
    promote-env` reads for a passed shadow or canary.

    A challenger in the shadow moves to the first canary step when the shadow gate passes and is
    stopped when it fails; a canary whose observed split does not match its weight pauses the
    experiment (sample-ratio mismatch) until `--resume`.

    Without --watch it looks once and exits, which is the scheduled mode (cron, a Kubernetes
    CronJob): state lives in the feedback store, so consecutive runs continue one experiment.
    With --watch and `promotion.metrics_port` set, its metrics are served for Prometheus.
    """
    import sqlalchemy as sa
    from rich.markup import escape

    from mainsail.promotion.ab import Decision
    from mainsail.promotion.controller import build_controller
    from mainsail.promotion.metrics import PromotionMetrics

    if forever and not watch:
        raise fail("--forever keeps a --watch going: pass --watch too")
    cfg = read_config(config, set_, env)
    metrics = PromotionMetrics()
    try:
        controller = build_controller(cfg, log=console.print, metrics=metrics)
    except (ConfigError, RuntimeError, ValueError) as err:
        raise fail(str(err)) from None
    except sa.exc.SQLAlchemyError as err:
        from mainsail.feedback.store import store_url

        cause = getattr(err, "orig", None) or err  # the driver's own error, when there is one
        raise fail(
            f"the feedback store {sa.engine.make_url(store_url(cfg)).render_as_string()} "
            f"cannot be opened ({type(cause).__name__}: {cause}); set promotion.store_url, "
            "or start the stack (`mainsail stack up`)"
        ) from None
    if resume:
        if controller.resume():
            console.print("resumed: the experiment restarts from now")
        else:
            console.print("nothing to resume: no paused experiment")
        return

    idle: list[bool] = []

    def report(decision: Decision | None) -> None:
        if decision is None:
            if not idle:  # said once per idle spell: a --forever watch looks all day
                console.print("no challenger deployed: nothing to decide")
            idle[:] = [True]
        else:
            idle.clear()
            reason = escape(decision.reason)
            console.print(f"[bold]{decision.action}[/]: {reason}", highlight=False)

    if watch:
        if cfg.promotion.metrics_port is not None:
            from prometheus_client import start_http_server

            try:
                start_http_server(cfg.promotion.metrics_port, cfg.stack.host, metrics.registry)
            except OSError as err:
                raise fail(
                    f"cannot serve metrics on {cfg.stack.host}:{cfg.promotion.metrics_port} "
                    f"({err}); set promotion.metrics_port to a free port, or null"
                ) from None
            console.print(
                f"metrics on http://{cfg.stack.host}:{cfg.promotion.metrics_port}/metrics"
            )

        def look_failed(err: Exception) -> None:
            # escaped: an error's own text may hold brackets that Rich would read as markup
            text = escape(f"{type(err).__name__}: {err}")
            console.print(f"[red]look failed[/]: {text}", highlight=False)

        with _stop_on_signals() as stopping:
            controller.watch(
                cfg.promotion.interval_s,
                until_final=not forever,
                timeout_s=timeout,
                report=report,
                # A controller that runs for good rides out a store or gateway that blinks.
                on_error=look_failed if forever else None,
                stop=stopping,
            )
        if stopping.is_set():
            console.print(
                f"stopped on {stopping.signal}: the look in progress finished, no other started"
            )
    else:
        report(controller.step())


class _Stopping(threading.Event):
    """Set by the first SIGTERM or SIGINT; `signal` names it."""

    signal = ""


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[_Stopping]:
    """An event that SIGTERM and SIGINT set instead of killing the process, for the block's
    duration (the previous handlers are put back after it).

    The chart's controller pod runs `mainsail promote --watch --forever` as PID 1, and the kernel
    drops a signal that PID 1 has no handler for: without one, a pod being drained or evicted
    kept looking (and deciding) until the grace period's SIGKILL, beside its replacement."""
    stopping = _Stopping()

    def handle(signum: int, _frame: object) -> None:
        stopping.signal = signal.Signals(signum).name
        stopping.set()

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handle)
    try:
        yield stopping
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# Sub-command groups that live with their stage; each module exposes a Typer `app`.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "models": (
        "mainsail.cli.models",
        "Model registry: list, show, publish, promote, rollback, unset-alias.",
    ),
    "trigger": (
        "mainsail.cli.trigger",
        "Retrain trigger: Alertmanager webhook -> retraining runs.",
    ),
    "monitoring": ("mainsail.cli.monitoring", "Monitoring artifacts: render, check."),
    "features": ("mainsail.cli.features", "Feast feature store: apply, materialize, serve, get."),
    "data": ("mainsail.cli.data", "Training-data snapshots: show, diff, reproduce."),
}


def _mount_subcommands() -> None:
    for name, (module, help_text) in SUBCOMMANDS.items():
        sub = importlib.import_module(module).app
        app.add_typer(sub, name=name, help=help_text)


def main() -> None:
    from mainsail.cli import deploy as deploy_cli
    from mainsail.cli import environments as environments_cli
    from mainsail.cli import stack as stack_cli

    _mount_subcommands()
    stack_cli.register(app)  # top-level up / down / status
    deploy_cli.register(app)  # top-level deploy
    environments_cli.register(app)  # top-level promote-env
    app()


if __name__ == "__main__":
    main()
