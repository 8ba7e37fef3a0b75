"""Online freshness enforcement and the lookup result, shared by the SDK and HTTP clients.

Feast applies a view's TTL only to offline (point-in-time) joins; online it returns whatever
was materialized last, however old. `Assembler` turns the raw per-feature columns of an online
response into feature vectors where a value older than its view's TTL counts as missing
(imputed when an imputation map is given), and reports ages and counts to a metrics sink.

Standard library only: the serving env, which cannot import Feast, uses it through
`mainsail.features.http`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class LookupSpec:
    """What a client must know to enforce freshness: plain values, JSON-serialisable.

    Built from the project config by `mainsail.features.layout.lookup_spec`, or loaded from
    JSON (`from_json`) where the config is not at hand (a serving container).
    """

    service: str
    """Feast FeatureService name (e.g. `churn_v1`)."""
    entity_key: str
    """Join key column (e.g. `customer_id`)."""
    entity_type: str
    """`string` or `int64`: the type entity ids must have."""
    features: tuple[tuple[str, str], ...]
    """(view, feature) in service order; derived features carry the on-demand view's name."""
    ttl_s: Mapping[str, float]
    """TTL in seconds of each stored view."""
    derived_inputs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Derived feature -> stored views it reads (stale input -> missing output)."""

    @property
    def feature_names(self) -> list[str]:
        return [f for _, f in self.features]

    def to_json(self) -> str:
        return json.dumps(
            {
                "service": self.service,
                "entity_key": self.entity_key,
                "entity_type": self.entity_type,
                "features": [list(p) for p in self.features],
                "ttl_s": dict(self.ttl_s),
                "derived_inputs": {k: list(v) for k, v in self.derived_inputs.items()},
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> LookupSpec:
        raw = json.loads(text)
        return cls(
            service=raw["service"],
            entity_key=raw["entity_key"],
            entity_type=raw["entity_type"],
            features=tuple((v, f) for v, f in raw["features"]),
            ttl_s={k: float(v) for k, v in raw["ttl_s"].items()},
            derived_inputs={k: tuple(v) for k, v in raw.get("derived_inputs", {}).items()},
        )


class MetricsSink(Protocol):
    """Where lookup statistics go (`mainsail.features.metrics.FeatureMetrics` in practice)."""

    def observe_ages(self, view: str, ages: Sequence[float]) -> None: ...

    def count_stale(self, view: str, n: int) -> None: ...

    def count_missing(self, view: str, n: int) -> None: ...

    def count_unknown_entities(self, n: int) -> None: ...

    def count_fallback(self, reason: str, n: int) -> None: ...


@dataclass
class FeatureVectors:
    """Feature vectors for a batch of entity ids, in request order."""

    entity_ids: list[Any]
    feature_names: list[str]
    rows: list[dict[str, Any]]
    """One mapping feature -> value per entity; missing/stale values are imputed or None."""
    missing: list[list[str]]
    """Per entity: features that were absent, null or stale (their values are imputed)."""
    stale: int = 0
    """Values dropped because they were older than their view's TTL."""
    unknown: list[Any] = field(default_factory=list)
    """Entity ids the online store knows nothing about."""
    fallback: bool = False
    """True when the store could not be reached and every value is imputed."""

    def matrix(self) -> list[list[Any]]:
        """Rows as lists in `feature_names` order (the model's input order)."""
        names = self.feature_names
        return [[row[n] for n in names] for row in self.rows]


def check_entity_ids(spec: LookupSpec, entity_ids: Sequence[Any]) -> list[Any]:
    """The ids as a list; a clear ValueError naming the position of a malformed one."""
    if isinstance(entity_ids, str | bytes):
        raise ValueError(f"entity ids must be a list of {spec.entity_key} values, not one string")
    ids = list(entity_ids)
    want: type = str if spec.entity_type == "string" else int
    for i, value in enumerate(ids):
        if not isinstance(value, want) or isinstance(value, bool):
            raise ValueError(
                f"entity id #{i} ({spec.entity_key}) must be {spec.entity_type}, "
                f"got {type(value).__name__} {value!r}"
            )
    return ids


class Assembler:
    """Builds `FeatureVectors` from one online response, enforcing freshness and counting."""

    def __init__(
        self,
        spec: LookupSpec,
        *,
        enforce_freshness: bool = True,
        imputation: Mapping[str, Any] | None = None,
        metrics: MetricsSink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spec = spec
        self.enforce = enforce_freshness
        self.imputation = dict(imputation or {})
        self.metrics = metrics
        self.clock = clock
        self._names = spec.feature_names
        # Stored views in first-appearance order; derived features are judged by their inputs.
        self._views: list[str] = []
        for view, name in spec.features:
            if name not in spec.derived_inputs and view not in self._views:
                self._views.append(view)
        #: Features whose timestamps are read: a view's first one (Feast writes one per row),
        #: so clients decode no other timestamp.
        self.timestamp_features = frozenset(
            next(f for v, f in spec.features if v == view) for view in self._views
        )
        # Per-call lookups precomputed: each view's features and TTL, each derived one's view.
        self._plan = [
            (view, [f for v, f in spec.features if v == view], spec.ttl_s[view])
            for view in self._views
        ]
        self._derived = [
            (name, next(v for v, f in spec.features if f == name), inputs)
            for name, inputs in spec.derived_inputs.items()
        ]

    def fallback(self, entity_ids: list[Any], reason: str) -> FeatureVectors:
        """Every value imputed: the store is unreachable and the policy says serve anyway."""
        if self.metrics is not None:
            self.metrics.count_fallback(reason, len(entity_ids))
        names = self._names
        base = {n: self.imputation.get(n) for n in names}
        return FeatureVectors(
            entity_ids=entity_ids,
            feature_names=list(names),
            rows=[dict(base) for _ in entity_ids],
            missing=[list(names) for _ in entity_ids],
            fallback=True,
        )

    def assemble(
        self,
        entity_ids: list[Any],
        values: Mapping[str, Sequence[Any]],
        present: Mapping[str, Sequence[bool]],
        timestamps: Mapping[str, Sequence[float]],
    ) -> FeatureVectors:
        """`values`/`present`/`timestamps` map feature names to columns (one per entity).

        A view's timestamp is read from its first feature (Feast writes one per view row).
        """
        n = len(entity_ids)
        now = self.clock()
        imputation = self.imputation
        rows: list[dict[str, Any]] = [{} for _ in range(n)]
        missing: list[list[str]] = [[] for _ in range(n)]
        known = [False] * n
        stale_views: dict[str, list[bool]] = {}
        stale_total = 0
        metrics = self.metrics
        enforce = self.enforce
        for view, feats, ttl in self._plan:
            ts_col = timestamps[feats[0]]
            stale_row = [False] * n
            ages: list[float] = []
            has_any = [any(col) for col in zip(*(present[f] for f in feats), strict=True)]
            for i in range(n):
                if has_any[i]:
                    known[i] = True
                    age = now - ts_col[i]
                    ages.append(age)
                    if enforce and age > ttl:
                        stale_row[i] = True
            stale_views[view] = stale_row
            n_stale = 0
            n_missing = 0
            for f in feats:
                vcol = values[f]
                pcol = present[f]
                fill = imputation.get(f)
                for i in range(n):
                    if stale_row[i]:
                        rows[i][f] = fill
                        missing[i].append(f)
                        n_stale += 1
                    elif pcol[i]:
                        rows[i][f] = vcol[i]
                    else:
                        rows[i][f] = fill
                        missing[i].append(f)
                        n_missing += 1
            stale_total += n_stale
            if metrics is not None:
                if ages:
                    metrics.observe_ages(view, ages)
                if n_stale:
                    metrics.count_stale(view, n_stale)
                if n_missing:
                    metrics.count_missing(view, n_missing)
        for name, view, inputs in self._derived:
            vcol = values[name]
            pcol = present[name]
            fill = imputation.get(name)
            n_missing = 0
            for i in range(n):
                if any(stale_views[v][i] for v in inputs) or not pcol[i] or _is_nan(vcol[i]):
                    rows[i][name] = fill
                    missing[i].append(name)
                    n_missing += 1
                else:
                    rows[i][name] = vcol[i]
            if metrics is not None and n_missing:
                metrics.count_missing(view, n_missing)
        unknown = [entity_ids[i] for i in range(n) if not known[i]]
        if metrics is not None and unknown:
            metrics.count_unknown_entities(len(unknown))
        return FeatureVectors(
            entity_ids=entity_ids,
            feature_names=list(self._names),
            rows=rows,
            missing=missing,
            stale=stale_total,
            unknown=unknown,
        )


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
