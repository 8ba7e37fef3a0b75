"""What every `mainsail` command shares: the consoles, user-facing errors, `--set` overrides and
reading the config once at the entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from mainsail.config import ConfigError, ProjectConfig, load_config

console = Console()
err_console = Console(stderr=True)

ConfigArg = Annotated[Path, typer.Argument(help="Project config (YAML).", show_default=False)]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Override a config key: --set data.synthetic.rows=5000 (repeatable)."
    ),
]

EnvOpt = Annotated[
    str | None,
    typer.Option(
        "--env",
        help="Environment (`environments` in the config, e.g. staging): its registry aliases, "
        "stack folder, decision log and namespace.",
    ),
]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a user-facing error and return the Exit to raise."""
    from rich.markup import escape

    # Messages quote config snippets such as `data.drop: [col]`: not Rich markup. Not wrapped at
    # the console's width either: piped into a log or a test, a message hard-wrapped at 80
    # columns splits the phrases people search for ("did you mean") wherever a path ends.
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
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


def read_config(
    path: Path, overrides: list[str] | None = None, env: str | None = None
) -> ProjectConfig:
    """The config file with its `--set` overrides, as environment `env` sees it when given
    (`ProjectConfig.for_environment`); a bad one exits with a clear message."""
    try:
        cfg = load_config(path, parse_overrides(overrides))
        return cfg if env is None else cfg.for_environment(env)
    except ConfigError as err:
        raise fail(str(err)) from None


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean bad input rather than a bug (shown without traceback)."""
    errors: list[type[BaseException]] = [ConfigError, OSError]
    try:
        from mainsail.data.errors import DataError

        errors.append(DataError)
    except ImportError:
        pass
    return tuple(errors)
