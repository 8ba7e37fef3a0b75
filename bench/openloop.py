"""An open-loop HTTP load generator: requests start at a constant arrival rate, whatever the
server does.

Why open loop. A closed-loop tool (wrk -cN) sends the next request only when an answer came
back, so at N connections the server always has N requests queued: p50 is then set by that
queue (p50 ~ N / throughput), and anything that slows the server also slows the arrivals, which
hides the delay ("coordinated omission"). Real traffic does not wait for the server. Here
request i is due at t0 + i / rate; a free keep-alive connection sends it as soon as it is due,
and its latency is measured from the time it was *due*, not from when it was sent, so time
spent waiting for a free connection (the generator's own queue) counts like time in the server.
At a rate below capacity nothing queues and p50 is the path's own latency: what a router adds
to it is its real cost per request.

Raw asyncio sockets (uvloop where installed), HTTP/1.1 keep-alive, one POST body; every answer
must be 200, and latencies of any other answer are not counted (they are reported as errors).

    python bench/openloop.py URL --rate 500 --seconds 10 [--body JSON] [--connections 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class OpenLoopResult:
    rate: float
    seconds: float
    sent: int = 0
    ok: int = 0
    errors: int = 0
    late_starts: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        data = sorted(self.latencies_ms)
        if not data:
            return float("nan")
        k = max(0, min(len(data) - 1, round(q * (len(data) - 1))))
        return data[k]

    def summary(self) -> dict[str, Any]:
        achieved = self.ok / self.seconds if self.seconds else 0.0
        return {
            "target_rate": round(self.rate, 1),
            "achieved_rps": round(achieved, 1),
            "requests": self.sent,
            "ok": self.ok,
            "errors": self.errors,
            # Requests sent more than 1 ms after they were due (no free connection, or the
            # generator itself fell behind): latency is counted from the due time anyway.
            "late_starts": self.late_starts,
            "p50_ms": round(self.percentile(0.50), 3),
            "p90_ms": round(self.percentile(0.90), 3),
            "p99_ms": round(self.percentile(0.99), 3),
            "max_ms": round(max(self.latencies_ms, default=float("nan")), 3),
        }


def _request_bytes(url: str, body: bytes) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    ).encode()
    return host, port, head + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response (Content-Length or chunked); return its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"content-length":
            length = int(value.strip())
        elif key == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if length is not None:
        await reader.readexactly(length)
    elif chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def run_open_loop(
    urls: Sequence[str], body: bytes, rate: float, seconds: float, connections: int = 64
) -> list[OpenLoopResult]:
    """Send `rate` requests per second for `seconds`, request i due at t0 + i / rate and sent to
    `urls[i % len(urls)]` (each URL with its own `connections`); one result per URL, each at
    `rate / len(urls)`. Several URLs interleave arrival by arrival, so a stall of the machine
    lands on all of them alike (see `open_loop_interleaved`)."""
    results = [OpenLoopResult(rate=rate / len(urls), seconds=seconds) for _ in urls]
    total = max(1, int(rate * seconds))
    queues: list[asyncio.Queue[float | None]] = [asyncio.Queue() for _ in urls]

    async def worker(url: str, result: OpenLoopResult, due: asyncio.Queue[float | None]) -> None:
        host, port, request = _request_bytes(url, body)
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while True:
                when = await due.get()
                if when is None:
                    return
                if time.perf_counter() - when > 0.001:
                    result.late_starts += 1
                result.sent += 1
                try:
                    writer.write(request)
                    status = await _read_response(reader)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    result.errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                if status == 200:
                    result.ok += 1
                    result.latencies_ms.append((time.perf_counter() - when) * 1000.0)
                else:
                    result.errors += 1
        finally:
            writer.close()

    workers = [
        asyncio.create_task(worker(url, result, due))
        for url, result, due in zip(urls, results, queues, strict=True)
        for _ in range(connections)
    ]
    await asyncio.sleep(0.05)  # connections open before the clock starts
    t0 = time.perf_counter() + 0.01
    for i in range(total):
        when = t0 + i / rate
        delay = when - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queues[i % len(urls)].put_nowait(when)
    for due in queues:
        for _ in range(connections):
            due.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = max(seconds, time.perf_counter() - t0)
    for result in results:
        result.seconds = elapsed
    return results


def open_loop_interleaved(
    urls: Sequence[str], body: bytes, rate: float, seconds: float, connections: int = 64
) -> list[dict[str, Any]]:
    """Blocking: one open-loop run of `rate` arrivals per second shared out among `urls` in
    turn (uvloop where installed), and each URL's summary (`target_rate` its share).

    Why interleave. Two runs one after the other each meet their own stalls of a shared
    machine: on this 2-core VM a 10 s run's p99 moved between 5 and 25 ms for the same server
    (2026-12-08), far more than the 2 ms a router may add. Arrivals that alternate between a
    direct URL and one through the router share every moment of the run, the server's queue
    included, so the difference of their percentiles is the router's own."""
    coro = run_open_loop(urls, body, rate, seconds, connections)
    try:
        import uvloop

        results = uvloop.run(coro)
    except ImportError:
        results = asyncio.run(coro)
    return [result.summary() for result in results]


def open_loop(
    url: str, body: bytes, rate: float, seconds: float, connections: int = 64
) -> dict[str, Any]:
    """Blocking wrapper: one open-loop run's summary (uvloop where installed)."""
    return open_loop_interleaved([url], body, rate, seconds, connections)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--body", default="{}", help="JSON body to POST")
    args = parser.parse_args()
    body = json.dumps(json.loads(args.body)).encode()
    print(json.dumps(open_loop(args.url, body, args.rate, args.seconds, args.connections)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
