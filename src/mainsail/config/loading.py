"""Reading a project config: YAML file, dotted overrides, validation with messages that name
the key, the file and the closest valid spelling; and the JSON form that pipeline steps receive."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from mainsail.config.base import ConfigError, suggest
from mainsail.config.project import ProjectConfig


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The config model that holds the key at `loc` (for unknown-key suggestions)."""
    model: type[BaseModel] = ProjectConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        nested = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if nested is None:
            return None
        model = nested
    return model


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per problem: `file: dotted.key: what is wrong`."""
    lines = []
    for item in err.errors():
        loc = tuple(item["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        if item["type"] == "extra_forbidden":
            model = _model_at(loc)
            hint = suggest(str(loc[-1]), model.model_fields) if model else ""
            lines.append(f"{source}: {key}: unknown key{hint}")
        elif item["type"] == "missing":
            lines.append(f"{source}: {key}: required key is missing")
        else:
            msg = str(item["msg"]).removeprefix("Value error, ")
            given = item.get("input")
            # A check across keys receives the whole section (or config) as its input: the
            # message names the keys already, a dump of the mapping would only bury it.
            shown = "" if isinstance(given, dict | list) else f" (got {given!r})"
            lines.append(f"{source}: {key}: {msg}{shown}")
    return "\n".join(lines)


def parse_config(
    raw: dict[str, Any], source: str = "<config>", base_dir: Path | None = None
) -> ProjectConfig:
    """Validate a config mapping; relative paths are resolved against `base_dir`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of keys at the top level")
    try:
        cfg = ProjectConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None
    if base_dir is not None:
        if not cfg.data.path.is_absolute():
            cfg.data.path = (base_dir / cfg.data.path).resolve()
        if not cfg.runs_dir.is_absolute():
            cfg.runs_dir = (base_dir / cfg.runs_dir).resolve()
        if not cfg.features.repo_dir.is_absolute():
            cfg.features.repo_dir = (base_dir / cfg.features.repo_dir).resolve()
    if cfg.features.training_set is None:
        # A features section means the features come from Feast (see FeaturesConfig).
        cfg.features.training_set = isinstance(raw.get("features"), dict)
    return cfg


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> ProjectConfig:
    """Read, validate and resolve a YAML project config.

    `overrides` maps dotted keys to values (`{"data.synthetic.rows": 1000}`), applied before
    validation so they are checked like the file's own keys.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    # Relative paths are relative to the config file, so a config works from any directory.
    return parse_config(raw, str(path), base_dir=path.resolve().parent)


def _json_default(value: Any) -> Any:
    # Durations go as seconds: every duration field of the config accepts a number of seconds,
    # whereas pydantic's ISO form ("P45D") is not accepted back by all of them.
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__} in the config JSON")


def config_to_json(cfg: ProjectConfig) -> str:
    """The config as the JSON string that pipeline steps receive (round-trips exactly)."""
    return json.dumps(cfg.model_dump(mode="python"), default=_json_default, sort_keys=True)


def config_from_json(config_json: str) -> ProjectConfig:
    """The config a step received; a clear error when it is not a valid project config."""
    try:
        return ProjectConfig.model_validate_json(config_json)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, "config_json")) from None
