"""Online feature vectors in-process through the Feast SDK (pipeline env: needs Feast).

`SdkLookup.get(entity_ids)` is the same call as `mainsail.features.http.HttpLookup.get`: a
batch of ids in, `FeatureVectors` out, freshness enforced and metrics counted. A store that
cannot be reached follows `features.fallback`: raise OnlineStoreUnavailableError (HTTP 503) or
serve imputed values.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mainsail.config import ProjectConfig
from mainsail.features import feast_import  # noqa: F401 - before any Feast import: see there
from mainsail.features.definitions import entity_type, plan_from_sources
from mainsail.features.errors import OnlineStoreUnavailableError
from mainsail.features.freshness import (
    Assembler,
    FeatureVectors,
    LookupSpec,
    MetricsSink,
    check_entity_ids,
)
from mainsail.features.layout import lookup_spec

if TYPE_CHECKING:
    from feast import FeatureStore

Columns = tuple[dict[str, list[Any]], dict[str, list[bool]], dict[str, list[float]]]
"""Per feature: values (None where absent), present flags, event timestamps (epoch s)."""

#: Entities per online read; larger batches are split.
MAX_BATCH = 1000

# ValueProto fields that convert to Python by plain attribute access (the common case); other
# kinds go through Feast's general converter.
_SCALARS = frozenset(
    {"int32_val", "int64_val", "double_val", "float_val", "string_val", "bool_val", "bytes_val"}
)


def spec_for(cfg: ProjectConfig, repo_dir: Path) -> LookupSpec:
    """The lookup spec of a written repository (see `LookupSpec`)."""
    plan = plan_from_sources(cfg, repo_dir)
    return lookup_spec(plan, entity_type(plan, repo_dir))


class SdkLookup:
    """Feature vectors from the online store through `FeatureStore.get_online_features`."""

    def __init__(
        self,
        store: FeatureStore,
        spec: LookupSpec,
        *,
        fallback: str = "fail",
        enforce_freshness: bool = True,
        imputation: Mapping[str, Any] | None = None,
        metrics: MetricsSink | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        import redis

        self.store = store
        self.spec = spec
        self.fallback_policy = fallback
        kwargs: dict[str, Any] = {"clock": clock} if clock is not None else {}
        self.assembler = Assembler(
            spec,
            enforce_freshness=enforce_freshness,
            imputation=imputation,
            metrics=metrics,
            **kwargs,
        )
        self._service = store.get_feature_service(spec.service)
        self._direct = _direct_reads(store, spec)
        _fail_fast_redis(store)
        self.unavailable: tuple[type[BaseException], ...] = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            sqlite3.OperationalError,
            ConnectionError,
        )

    @classmethod
    def from_config(
        cls,
        cfg: ProjectConfig,
        repo_dir: Path,
        *,
        imputation: Mapping[str, Any] | None = None,
        metrics: MetricsSink | None = None,
        clock: Callable[[], float] | None = None,
    ) -> SdkLookup:
        """Open the store (clear error when Redis is unreachable) and the lookup on it."""
        from mainsail.features.store import check_registry, open_store

        store = open_store(cfg, repo_dir)
        check_registry(cfg, repo_dir, must_exist=True)
        return cls(
            store,
            spec_for(cfg, repo_dir),
            fallback=cfg.features.fallback,
            enforce_freshness=cfg.features.enforce_freshness,
            imputation=imputation,
            metrics=metrics,
            clock=clock,
        )

    def get(self, entity_ids: Sequence[Any]) -> FeatureVectors:
        """Feature vectors for `entity_ids` (unknown ids come back missing and counted)."""
        ids = check_entity_ids(self.spec, entity_ids)
        if not ids:
            return FeatureVectors([], self.spec.feature_names, [], [])
        if len(ids) > MAX_BATCH:
            parts = [self.get(ids[i : i + MAX_BATCH]) for i in range(0, len(ids), MAX_BATCH)]
            return _concat(parts)
        try:
            values, present, stamps = self.columns(ids)
        except self.unavailable as err:
            if self.fallback_policy == "impute":
                return self.assembler.fallback(ids, "online_store_unreachable")
            raise OnlineStoreUnavailableError(f"online store unreachable: {err}") from err
        return self.assembler.assemble(ids, values, present, stamps)

    def columns(self, ids: list[Any], *, every_stamp: bool = False) -> Columns:
        """The stored values of checked `ids` (at most MAX_BATCH), per feature: values (None
        where absent), present flags and event timestamps (epoch seconds, 0 where absent) of
        the one feature per view that freshness reads, or of every feature (`every_stamp`).
        The store's own errors propagate (those in :attr:`unavailable`: unreachable)."""
        if self._direct is not None:
            return self._read_direct(ids, self._direct, every_stamp)
        response = self.store.get_online_features(
            features=self._service,
            entity_rows={self.spec.entity_key: ids},
            full_feature_names=False,
        )
        return self._columns_of(response.proto, every_stamp)

    def _read_direct(self, ids: list[Any], direct: _DirectReads, every_stamp: bool) -> Columns:
        """One `online_read` per view on the store: what `get_online_features` does for a
        service without on-demand views, minus its per-call planning and response building."""
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        field = "string_val" if self.spec.entity_type == "string" else "int64_val"
        join_keys = [self.spec.entity_key]
        keys = [EntityKey(join_keys=join_keys, entity_values=[Value(**{field: i})]) for i in ids]
        values: dict[str, list[Any]] = {}
        present: dict[str, list[bool]] = {}
        stamps: dict[str, list[float]] = {}
        ts_names = self.assembler.timestamp_features
        for view, names in direct.views:
            # A copy: Feast's Redis store appends its timestamp field to the list it is given.
            rows = direct.online.online_read(direct.config, view, keys, list(names))
            view_stamps: list[float] | None = None
            for name in names:
                col: list[Any] = []
                for _, row in rows:
                    v = row.get(name) if row else None
                    kind = v.WhichOneof("val") if v is not None else None
                    col.append(None if kind is None else _python(v, kind))
                values[name] = col
                present[name] = [c is not None for c in col]
                if every_stamp or name in ts_names:
                    if view_stamps is None:
                        view_stamps = [ts.timestamp() if ts is not None else 0.0 for ts, _ in rows]
                    stamps[name] = view_stamps
        return values, present, stamps

    def _columns_of(self, proto: Any, every_stamp: bool) -> Columns:
        from feast.type_map import feast_value_type_to_python_type

        values: dict[str, list[Any]] = {}
        present: dict[str, list[bool]] = {}
        stamps: dict[str, list[float]] = {}
        ts_names = self.assembler.timestamp_features
        for name, vector in zip(proto.metadata.feature_names.val, proto.results, strict=True):
            col: list[Any] = []
            for v in vector.values:
                kind = v.WhichOneof("val")
                if kind is None:
                    col.append(None)
                elif kind in _SCALARS:
                    col.append(getattr(v, kind))
                else:
                    col.append(feast_value_type_to_python_type(v))
            values[name] = col
            statuses = vector.statuses
            present[name] = [s == 1 and c is not None for s, c in zip(statuses, col, strict=True)]
            if every_stamp or name in ts_names:
                stamps[name] = [t.seconds + t.nanos * 1e-9 for t in vector.event_timestamps]
        return values, present, stamps


def _python(value: Any, kind: str) -> Any:
    if kind in _SCALARS:
        return getattr(value, kind)
    from feast.type_map import feast_value_type_to_python_type

    return feast_value_type_to_python_type(value)


@dataclass(frozen=True)
class _DirectReads:
    """What `SdkLookup` reads the store with directly: provider's online store, repo config,
    and each stored view of the service with its feature names."""

    online: Any
    config: Any
    views: tuple[tuple[Any, list[str]], ...]


def _direct_reads(store: FeatureStore, spec: LookupSpec) -> _DirectReads | None:
    """The direct read plan, or None when the service has on-demand views (their
    transformations run inside `get_online_features`) or Feast's layout is not the expected."""
    if spec.derived_inputs:
        return None
    online = getattr(store._get_provider(), "online_store", None)
    if online is None or not hasattr(online, "online_read"):
        return None
    names: dict[str, list[str]] = {}
    for view, feature in spec.features:
        names.setdefault(view, []).append(feature)
    views = []
    for view, features in names.items():
        fv = store.get_feature_view(view)
        if not set(features) <= {f.name for f in fv.features}:
            return None
        views.append((fv, features))
    return _DirectReads(online=online, config=store.config, views=tuple(views))


def _fail_fast_redis(store: FeatureStore) -> None:
    """One immediate retry instead of redis-py's default backoff (about 10 s in all): when
    Redis is down, a lookup should reach the fallback policy, not hold the request."""
    if getattr(store.config.online_store, "type", None) != "redis":
        return
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # Feast creates its Redis client lazily and exposes it only through this method.
    online = store._get_provider().online_store
    client = online._get_client(store.config.online_store)  # type: ignore[attr-defined]
    client.set_retry(Retry(NoBackoff(), 1))


def _concat(parts: list[FeatureVectors]) -> FeatureVectors:
    first = parts[0]
    return FeatureVectors(
        entity_ids=[e for p in parts for e in p.entity_ids],
        feature_names=first.feature_names,
        rows=[r for p in parts for r in p.rows],
        missing=[m for p in parts for m in p.missing],
        stale=sum(p.stale for p in parts),
        unknown=[u for p in parts for u in p.unknown],
        fallback=any(p.fallback for p in parts),
    )


def open_lookup(
    cfg: ProjectConfig,
    repo_dir: Path,
    *,
    url: str | None = None,
    imputation: Mapping[str, Any] | None = None,
    metrics: MetricsSink | None = None,
) -> Any:
    """The lookup `cfg` asks for: over HTTP to the feature server at `url` when given (or
    `features.server_host:server_port` with `url="config"`), else in-process through the SDK.

    Both answer `.get(entity_ids) -> FeatureVectors`.
    """
    if url is None:
        return SdkLookup.from_config(cfg, repo_dir, imputation=imputation, metrics=metrics)
    from mainsail.features.http import HttpLookup

    fcfg = cfg.features
    base = f"http://{fcfg.server_host}:{fcfg.server_port}" if url == "config" else url
    return HttpLookup(
        base,
        spec_for(cfg, repo_dir),
        timeout_s=fcfg.server_timeout_s,
        fallback=fcfg.fallback,
        enforce_freshness=fcfg.enforce_freshness,
        imputation=imputation,
        metrics=metrics,
    )
