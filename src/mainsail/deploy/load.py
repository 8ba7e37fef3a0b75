"""A measured load run against a deployed endpoint: the figures the model card's deployment
fields are filled from (:func:`mainsail.evaluate.card.fill_deployment`)."""

from __future__ import annotations

import math
from typing import Any

from mainsail.evaluate.card import LoadFigures

__all__ = ["LoadFigures", "measure"]


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
