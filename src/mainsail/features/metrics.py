"""Prometheus metrics of online feature lookups (prometheus_client; every env has it).

The age histogram is a custom collector: a lookup of 100 entities observes 100 ages per view,
and one lock per batch instead of one per observation keeps enforcement within the latency
budget (see bench/bench_online_features.py).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

#: Age buckets in seconds: one minute to 90 days.
AGE_BUCKETS: tuple[float, ...] = (
    60.0,
    600.0,
    3600.0,
    6 * 3600.0,
    86_400.0,
    3 * 86_400.0,
    7 * 86_400.0,
    14 * 86_400.0,
    30 * 86_400.0,
    45 * 86_400.0,
    90 * 86_400.0,
)


class _AgeHistogram(Collector):
    """`mainsail_feature_age_seconds{view}`: age of served values, observed in batches."""

    name = "mainsail_feature_age_seconds"

    def __init__(self, buckets: Sequence[float]) -> None:
        self._bounds = list(buckets)
        self._lock = threading.Lock()
        self._counts: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}

    def observe_many(self, view: str, ages: Sequence[float]) -> None:
        bounds = self._bounds
        idx = [bisect.bisect_left(bounds, a) for a in ages]
        total = sum(ages)
        with self._lock:
            counts = self._counts.get(view)
            if counts is None:
                counts = self._counts[view] = [0] * (len(bounds) + 1)
                self._sums[view] = 0.0
            for i in idx:
                counts[i] += 1
            self._sums[view] += total

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            self.name,
            "Age of online feature values at lookup time, per feature view",
            labels=["view"],
        )
        with self._lock:
            snapshot = {v: (list(c), self._sums[v]) for v, c in self._counts.items()}
        for view, (counts, total) in sorted(snapshot.items()):
            cumulative, running = [], 0
            for bound, count in zip([*self._bounds, float("inf")], counts, strict=True):
                running += count
                cumulative.append((_fmt(bound), running))
            family.add_metric([view], cumulative, total)
        yield family


def _fmt(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


class FeatureMetrics:
    """The metrics sink for `mainsail.features.freshness.Assembler`, in one registry."""

    def __init__(
        self, registry: CollectorRegistry | None = None, buckets: Sequence[float] = AGE_BUCKETS
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.ages = _AgeHistogram(buckets)
        self.registry.register(self.ages)
        self.stale = Counter(
            "mainsail_feature_stale_values",
            "Online values older than their view's TTL, served as missing",
            ["view"],
            registry=self.registry,
        )
        self.missing = Counter(
            "mainsail_feature_missing_values",
            "Online values absent or null in the store",
            ["view"],
            registry=self.registry,
        )
        self.unknown = Counter(
            "mainsail_feature_unknown_entities",
            "Entity keys the online store knows nothing about",
            registry=self.registry,
        )
        self._stale: dict[str, Any] = {}
        self._missing: dict[str, Any] = {}
        self.fallback = Counter(
            "mainsail_feature_fallback",
            "Entities served imputed values because the store was unreachable",
            ["reason"],
            registry=self.registry,
        )

    def observe_ages(self, view: str, ages: Sequence[float]) -> None:
        self.ages.observe_many(view, ages)

    def count_stale(self, view: str, n: int) -> None:
        child = self._stale.get(view)
        if child is None:  # `labels()` builds a key and takes a lock: once per view
            child = self._stale[view] = self.stale.labels(view)
        child.inc(n)

    def count_missing(self, view: str, n: int) -> None:
        child = self._missing.get(view)
        if child is None:
            child = self._missing[view] = self.missing.labels(view)
        child.inc(n)

    def count_unknown_entities(self, n: int) -> None:
        self.unknown.inc(n)

    def count_fallback(self, reason: str, n: int) -> None:
        self.fallback.labels(reason).inc(n)
