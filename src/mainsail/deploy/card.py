"""Fill the model card's deployment fields (endpoint, latency_p95, throughput) from a measured
load run against the deployed endpoint.

The card written by the training run has these fields null. A registry version is immutable
(its manifest holds the card's sha256), so the filled card is written to a path the caller
chooses, e.g. a copy under the stack's data dir; the function only changes the `deployment`
section and writes atomically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from mainsail.deploy.kubernetes import DeployError


@dataclass(frozen=True)
class LoadFigures:
    """What a load run measured."""

    endpoint: str
    """URL that was loaded (the router's infer URL)."""
    latency_p50_ms: float
    """Median request latency, milliseconds."""
    latency_p95_ms: float
    """95th percentile request latency, milliseconds."""
    latency_p99_ms: float
    """99th percentile request latency, milliseconds."""
    throughput_rps: float
    """Successful requests per second."""
    requests: int
    """Requests sent."""
    errors: int
    """Requests that failed (no answer or HTTP status >= 400)."""
    duration_s: float
    """Length of the run, seconds."""
    concurrency: int
    """Requests in flight at once."""


def fill_deployment(
    card_path: Path,
    figures: LoadFigures,
    out_path: Path | None = None,
    endpoint: str | None = None,
) -> Path:
    """Write the card at `card_path` with its deployment fields from `figures` to `out_path`
    (default: in place); returns the path written. `endpoint` is the public URL written to the
    card (default: the URL that was loaded)."""
    card_path = Path(card_path)
    for name in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "throughput_rps"):
        value = getattr(figures, name)
        if not math.isfinite(value) or value <= 0:
            raise DeployError(f"measured {name} must be a positive number, got {value!r}")
    if figures.requests <= 0 or figures.errors >= figures.requests:
        raise DeployError(
            f"the load run has no successful request ({figures.requests} sent, "
            f"{figures.errors} failed); nothing to put in the model card"
        )
    try:
        card: Any = yaml.safe_load(card_path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise DeployError(f"cannot read model card {card_path}: {err}") from None
    if not isinstance(card, dict) or not isinstance(card.get("deployment"), dict):
        raise DeployError(f"model card {card_path} has no `deployment` section")
    card["deployment"] = {
        "endpoint": endpoint or figures.endpoint,
        "latency_p95": round(figures.latency_p95_ms, 3),
        "throughput": round(figures.throughput_rps, 1),
        "units": {"latency_p95": "ms", "throughput": "requests/s"},
        "measured": {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "url": figures.endpoint,
            "latency_p50_ms": round(figures.latency_p50_ms, 3),
            "latency_p99_ms": round(figures.latency_p99_ms, 3),
            "requests": figures.requests,
            "errors": figures.errors,
            "duration_s": round(figures.duration_s, 2),
            "concurrency": figures.concurrency,
        },
    }
    out = Path(out_path) if out_path is not None else card_path
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(yaml.safe_dump(card, sort_keys=False))
    tmp.replace(out)
    return out


def measure(
    url: str,
    body: dict[str, Any],
    duration_s: float = 5.0,
    concurrency: int = 8,
    headers: dict[str, str] | None = None,
) -> LoadFigures:
    """Closed-loop load: `concurrency` clients POST `body` to `url` for `duration_s` seconds."""
    import asyncio
    import time

    import httpx
    import numpy as np

    latencies: list[float] = []
    errors = 0

    async def client_loop(client: httpx.AsyncClient, stop_at: float) -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            try:
                resp = await client.post(url, json=body, headers=headers)
                ok = resp.status_code < 400
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - start)
            else:
                errors += 1

    async def run() -> float:
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            began = time.perf_counter()
            stop_at = began + duration_s
            await asyncio.gather(*(client_loop(client, stop_at) for _ in range(concurrency)))
            return time.perf_counter() - began

    elapsed = asyncio.run(run())
    ms = np.asarray(latencies) * 1000 if latencies else np.asarray([math.nan])
    return LoadFigures(
        endpoint=url,
        latency_p50_ms=float(np.percentile(ms, 50)),
        latency_p95_ms=float(np.percentile(ms, 95)),
        latency_p99_ms=float(np.percentile(ms, 99)),
        throughput_rps=len(latencies) / elapsed,
        requests=len(latencies) + errors,
        errors=errors,
        duration_s=elapsed,
        concurrency=concurrency,
    )
