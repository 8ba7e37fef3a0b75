"""`mainsail features apply | materialize | serve | get ENTITY_ID...` (pipeline env).

The lead mounts `app` as `mainsail features`; it also runs on its own with
`python -m mainsail.cli.features`.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from mainsail.config import ConfigError, ProjectConfig, load_config
from mainsail.core import naming
from mainsail.features.errors import FeatureStoreError
from mainsail.features.layout import resolve_repo_dir

app = typer.Typer(
    name="features",
    help="Feast feature store: apply definitions, materialize, serve, look up features.",
    no_args_is_help=True,
)
console = Console()

ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", help="Project config (YAML).", show_default=True)
]
RepoOpt = Annotated[
    Path | None,
    typer.Option("--repo", help="Feast repository folder; features.repo_dir when omitted."),
]
DEFAULT_CONFIG = Path("configs/churn.yaml")


def _load(config: Path, repo: Path | None) -> tuple[ProjectConfig, Path]:
    try:
        cfg = load_config(config)
    except ConfigError as err:
        _fail(str(err))
    return cfg, (repo.resolve() if repo else resolve_repo_dir(cfg, config.resolve().parent))


def _fail(message: str) -> Any:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(1)


def _parse_time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return _fail(f"{option}: expected an ISO date or time such as 2025-06-01, got {value!r}")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def load_frame(cfg: ProjectConfig, data: Path | None = None) -> Any:
    """The dataset: `data`, else `data.path`, else the configured synthetic generator."""
    import pandas as pd

    path = data or cfg.data.path
    if path.exists():
        if path.suffix == ".csv" or cfg.data.format == "csv":
            frame = pd.read_csv(path)
            for column in (cfg.data.event_timestamp, cfg.data.label_timestamp):
                if column and column in frame.columns:
                    frame[column] = pd.to_datetime(frame[column], utc=True)
            return frame
        return pd.read_parquet(path)
    if data is None and cfg.data.synthetic is not None:
        from mainsail.data.synthetic import generate_churn

        syn = cfg.data.synthetic
        return generate_churn(
            syn.rows,
            entities=syn.entities,
            drift=syn.drift,
            seed=syn.seed if syn.seed is not None else cfg.seed,
        )
    return _fail(f"dataset {path} does not exist")


@app.command()
def apply(
    config: ConfigOpt = DEFAULT_CONFIG,
    repo: RepoOpt = None,
    data: Annotated[
        Path | None, typer.Option(help="Dataset file; data.path (or the generator) if omitted.")
    ] = None,
    upload_registry: Annotated[
        str | None,
        typer.Option(
            help="Then copy the registry file to this key of the registry's bucket (created "
            "if missing), where a cluster's feature server reads it (the chart's "
            "feast.registryKey)."
        ),
    ] = None,
) -> None:
    """Write the views' parquet sources from the dataset and register the definitions."""
    import os

    from mainsail.features import store

    cfg, repo_dir = _load(config, repo)
    frame = load_frame(cfg, data)
    with console.status("Registering feature definitions with Feast..."):
        try:
            summary = store.apply(cfg, repo_dir, frame)
        except FeatureStoreError as err:
            _fail(str(err))
    table = Table(title=f"Feast project {summary.project} · service {summary.service}")
    table.add_column("view")
    table.add_column("TTL", justify="right")
    table.add_column("features")
    for view, features in summary.views.items():
        ttl = summary.ttl_s.get(view)
        table.add_row(view, f"{ttl / 86400:g}d" if ttl else "on demand", ", ".join(features))
    console.print(table)
    if summary.deleted:
        console.print(f"removed from the registry: {', '.join(summary.deleted)}")
    console.print(f"[green]applied[/] {len(frame)} rows into {repo_dir}")
    if upload_registry:
        from minio.error import S3Error

        from mainsail.registry.errors import RegistryError

        try:
            url = store.upload_registry(cfg, repo_dir, upload_registry, os.environ)
        except (FeatureStoreError, RegistryError, S3Error, OSError) as err:
            _fail(str(err))
        console.print(f"[green]registry uploaded[/] to {url}")


@app.command()
def materialize(
    config: ConfigOpt = DEFAULT_CONFIG,
    repo: RepoOpt = None,
    end: Annotated[str | None, typer.Option(help="End (ISO, UTC); now if omitted.")] = None,
    start: Annotated[
        str | None, typer.Option(help="Start (ISO); incremental from the last run if omitted.")
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Load from the earliest source row (ignores --start).")
    ] = False,
) -> None:
    """Load feature values into the online store (incremental by default)."""
    from mainsail.features import store

    cfg, repo_dir = _load(config, repo)
    start_at = _parse_time(start, "--start")
    if full:
        start_at = datetime(1970, 1, 1, tzinfo=UTC)
    with console.status(f"Materializing into the {cfg.features.online_store} online store..."):
        try:
            summary = store.materialize(
                cfg, repo_dir, end=_parse_time(end, "--end"), start=start_at
            )
        except FeatureStoreError as err:
            _fail(str(err))
    since = "last run" if summary.start is None else summary.start.isoformat()
    console.print(
        f"[green]materialized[/] {', '.join(summary.views)} from {since} to "
        f"{summary.end.isoformat()} into {summary.online_store}"
    )


@app.command()
def serve(
    config: ConfigOpt = DEFAULT_CONFIG,
    repo: RepoOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind host; features.server_host.")] = None,
    port: Annotated[int | None, typer.Option(help="Port; features.server_port.")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes (feast).")] = 1,
    engine: Annotated[
        str,
        typer.Option(
            help="feast: `feast serve`; mainsail: Mainsail's server (the same API, read "
            "straight from the online store, a bearer token from $MAINSAIL_FEATURES_TOKEN)."
        ),
    ] = "feast",
) -> None:
    """Run a feature server (`POST /get-online-features`) in the foreground until Ctrl-C."""
    from mainsail.features.online import spec_for
    from mainsail.features.server import FeatureServer
    from mainsail.features.store import check_online_store, check_registry, write_repo_config

    cfg, repo_dir = _load(config, repo)
    try:
        write_repo_config(cfg, repo_dir)
        check_online_store(cfg)
        check_registry(cfg, repo_dir, must_exist=True)
        spec = spec_for(cfg, repo_dir)
    except FeatureStoreError as err:
        _fail(str(err))
    if engine not in ("feast", "mainsail"):
        _fail(f"--engine {engine!r}: expected feast or mainsail")
    token = os.environ.get(naming.ENV_FEATURES_TOKEN) or None
    if engine == "mainsail" and token is None:
        _fail(
            f"--engine mainsail serves data behind a bearer token: set {naming.ENV_FEATURES_TOKEN} "
            "(clients send it from the same variable)"
        )
    server = FeatureServer(
        repo_dir,
        host or cfg.features.server_host,
        port or cfg.features.server_port,
        workers=workers,
        registry_ttl_s=cfg.features.registry_cache_ttl_s,
        engine=engine,
        config=config.resolve(),
        token=token if engine == "mainsail" else None,
    )
    # One lookup of a key that does not exist loads the registry before the first real request.
    probe: Any = 0 if spec.entity_type == "int64" else "__warmup__"
    warmup = {"feature_service": spec.service, "entities": {spec.entity_key: [probe]}}
    with console.status(f"Starting {server.name}..."):
        try:
            server.start(warmup=warmup)
        except FeatureStoreError as err:
            _fail(str(err))
    console.print(
        f"[green]serving[/] {spec.service} at {server.url}/get-online-features "
        f"(log: {server.log_path}); Ctrl-C stops it"
    )
    try:
        code = server.wait()
    except KeyboardInterrupt:
        code = 0
    finally:
        server.stop()
    raise typer.Exit(code)


@app.command()
def get(
    entity_ids: Annotated[list[str], typer.Argument(help="Entity keys to look up.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    repo: RepoOpt = None,
    http: Annotated[
        str | None, typer.Option(help="Feature server URL (e.g. http://127.0.0.1:6566).")
    ] = None,
    at: Annotated[
        str | None, typer.Option(help="Judge freshness as of this time (ISO); now if omitted.")
    ] = None,
) -> None:
    """Print the feature vectors of ENTITY_IDS (stale and missing values marked)."""
    from mainsail.features.online import SdkLookup, spec_for

    cfg, repo_dir = _load(config, repo)
    moment = _parse_time(at, "--at")
    clock = (lambda: moment.timestamp()) if moment is not None else None
    try:
        spec = spec_for(cfg, repo_dir)
        ids: list[Any] = [int(i) for i in entity_ids] if spec.entity_type == "int64" else entity_ids
    except ValueError:
        _fail(f"entity ids must be integers for {cfg.data.entity_key}")
    except FeatureStoreError as err:
        _fail(str(err))
    try:
        if http:
            from mainsail.features.http import HttpLookup

            lookup: Any = HttpLookup(
                http,
                spec,
                timeout_s=max(cfg.features.server_timeout_s, 5.0),
                fallback="fail",
                enforce_freshness=cfg.features.enforce_freshness,
                clock=clock,
            )
        else:
            lookup = SdkLookup.from_config(cfg, repo_dir, clock=clock)
        result = lookup.get(ids)
    except FeatureStoreError as err:
        _fail(str(err))
    table = Table(title=f"{spec.service} · {'HTTP ' + http if http else 'in-process'}")
    table.add_column("feature")
    for entity in result.entity_ids:
        table.add_column(str(entity), overflow="fold")
    for name in result.feature_names:
        cells = []
        for row, missing in zip(result.rows, result.missing, strict=True):
            value = row[name]
            cells.append("[red]missing[/]" if name in missing else repr(value))
        table.add_row(name, *cells)
    console.print(table)
    console.print(
        f"{len(result.entity_ids)} entities · {result.stale} stale values (older than their "
        f"view's TTL) · unknown: {', '.join(map(str, result.unknown)) or 'none'}"
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
