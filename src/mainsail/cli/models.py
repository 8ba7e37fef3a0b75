"""`mainsail models …`: list, show, publish, promote and roll back registry versions, and
remove an alias.

Pipeline env only (Typer, Rich). The registry is the project config's, opened by
:func:`mainsail.registry.open_registry`: `--endpoint` (or `MAINSAIL_S3_ENDPOINT`) overrides the
config's endpoint; without either, the local stack's SeaweedFS.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from mainsail.config import ConfigError, load_config
from mainsail.registry.connect import open_registry
from mainsail.registry.errors import RegistryError, store_error_message
from mainsail.registry.store import ModelRegistry

app = typer.Typer(help="Model registry: versions, aliases and integrity.", no_args_is_help=True)
_console = Console()

ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", help="Project config (its `registry` section).")
]
EndpointOpt = Annotated[
    str | None,
    typer.Option(
        "--endpoint",
        envvar="MAINSAIL_S3_ENDPOINT",
        help="S3 endpoint host:port; overrides registry.endpoint.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _registry(config: Path, endpoint: str | None) -> ModelRegistry:
    """The registry of a project config (see :func:`mainsail.registry.open_registry`)."""
    return open_registry(load_config(config), endpoint=endpoint)


def _fail(err: Exception) -> typer.Exit:
    """One line for a user-facing error (registry, config, object store); anything else is a
    bug and propagates."""
    message = store_error_message(err)
    if message is None and not isinstance(err, RegistryError | ConfigError | OSError):
        raise err
    _console.print(f"[red]error:[/red] {message or err}", highlight=False)
    return typer.Exit(code=1)


def _emit(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


@app.command("list")
def list_cmd(
    model: Annotated[str | None, typer.Argument(help="Model; all models when omitted.")] = None,
    config: ConfigOpt = Path("configs/churn.yaml"),
    endpoint: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List models, or the versions of one model with their aliases and metrics."""
    try:
        registry = _registry(config, endpoint)
        if model is None:
            names = registry.models()
            if as_json:
                _emit(names)
                return
            table = Table("model", "versions", "champion", "challenger")
            for name in names:
                aliases = registry.aliases(name)
                table.add_row(
                    name,
                    str(len(registry.versions(name))),
                    str(aliases.get("champion", "-")),
                    str(aliases.get("challenger", "-")),
                )
            _console.print(table)
            return
        versions = registry.versions(model)
    except Exception as err:
        raise _fail(err) from None
    if as_json:
        _emit([v.__dict__ for v in versions])
        return
    table = Table("version", "created", "aliases", "metrics")
    for v in versions:
        metrics = ", ".join(
            f"{k}={val:.4g}" if isinstance(val, float) else f"{k}={val}"
            for k, val in v.metrics.items()
        )
        table.add_row(str(v.version), v.created_at, ", ".join(v.aliases) or "-", metrics or "-")
    _console.print(table)


@app.command()
def show(
    model: Annotated[str, typer.Argument(help="Model name.")],
    ref: Annotated[str, typer.Argument(help="Version number, alias or `latest`.")] = "latest",
    config: ConfigOpt = Path("configs/churn.yaml"),
    endpoint: EndpointOpt = None,
) -> None:
    """Show one version: files with sha256, aliases, metrics, lineage, storage URI (JSON)."""
    try:
        _emit(_registry(config, endpoint).show(model, ref))
    except Exception as err:
        raise _fail(err) from None


@app.command()
def publish(
    model: Annotated[str, typer.Argument(help="Model name.")],
    folder: Annotated[Path, typer.Argument(help="Artifact folder written by training.")],
    alias: Annotated[
        str | None, typer.Option(help="Also point this alias (champion/challenger) at it.")
    ] = None,
    config: ConfigOpt = Path("configs/churn.yaml"),
    endpoint: EndpointOpt = None,
) -> None:
    """Publish an artifact folder as the next version (atomic; sha256 manifest)."""
    try:
        registry = _registry(config, endpoint)
        registry.ensure_bucket()
        info = registry.publish(model, folder)
        if alias:
            registry.promote(model, info.version, alias)
    except Exception as err:
        raise _fail(err) from None
    suffix = f" as {alias}" if alias else ""
    _console.print(f"published {model} v{info.version}{suffix}")


@app.command()
def promote(
    model: Annotated[str, typer.Argument(help="Model name.")],
    ref: Annotated[str, typer.Argument(help="Version number, alias (e.g. challenger) or latest.")],
    alias: Annotated[str, typer.Option("--alias", "-a", help="Alias to move.")] = "champion",
    config: ConfigOpt = Path("configs/churn.yaml"),
    endpoint: EndpointOpt = None,
) -> None:
    """Point an alias (champion by default) at a version."""
    try:
        version = _registry(config, endpoint).promote(model, ref, alias)
    except Exception as err:
        raise _fail(err) from None
    _console.print(f"{model}: {alias} -> v{version}")


@app.command()
def rollback(
    model: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Option("--alias", "-a", help="Alias to roll back.")] = "champion",
    config: ConfigOpt = Path("configs/churn.yaml"),
    endpoint: EndpointOpt = None,
) -> None:
    """Point an alias back at the version it held before its last promotion."""
    try:
        version = _registry(config, endpoint).rollback(model, alias)
    except Exception as err:
        raise _fail(err) from None
    _console.print(f"{model}: {alias} rolled back to v{version}")


@app.command()
def unset_alias(
    model: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Option("--alias", "-a", help="Alias to remove.")] = "challenger",
    config: ConfigOpt = Path("configs/churn.yaml"),
    endpoint: EndpointOpt = None,
) -> None:
    """Remove an alias (challenger by default), e.g. once an A/B test has ended."""
    try:
        version = _registry(config, endpoint).unset_alias(model, alias)
    except Exception as err:
        raise _fail(err) from None
    _console.print(f"{model}: {alias} removed (it pointed at v{version})")


@app.command()
def gc(
    model: Annotated[str | None, typer.Argument(help="Model; every model when omitted.")] = None,
    older_than: Annotated[
        float, typer.Option(help="Only staging objects older than this many seconds.")
    ] = 3600.0,
    config: ConfigOpt = Path("configs/churn.yaml"),
    endpoint: EndpointOpt = None,
) -> None:
    """Remove what failed publishes left under `<model>/staging/` (never a published version;
    the next publish of a model does it too)."""
    try:
        removed = _registry(config, endpoint).gc(model, older_than_s=older_than)
    except Exception as err:
        raise _fail(err) from None
    for prefix in removed:
        _console.print(f"removed {prefix}", highlight=False)
    _console.print(f"{len(removed)} staging prefix(es) removed")


@app.command()
def keygen(
    out: Annotated[
        Path, typer.Option(help="Folder for registry-signing.key (0600) and registry-public.key.")
    ] = Path(),
) -> None:
    """Make an Ed25519 key pair for signing registry manifests: the private key for publishers
    (registry.signing_key_env), the public key for every server (registry.public_keys_env)."""
    from mainsail.core.files import write_private
    from mainsail.registry.signing import generate_keypair

    private, public = generate_keypair()
    key = write_private(out / "registry-signing.key", private + "\n")
    pub = out / "registry-public.key"
    pub.write_text(public + "\n")
    _console.print(f"private key: {key} (mode 0600; publishers only)", highlight=False)
    _console.print(f"public key:  {pub} ({public})", highlight=False)
