"""The feature repository's layout, derived from the project config (pure: no Feast import).

`plan_repo` turns the config (plus the dataset's column names when the config lists no views)
into names, views, TTLs and source paths; the Feast objects, the parquet writer, the online
clients and the checked-in feature_store.yaml all derive from this one plan, so a new dataset
needs a config, not hand-edited Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

from mainsail.config import ProjectConfig
from mainsail.config.features import DerivedFeatureSpec
from mainsail.features.errors import FeatureDefinitionError
from mainsail.features.freshness import LookupSpec


@dataclass(frozen=True)
class ViewPlan:
    """One feature view: its columns, TTL and the parquet source that holds them."""

    name: str
    features: tuple[str, ...]
    ttl: timedelta
    description: str = ""

    @property
    def source_path(self) -> str:
        """Parquet source, relative to the repository folder."""
        return f"data/{self.name}.parquet"


@dataclass(frozen=True)
class RepoPlan:
    """Everything Feast needs to know about one project, in plain values."""

    project: str
    entity_name: str
    entity_key: str
    timestamp: str
    views: tuple[ViewPlan, ...]
    derived: tuple[DerivedFeatureSpec, ...]
    service_name: str

    @property
    def derived_view_name(self) -> str:
        return f"{self.project}_derived"

    @property
    def stored_features(self) -> list[str]:
        return [f for view in self.views for f in view.features]

    @property
    def feature_names(self) -> list[str]:
        """Features the service returns, in order: stored ones view by view, then derived."""
        return self.stored_features + [d.name for d in self.derived]

    def view(self, name: str) -> ViewPlan:
        for view in self.views:
            if view.name == name:
                return view
        raise KeyError(name)

    def view_of(self, feature: str) -> ViewPlan:
        """The stored view that serves `feature`."""
        for view in self.views:
            if feature in view.features:
                return view
        raise KeyError(feature)


def feast_project_name(cfg: ProjectConfig) -> str:
    return cfg.features.project or cfg.name.replace("-", "_")


def non_feature_columns(cfg: ProjectConfig) -> set[str]:
    """Columns that are never features: keys, timestamps, target, and the configured drops."""
    data = cfg.data
    special = {data.target, data.entity_key, data.event_timestamp, data.label_timestamp}
    return {c for c in special if c} | set(data.drop)


def plan_repo(cfg: ProjectConfig, columns: Sequence[str] | None = None) -> RepoPlan:
    """The repository plan for `cfg`; `columns` (the dataset's) is needed when no views are set.

    Raises FeatureDefinitionError naming the key and column when config and data disagree.
    """
    data, fcfg = cfg.data, cfg.features
    if not data.entity_key:
        raise FeatureDefinitionError("data.entity_key: Feast needs an entity key column; set it")
    if not data.event_timestamp:
        raise FeatureDefinitionError(
            "data.event_timestamp: Feast needs an event timestamp column for point-in-time joins"
        )
    project = feast_project_name(cfg)
    reserved = non_feature_columns(cfg)
    if fcfg.views:
        views = tuple(ViewPlan(v.name, tuple(v.features), v.ttl, v.description) for v in fcfg.views)
    else:
        if columns is None:
            raise FeatureDefinitionError(
                "features.views is empty, so the dataset's columns are needed to build the "
                "default view; write the sources first (mainsail.features.write_sources)"
            )
        features = tuple(c for c in columns if c not in reserved)
        if not features:
            raise FeatureDefinitionError("the dataset has no feature columns besides keys/target")
        views = (ViewPlan(f"{project}_features", features, fcfg.default_ttl),)
    for i, view in enumerate(views):
        for feature in view.features:
            if feature in reserved:
                raise FeatureDefinitionError(
                    f"features.views[{i}] ({view.name}): column {feature!r} is an entity key, "
                    "timestamp, target or dropped column and cannot be a feature"
                )
        if columns is not None:
            absent = [f for f in view.features if f not in columns]
            if absent:
                raise FeatureDefinitionError(
                    f"features.views[{i}] ({view.name}): columns {absent} are not in the dataset"
                )
    stored = {f for v in views for f in v.features}
    for i, derived in enumerate(fcfg.derived):
        for role in ("numerator", "denominator"):
            name = getattr(derived, role)
            if name not in stored:
                raise FeatureDefinitionError(
                    f"features.derived[{i}] ({derived.name}): {role} {name!r} is not a feature "
                    "of any view"
                )
        if derived.name in stored:
            raise FeatureDefinitionError(
                f"features.derived[{i}]: {derived.name!r} is already a stored feature"
            )
    entity_name = fcfg.entity_name or data.entity_key.removesuffix("_id") or data.entity_key
    return RepoPlan(
        project=project,
        entity_name=entity_name,
        entity_key=data.entity_key,
        timestamp=data.event_timestamp,
        views=views,
        derived=tuple(fcfg.derived),
        service_name=f"{project}_v{fcfg.service_version}",
    )


def lookup_spec(plan: RepoPlan, entity_type: str) -> LookupSpec:
    """What an online client needs from the plan (see `LookupSpec`)."""
    features = [(v.name, f) for v in plan.views for f in v.features]
    features += [(plan.derived_view_name, d.name) for d in plan.derived]
    derived_inputs = {
        d.name: tuple(dict.fromkeys(plan.view_of(c).name for c in (d.numerator, d.denominator)))
        for d in plan.derived
    }
    return LookupSpec(
        service=plan.service_name,
        entity_key=plan.entity_key,
        entity_type=entity_type,
        features=tuple(features),
        ttl_s={v.name: v.ttl.total_seconds() for v in plan.views},
        derived_inputs=derived_inputs,
    )


def resolve_repo_dir(cfg: ProjectConfig, config_dir: Path | None = None) -> Path:
    """`features.repo_dir`, made absolute against the config file's folder (or the cwd)."""
    repo = cfg.features.repo_dir
    if repo.is_absolute():
        return repo
    return ((config_dir or Path.cwd()) / repo).resolve()


def redis_connection_string(url: str) -> str:
    """`redis://[:pw@]host:port/db` -> Feast's `host:port,db=N[,password=pw]`."""
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        raise FeatureDefinitionError(
            f"features.redis_url: expected redis://host:port/db, got {url!r}"
        )
    db = parts.path.lstrip("/") or "0"
    if not db.isdigit():
        raise FeatureDefinitionError(f"features.redis_url: db must be a number, got {db!r}")
    out = f"{parts.hostname}:{parts.port or 6379},db={db}"
    if parts.password:
        out += f",password={unquote(parts.password)}"
    return out


def render_feature_store_yaml(cfg: ProjectConfig) -> str:
    """The feature_store.yaml that `cfg` implies (paths relative to the repository folder)."""
    fcfg = cfg.features
    if fcfg.online_store == "redis":
        t = fcfg.redis_connect_timeout_s  # a hung Redis must not block a lookup forever
        online = (
            "online_store:\n"
            "  type: redis\n"
            f'  connection_string: "{redis_connection_string(fcfg.redis_url)},'
            f'socket_connect_timeout={t:g},socket_timeout={t:g}"\n'
        )
    else:
        online = f"online_store:\n  type: sqlite\n  path: {fcfg.sqlite_path}\n"
    return (
        "# Generated from the Mainsail project config (mainsail features apply); do not edit.\n"
        f"project: {feast_project_name(cfg)}\n"
        "provider: local\n"
        "registry:\n"
        "  registry_type: file\n"
        f"  path: {fcfg.registry_path}\n"
        f"  cache_ttl_seconds: {fcfg.registry_cache_ttl_s}\n"
        f"{online}"
        "offline_store:\n"
        f"  type: {fcfg.offline_store}\n"
        "entity_key_serialization_version: 3\n"
    )
