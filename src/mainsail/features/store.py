"""The Feast repository as a few calls: apply, materialize, training set, open the store.

Each call checks what Feast would otherwise report obscurely: absent sources, a corrupt or
locked registry, an unreachable Redis. Feast is imported inside the functions.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mainsail.config import ProjectConfig
from mainsail.features import feast_import  # noqa: F401 - before any Feast import: see there
from mainsail.features.definitions import (
    build_definitions,
    plan_from_sources,
    read_source_schema,
)
from mainsail.features.errors import (
    FeatureDefinitionError,
    OnlineStoreUnavailableError,
    RegistryError,
)
from mainsail.features.layout import RepoPlan, plan_repo, render_feature_store_yaml
from mainsail.features.sources import write_sources

if TYPE_CHECKING:
    from feast import FeatureStore


@dataclass
class ApplySummary:
    """What `apply` registered."""

    project: str
    service: str
    views: dict[str, list[str]]
    """View -> features (the on-demand view included)."""
    ttl_s: dict[str, float]
    deleted: list[str] = field(default_factory=list)
    sources: dict[str, Path] = field(default_factory=dict)


@dataclass
class MaterializeSummary:
    """What `materialize` loaded into the online store."""

    views: list[str]
    start: datetime | None
    """None for incremental runs: each view starts where its last run ended."""
    end: datetime
    online_store: str


def write_repo_config(cfg: ProjectConfig, repo_dir: Path) -> Path:
    """Write feature_store.yaml from the config (atomically); returns its path."""
    repo_dir.mkdir(parents=True, exist_ok=True)
    path = repo_dir / "feature_store.yaml"
    text = render_feature_store_yaml(cfg)
    if not path.exists() or path.read_text() != text:
        tmp = path.with_name(f".feature_store.yaml.{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return path


def check_online_store(cfg: ProjectConfig) -> None:
    """Fail fast with a clear message when the configured Redis cannot be reached."""
    fcfg = cfg.features
    if fcfg.online_store != "redis":
        return
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis.from_url(
        fcfg.redis_url,
        socket_connect_timeout=fcfg.redis_connect_timeout_s,
        socket_timeout=fcfg.redis_connect_timeout_s,
        retry=Retry(NoBackoff(), 0),  # the default backoff would hide a dead Redis for ~15 s
    )
    try:
        client.ping()
    except redis.exceptions.RedisError as err:
        raise OnlineStoreUnavailableError(
            f"Redis online store at {_redacted(fcfg.redis_url)} is unreachable ({err}); start "
            "it, fix features.redis_url, or set features.online_store: sqlite"
        ) from None
    finally:
        client.close()


def _redacted(url: str) -> str:
    if "@" in url:
        return "redis://***@" + url.split("@", 1)[1]
    return url


def registry_file(cfg: ProjectConfig, repo_dir: Path) -> Path:
    return repo_dir / cfg.features.registry_path


def check_registry(cfg: ProjectConfig, repo_dir: Path, *, must_exist: bool) -> None:
    """RegistryError when the registry file is unreadable, corrupt, or (if required) absent."""
    from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto
    from google.protobuf.message import DecodeError

    path = registry_file(cfg, repo_dir)
    if not path.exists():
        if must_exist:
            raise RegistryError(
                f"Feast registry {path} does not exist; run `mainsail features apply` first"
            )
        return
    try:
        data = path.read_bytes()
    except OSError as err:
        raise RegistryError(f"Feast registry {path} cannot be read: {err}") from None
    try:
        proto = RegistryProto()
        proto.ParseFromString(data)
    except DecodeError as err:
        raise RegistryError(
            f"Feast registry {path} is corrupt ({err}); delete it and run "
            "`mainsail features apply` again to rebuild it from the config"
        ) from None
    if must_exist and not any(p.spec.name for p in proto.projects) and not proto.feature_views:
        raise RegistryError(
            f"Feast registry {path} holds no definitions; run `mainsail features apply` first"
        )


#: Lock files this thread holds: a holder may take the lock again (e.g. the data stage holds it
#: around writing the sources, `apply` and the training join; `apply` takes it itself).
_held = threading.local()


@contextlib.contextmanager
def registry_lock(cfg: ProjectConfig, repo_dir: Path, timeout_s: float = 5.0) -> Iterator[None]:
    """Exclusive lock for registry writers: Feast's file registry has none of its own, and two
    concurrent writers would each overwrite the other's changes. Re-entrant within a thread."""
    path = registry_file(cfg, repo_dir).with_suffix(".lock").resolve()
    held: set[Path] = _held.__dict__.setdefault("paths", set())
    if path in held:
        yield
        return
    held.add(path)
    try:
        with _flock(cfg, repo_dir, path, timeout_s):
            yield
    finally:
        held.discard(path)


@contextlib.contextmanager
def _flock(cfg: ProjectConfig, repo_dir: Path, path: Path, timeout_s: float) -> Iterator[None]:
    import time

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "unknown"
                    raise RegistryError(
                        f"Feast registry {registry_file(cfg, repo_dir)} is locked by another "
                        f"writer (pid {holder}) for more than {timeout_s:g}s; wait for it or "
                        f"remove {path} if that process is gone"
                    ) from None
                time.sleep(0.05)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def open_store(cfg: ProjectConfig, repo_dir: Path, *, check: bool = True) -> FeatureStore:
    """A FeatureStore on `repo_dir` (feature_store.yaml rewritten from the config)."""
    write_repo_config(cfg, repo_dir)
    if check:
        check_online_store(cfg)  # before importing Feast (seconds): a dead Redis fails fast
        check_registry(cfg, repo_dir, must_exist=False)
    from feast import FeatureStore

    return FeatureStore(repo_path=str(repo_dir))


def apply(
    cfg: ProjectConfig,
    repo_dir: Path,
    frame: pd.DataFrame | None = None,
    plan: RepoPlan | None = None,
) -> ApplySummary:
    """Write the sources from `frame` (when given), then register the definitions.

    `plan` is the repository's plan when the caller has it (computed once per operation);
    otherwise it is the frame's, or the written sources'. Objects this project registered
    before and the config no longer defines are deleted.
    """
    if plan is None:
        plan = plan_repo(cfg, list(frame.columns)) if frame is not None else None
    sources = write_sources(frame, cfg, repo_dir, plan) if frame is not None else {}
    plan = plan or plan_from_sources(cfg, repo_dir)
    store = open_store(cfg, repo_dir)
    objects = build_definitions(cfg, repo_dir, plan)
    with registry_lock(cfg, repo_dir):
        wanted = {(type(o).__name__, o.name) for o in objects}
        registered: list[Any] = [
            *store.list_feature_services(),
            *store.list_on_demand_feature_views(),
            *store.list_feature_views(),
        ]
        stale = [o for o in registered if (type(o).__name__, o.name) not in wanted]
        try:
            with _quiet_feast():
                store.apply(objects, objects_to_delete=stale, partial=False)
        except Exception as err:
            _reraise_store_error(cfg, err)
            raise
    views = {v.name: list(v.features) for v in plan.views}
    if plan.derived:
        views[plan.derived_view_name] = [d.name for d in plan.derived]
    return ApplySummary(
        project=plan.project,
        service=plan.service_name,
        views=views,
        ttl_s={v.name: v.ttl.total_seconds() for v in plan.views},
        deleted=[str(o.name) for o in stale],
        sources=sources,
    )


@contextlib.contextmanager
def _quiet_feast() -> Iterator[None]:
    """Feast's warnings that say nothing to our users, silenced around a Feast call."""
    with warnings.catch_warnings():
        # On every use, that on-demand views are "experimental": we rely on them knowingly
        # (python mode, small ratios).
        warnings.filterwarnings("ignore", message="On demand feature view is an experimental")
        # The file store's dask, when the key's categories differ between labels and sources:
        # the merge compares values, so that is harmless.
        warnings.filterwarnings("ignore", message="Merging dataframes with merge column data")
        # ibis, under the DuckDB store, calls a method that DuckDB 2 deprecates: a note for
        # ibis's maintainers.
        warnings.filterwarnings("ignore", message=r"fetch_arrow_table\(\) is deprecated")
        yield


def _reraise_store_error(cfg: ProjectConfig, err: Exception) -> None:
    """Turn connection failures from the online store into OnlineStoreUnavailableError."""
    import sqlite3

    import redis

    if isinstance(err, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        raise OnlineStoreUnavailableError(
            f"Redis online store at {_redacted(cfg.features.redis_url)} failed: {err}"
        ) from err
    if isinstance(err, sqlite3.OperationalError):
        raise OnlineStoreUnavailableError(
            f"SQLite online store {cfg.features.sqlite_path} failed: {err}"
        ) from err


def materialize(
    cfg: ProjectConfig,
    repo_dir: Path,
    *,
    end: datetime | None = None,
    start: datetime | None = None,
    plan: RepoPlan | None = None,
) -> MaterializeSummary:
    """Load the sources into the online store.

    Incremental by default: each view continues from where its previous run ended (its first
    run starts one TTL before `end`, as older values would be stale anyway). With `start`, the
    interval [start, end] is loaded for every view.
    """
    plan = plan or plan_from_sources(cfg, repo_dir)
    for view in plan.views:
        read_source_schema(repo_dir, view.name, view.source_path)
    check_registry(cfg, repo_dir, must_exist=True)
    store = open_store(cfg, repo_dir)
    registered = {fv.name for fv in store.list_feature_views()}
    absent = [v.name for v in plan.views if v.name not in registered]
    if absent:
        raise RegistryError(
            f"feature views {absent} are configured but not registered; run "
            "`mainsail features apply` first"
        )
    end = _utc(end or datetime.now(UTC))
    names = [v.name for v in plan.views]
    with registry_lock(cfg, repo_dir), _quiet_feast():
        try:
            if start is None:
                store.materialize_incremental(end_date=end, feature_views=names)
            else:
                store.materialize(start_date=_utc(start), end_date=end, feature_views=names)
        except Exception as err:
            _reraise_store_error(cfg, err)
            raise
    return MaterializeSummary(
        views=names,
        start=_utc(start) if start else None,
        end=end,
        online_store=cfg.features.online_store,
    )


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def training_set(
    cfg: ProjectConfig,
    repo_dir: Path,
    labels: pd.DataFrame,
    store: FeatureStore | None = None,
    plan: RepoPlan | None = None,
) -> pd.DataFrame:
    """Point-in-time training rows: each label row gets the latest feature values observed
    at or before its event timestamp (and within each view's TTL), never later ones.

    `labels` holds the entity key, the event timestamp, and any other columns to carry
    (target, label timestamp); every row comes back, in the order given, with the label
    columns as given and missing features where no observation lies within the TTL.
    """
    plan = plan or plan_from_sources(cfg, repo_dir)
    _check_labels(plan, labels, cfg.data.label_timestamp)
    store = store or open_store(cfg, repo_dir)
    service = store.get_feature_service(plan.service_name)
    entity_df = labels.copy()
    order = "__mainsail_row__"
    entity_df[order] = range(len(entity_df))
    # Feast finds the join timestamp by the name `event_timestamp` when several are present.
    if plan.timestamp != "event_timestamp":
        if "event_timestamp" in entity_df.columns:
            raise FeatureDefinitionError(
                "labels have a column 'event_timestamp' besides the configured "
                f"{plan.timestamp!r}; rename one"
            )
        entity_df = entity_df.rename(columns={plan.timestamp: "event_timestamp"})
    if getattr(entity_df["event_timestamp"].dtype, "tz", None) is None:
        entity_df["event_timestamp"] = entity_df["event_timestamp"].dt.tz_localize("UTC")
    with _quiet_feast():
        job = store.get_historical_features(entity_df=entity_df, features=service)
        out = job.to_df()
    # Feast's file offline store drops a label row whose entity has observations but none
    # within the TTL before the row's time; put it back, with its features missing (the
    # DuckDB store keeps it: then the reindex changes nothing).
    features = [f for f in plan.feature_names if f in out.columns]
    found = out.set_index(order)[features]
    if found.index.has_duplicates:
        raise FeatureDefinitionError(
            "labels: Feast returned several rows for one label row; the sources repeat an "
            f"({plan.entity_key}, {plan.timestamp}) pair"
        )
    found = found.reindex(pd.RangeIndex(len(entity_df)))
    return pd.concat([labels.reset_index(drop=True), found], axis=1)


def training_labels(cfg: ProjectConfig, frame: pd.DataFrame) -> pd.DataFrame:
    """The label rows of a dataset frame (e.g. `DataStageResult.frame`): entity key, event
    timestamp, label timestamp (when configured) and target, for `training_set`."""
    data = cfg.data
    columns = [data.entity_key, data.event_timestamp, data.label_timestamp, data.target]
    absent = [c for c in columns if c and c not in frame.columns]
    if absent:
        raise FeatureDefinitionError(f"dataset: columns {absent} are missing")
    return frame[[c for c in columns if c]].reset_index(drop=True)


def _check_labels(plan: RepoPlan, labels: pd.DataFrame, label_ts: str | None) -> None:
    for column in (plan.entity_key, plan.timestamp):
        if column not in labels.columns:
            raise FeatureDefinitionError(f"labels: column {column!r} is missing")
    if labels[plan.timestamp].isna().any():
        raise FeatureDefinitionError(f"labels: column {plan.timestamp!r} has missing timestamps")
    if label_ts and label_ts in labels.columns:
        # Features are joined as of the event time; an event after its label would let
        # post-label values into the row.
        late = labels[plan.timestamp] > labels[label_ts]
        if late.any():
            raise FeatureDefinitionError(
                f"labels: {int(late.sum())} rows have {plan.timestamp!r} after {label_ts!r}; "
                "features would be observed after the label was known"
            )
    overlap = [c for c in labels.columns if c in plan.feature_names]
    if overlap:
        raise FeatureDefinitionError(
            f"labels: columns {overlap} are features; pass keys, timestamps and the target only"
        )


def upload_registry(cfg: ProjectConfig, repo_dir: Path, key: str, environ: Any) -> str:
    """Copy the applied registry file to `key` in the model registry's bucket (created when
    missing): where a cluster's Feast feature server reads it (`s3://<bucket>/<key>`, the
    chart's feast.registryKey). The S3 endpoint, bucket and keys come as the registry's do
    (registry config, else MAINSAIL_S3_*). Returns the `s3://` URL written."""
    from mainsail.registry.store import ModelRegistry

    path = registry_file(cfg, repo_dir)
    if not path.is_file():
        raise RegistryError(f"no Feast registry at {path}: apply the definitions first")
    registry = ModelRegistry.from_config(cfg.registry, environ)
    registry.ensure_bucket()
    registry.client.fput_object(
        registry.bucket, key, str(path), content_type="application/octet-stream"
    )
    return f"s3://{registry.bucket}/{key}"
