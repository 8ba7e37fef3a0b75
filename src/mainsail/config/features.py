"""Config section: Feast feature store: online store, feature server, freshness."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, TypeAdapter, ValidationError, field_validator, model_validator

from mainsail.config.base import StrictModel

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_NAME = r"^[a-z][a-z0-9_]{0,62}$"


def parse_duration(value: Any) -> timedelta:
    """`45d`, `12h`, `30m`, `90s`, `2w`, ISO 8601 (`P45D`), seconds or a timedelta -> timedelta."""
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        result = timedelta(seconds=float(value))
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        result = timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    elif isinstance(value, str) and value.startswith("P"):
        # ISO 8601 (`P45D`, `PT12H`): what the config's own JSON dump writes.
        try:
            result = TypeAdapter(timedelta).validate_python(value)
        except ValidationError:
            raise ValueError(f"{value!r} is not an ISO 8601 duration") from None
    else:
        raise ValueError(
            f"expected a duration such as '45d', '12h', '30m', '90s' or seconds, got {value!r}"
        )
    if result <= timedelta(0):
        raise ValueError(f"a duration must be positive, got {value!r}")
    return result


class FeatureViewSpec(StrictModel):
    """One Feast feature view: a group of columns that share a source file and a TTL."""

    name: str = Field(pattern=_NAME)
    """View name (lower-case letters, digits, underscores); also names its parquet source."""
    features: list[str] = Field(min_length=1)
    """Columns of the dataset served by this view."""
    ttl: timedelta = timedelta(days=45)
    """Values older than this are not joined offline and are treated as missing online."""
    description: str = ""
    """One line stored in the Feast registry."""

    @field_validator("ttl", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)


class DerivedFeatureSpec(StrictModel):
    """A request-time ratio computed by an on-demand feature view: numerator / denominator."""

    name: str = Field(pattern=_NAME)
    """Name of the derived feature."""
    numerator: str
    """Numeric stored feature on top of the fraction."""
    denominator: str
    """Numeric stored feature below; a zero or missing denominator gives a missing value."""


class FeaturesConfig(StrictModel):
    """Feast feature store: online store, feature server, freshness."""

    repo_dir: Path = Path("feature_repo")
    """Feast repository folder (feature_store.yaml, definitions, data/), relative to the config
    file's folder unless absolute."""
    project: str | None = Field(None, pattern=r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
    """Feast project name; the Mainsail project name with dashes as underscores when null."""
    entity_name: str | None = Field(None, pattern=_NAME)
    """Name of the Feast entity; the entity key column without a trailing `_id` when null."""
    training_set: bool | None = None
    """Build the training rows with Feast: the data stage writes the feature sources from the
    data file, applies the repository and joins the labels point-in-time with
    `get_historical_features` on the feature service. When left out, true if the config file
    has a `features` section and false otherwise (decided when the config is loaded)."""
    service_version: int = Field(1, ge=1)
    """Version of the FeatureService that a model is trained and served with (`<project>_v<N>`)."""
    views: list[FeatureViewSpec] = Field(default_factory=list)
    """Feature views; when empty, one view `<project>_features` holds every feature column."""
    default_ttl: timedelta = timedelta(days=45)
    """TTL of the view generated when `views` is empty."""
    derived: list[DerivedFeatureSpec] = Field(default_factory=list)
    """Ratios computed at request time by one on-demand feature view `<project>_derived`."""
    registry_path: str = "data/registry.db"
    """Feast file registry, relative to `repo_dir`."""
    registry_cache_ttl_s: int = Field(60, ge=0)
    """Seconds a reader (SDK or feature server) caches the registry before re-reading it."""
    offline_store: Literal["duckdb", "file"] = "duckdb"
    """Feast offline store that joins the training rows point-in-time: `duckdb` (one SQL join
    in DuckDB) or `file` (Feast's dask store; the same rows, several times slower on large
    files, because dask hashes every column of the frames at each step of its graph)."""
    online_store: Literal["sqlite", "redis"] = "sqlite"
    """Online store: SQLite file (local default) or Redis (production)."""
    sqlite_path: str = "data/online.db"
    """SQLite online store file, relative to `repo_dir`."""
    redis_url: str = Field("redis://127.0.0.1:6379/0", pattern=r"^redis://")
    """Redis online store as `redis://[:password@]host:port/db`; a dedicated db number keeps
    Feast's keys apart from other users of the same server."""
    redis_connect_timeout_s: float = Field(2.0, gt=0)
    """How long the start-up check waits for Redis before reporting it unreachable."""
    server_host: str = "127.0.0.1"
    """Host the Feast feature server (`feast serve`) binds to and clients call."""
    server_port: int = Field(6566, ge=1, le=65535)
    """Port of the Feast feature server."""
    server_timeout_s: float = Field(1.0, gt=0)
    """HTTP client timeout for one lookup against the feature server."""
    enforce_freshness: bool = True
    """Treat an online value older than its view's TTL as missing (Feast applies TTL offline
    only)."""
    fallback: Literal["fail", "impute"] = "fail"
    """When the online store or feature server cannot be reached at serving time: `fail` the
    request (HTTP 503) or serve imputed values (counted in a metric)."""

    @field_validator("default_ttl", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)

    @model_validator(mode="after")
    def _unique_names(self) -> FeaturesConfig:
        views: set[str] = set()
        owner: dict[str, str] = {}
        for view in self.views:
            if view.name in views:
                raise ValueError(f"features.views: view name {view.name!r} is used twice")
            views.add(view.name)
            for feature in view.features:
                if feature in owner:
                    raise ValueError(
                        f"features.views: column {feature!r} is in view {owner[feature]!r} and "
                        f"in view {view.name!r}; each column belongs to one view"
                    )
                owner[feature] = view.name
        for derived in self.derived:
            if derived.name in owner:
                raise ValueError(f"features.derived: name {derived.name!r} is already a column")
        return self
