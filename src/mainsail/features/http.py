"""Online feature vectors over HTTP from a feature server: Feast's (`feast serve`) or
Mainsail's (`mainsail.features.api`, the same request and answer, behind a bearer token).

Imports httpx and the standard library only (plus the stdlib-only freshness module), so the
serving env, which cannot install Feast, can use it. Same call and result as
`mainsail.features.online.SdkLookup`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx

from mainsail.core import naming
from mainsail.features.errors import FeatureStoreError, OnlineStoreUnavailableError
from mainsail.features.freshness import (
    Assembler,
    FeatureVectors,
    LookupSpec,
    MetricsSink,
    check_entity_ids,
)

MAX_BATCH = 1000


def _epoch(stamp: Any) -> float:
    """Feast's JSON timestamps (`2024-01-01T00:00:00Z`) -> epoch seconds; absent -> 0."""
    if not stamp:
        return 0.0
    if isinstance(stamp, int | float):
        return float(stamp)
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()


class HttpLookup:
    """Feature vectors from `POST /get-online-features` of a feature server; `token` (by
    default $MAINSAIL_FEATURES_TOKEN) goes in an `Authorization: Bearer` header when set."""

    def __init__(
        self,
        base_url: str,
        spec: LookupSpec,
        *,
        timeout_s: float = 1.0,
        fallback: str = "fail",
        enforce_freshness: bool = True,
        imputation: Mapping[str, Any] | None = None,
        metrics: MetricsSink | None = None,
        clock: Callable[[], float] | None = None,
        client: httpx.Client | None = None,
        token: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
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
        self.client = client or httpx.Client(timeout=timeout_s)
        self._url = f"{self.base_url}/get-online-features"
        # The body around the ids, serialised once. Features are named by reference
        # (`view:feature`, the service's own list) rather than by service name: the feature
        # server then skips a registry lookup that it runs on a worker thread per request,
        # a hand-off that costs milliseconds when CPUs are busy.
        refs = [f"{view}:{name}" for view, name in spec.features]
        head = json.dumps({"features": refs, "full_feature_names": False})[:-1]
        self._body = (head + ', "entities": {' + json.dumps(spec.entity_key) + ": ", "}}")
        self._headers = {"content-type": "application/json"}
        token = os.environ.get(naming.ENV_FEATURES_TOKEN) if token is None else token
        if token:
            self._headers["authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> HttpLookup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def health(self) -> bool:
        """True when the server answers /health with 200."""
        try:
            return self.client.get(f"{self.base_url}/health").status_code == 200
        except httpx.HTTPError:
            return False

    def get(self, entity_ids: Sequence[Any]) -> FeatureVectors:
        """Feature vectors for `entity_ids` (unknown ids come back missing and counted)."""
        ids = check_entity_ids(self.spec, entity_ids)
        if not ids:
            return FeatureVectors([], self.spec.feature_names, [], [])
        if len(ids) > MAX_BATCH:
            out = [self.get(ids[i : i + MAX_BATCH]) for i in range(0, len(ids), MAX_BATCH)]
            return FeatureVectors(
                entity_ids=ids,
                feature_names=out[0].feature_names,
                rows=[r for p in out for r in p.rows],
                missing=[m for p in out for m in p.missing],
                stale=sum(p.stale for p in out),
                unknown=[u for p in out for u in p.unknown],
                fallback=any(p.fallback for p in out),
            )
        head, tail = self._body
        body = (head + json.dumps(ids) + tail).encode()
        try:
            response = self.client.post(self._url, content=body, headers=self._headers)
        except httpx.TransportError as err:
            return self._unavailable(ids, f"feature server {self.base_url} unreachable: {err}")
        if response.status_code >= 500:
            return self._unavailable(
                ids, f"feature server answered {response.status_code}: {response.text[:300]}"
            )
        if response.status_code != 200:
            raise FeatureStoreError(
                f"feature server rejected the request ({response.status_code}): "
                f"{response.text[:300]}"
            )
        return self._assemble(ids, response.json())

    def _unavailable(self, ids: list[Any], message: str) -> FeatureVectors:
        if self.fallback_policy == "impute":
            return self.assembler.fallback(ids, "feature_server_unreachable")
        raise OnlineStoreUnavailableError(message)

    def _assemble(self, ids: list[Any], payload: Mapping[str, Any]) -> FeatureVectors:
        names = payload["metadata"]["feature_names"]
        values: dict[str, list[Any]] = {}
        present: dict[str, list[bool]] = {}
        stamps: dict[str, list[float]] = {}
        ts_names = self.assembler.timestamp_features
        for name, result in zip(names, payload["results"], strict=True):
            col = result["values"]
            values[name] = col
            present[name] = [
                s == "PRESENT" and v is not None
                for s, v in zip(result["statuses"], col, strict=True)
            ]
            if name in ts_names:
                ts = result.get("event_timestamps") or [None] * len(col)
                stamps[name] = [_epoch(t) for t in ts]
        return self.assembler.assemble(ids, values, present, stamps)
