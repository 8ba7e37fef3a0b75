"""Reliability of the local stack through the router: load, failover, fuzz.

Everything is real: SeaweedFS, two MLServer processes (stock sklearn runtime, champion and
challenger), the router process. The 60 s wrk run lives in bench/bench_router.py; here the runs
are short.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from typing import Any

import httpx
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mainsail.config import ProjectConfig
from mainsail.stack.manager import restart
from mainsail.stack.process import read_state
from tests.support.stack import TOKEN, iris_request

pytestmark = [pytest.mark.integration, pytest.mark.slow]
AUTH = {"authorization": f"Bearer {TOKEN}"}


def _router(cfg: ProjectConfig) -> str:
    return f"http://127.0.0.1:{cfg.stack.router.port}"


def _load(url: str, seconds: float, concurrency: int, events: list[tuple[float, int, str]]) -> None:
    """Closed-loop load; appends (time, status, variant) per request (status 0 = no answer)."""
    body = iris_request()

    async def worker(client: httpx.AsyncClient, stop_at: float) -> None:
        while time.monotonic() < stop_at:
            try:
                r = await client.post("/v2/models/iris/infer", json=body)
                events.append(
                    (time.monotonic(), r.status_code, r.headers.get("x-mainsail-variant", ""))
                )
            except httpx.HTTPError:
                events.append((time.monotonic(), 0, ""))

    async def run() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            stop_at = time.monotonic() + seconds
            await asyncio.gather(*(worker(client, stop_at) for _ in range(concurrency)))

    asyncio.run(run())


def _set_weights(cfg: ProjectConfig, champion: int, challenger: int) -> None:
    r = httpx.put(
        f"{_router(cfg)}/admin/weights",
        json={"champion": champion, "challenger": challenger},
        headers=AUTH,
    )
    assert r.status_code == 200, r.text


def _state(cfg: ProjectConfig) -> dict[str, Any]:
    return httpx.get(f"{_router(cfg)}/admin/state", headers=AUTH).json()["variants"]


def test_load_through_the_router_has_no_errors(running_stack: ProjectConfig) -> None:
    events: list[tuple[float, int, str]] = []
    _load(_router(running_stack), seconds=4.0, concurrency=16, events=events)
    codes = [code for _t, code, _v in events]
    # A sample, not a speed check (speed is measured in bench/bench_router.py).
    assert len(codes) >= 100, f"only {len(codes)} requests in 4 s"
    assert codes.count(200) == len(codes), {c: codes.count(c) for c in set(codes)}
    share = sum(v == "challenger" for _t, _c, v in events) / len(events)
    assert 0.05 < share < 0.15  # 90/10 split


def test_killing_the_challenger_mid_load_fails_under_one_percent_and_it_rejoins(
    running_stack: ProjectConfig,
) -> None:
    cfg = running_stack
    _set_weights(cfg, 50, 50)
    try:
        challenger = next(
            p for p in read_state(cfg.stack.data_dir) if p.name == "mlserver-challenger"
        )
        events: list[tuple[float, int, str]] = []
        loader = threading.Thread(target=_load, args=(_router(cfg), 5.0, 8, events))
        loader.start()
        time.sleep(1.5)
        killed_at = time.monotonic()
        os.killpg(challenger.pid, signal.SIGKILL)
        removed_at = None
        while removed_at is None and time.monotonic() < killed_at + 5:
            if not _state(cfg)["challenger"]["healthy"]:
                removed_at = time.monotonic()
            time.sleep(0.02)
        loader.join()
        assert removed_at is not None, "the router never took the killed challenger out"
        codes = [c for _t, c, _v in events]
        errors = sum(c != 200 for c in codes)
        assert errors / len(codes) < 0.01, f"{errors} errors in {len(codes)} requests"
        after = [c for t, c, _v in events if t > removed_at]
        assert after and all(c == 200 for c in after)
        assert any(v == "challenger" for t, _c, v in events if t < killed_at)
        assert not any(v == "challenger" for t, _c, v in events if t > removed_at)

        restart(cfg, "mlserver-challenger")
        deadline = time.monotonic() + 20
        while not _state(cfg)["challenger"]["healthy"]:
            assert time.monotonic() < deadline, "the challenger did not rejoin"
            time.sleep(0.1)
        with httpx.Client(base_url=_router(cfg), timeout=10) as client:
            served = {
                client.post("/v2/models/iris/infer", json=iris_request()).headers[
                    "x-mainsail-variant"
                ]
                for _ in range(60)
            }
        assert served == {"champion", "challenger"}
    finally:
        _set_weights(cfg, 90, 10)


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=8),
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=6,
)
_tensor = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.just("x"), st.text(max_size=4), _scalars),
        "shape": st.one_of(st.lists(st.integers(-2, 6), max_size=3), _json),
        "datatype": st.one_of(
            st.sampled_from(["FP64", "FP32", "INT64", "BYTES", "BOOL", "fp64"]), _json
        ),
        "data": st.one_of(st.lists(st.floats(allow_nan=False, width=32), max_size=8), _json),
        "parameters": _json,
    },
)
_body = st.one_of(
    st.binary(max_size=64),
    _json.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"inputs": st.lists(_tensor, max_size=3)}, optional={"id": _json, "outputs": _json}
    ).map(lambda v: json.dumps(v).encode()),
)


def _fuzz_cases(n: int) -> list[tuple[str, bytes]]:
    """`n` malformed (or odd) requests drawn by hypothesis with a fixed seed."""
    cases: list[tuple[str, bytes]] = []

    @settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(body=_body, name=st.sampled_from(["iris", "iris", "iris", "nope", "%20"]))
    def collect(body: bytes, name: str) -> None:
        cases.append((name, body))

    collect()
    return cases


def test_fuzzed_requests_never_get_a_5xx_from_the_router(running_stack: ProjectConfig) -> None:
    router = next(p for p in read_state(running_stack.stack.data_dir) if p.name == "router")
    proc = psutil.Process(router.pid)
    cases = _fuzz_cases(2000)
    # Drawn first, then sent 16 at a time: the router sees concurrent malformed traffic, and
    # the run stays short. A failure names the body that caused it.
    results: list[tuple[bytes, int, bool, str]] = []

    async def send_all(client: httpx.AsyncClient) -> None:
        queue = list(reversed(cases))

        async def worker() -> None:
            while queue:
                name, body = queue.pop()
                r = await client.post(f"/v2/models/{name}/infer", content=body)
                results.append((body, r.status_code, "x-mainsail-variant" in r.headers, r.text))

        await asyncio.gather(*(worker() for _ in range(16)))

    async def run() -> tuple[int, int]:
        async with httpx.AsyncClient(base_url=_router(running_stack), timeout=10) as client:
            for _ in range(300):  # warm-up before the memory baseline
                await client.post("/v2/models/iris/infer", content=b"{}")
            before = proc.memory_info().rss
            await send_all(client)
            return before, proc.memory_info().rss

    rss_before, rss_after = asyncio.run(run())
    assert len(results) == 2000
    own = [(body, code, text) for body, code, forwarded, text in results if not forwarded]
    bad = [(body, code, text) for body, code, text in own if code >= 500]
    assert not bad, f"router answered 5xx itself: {bad[:3]}"
    assert all(400 <= code < 500 and json.loads(text)["error"] for _b, code, text in own)
    # MLServer's stock runtime answers some well-formed but wrong-shaped requests with 500; the
    # router passes the model server's answer through unchanged (counted, not failed).
    forwarded = [code for _b, code, fwd, _t in results if fwd]
    assert len(own) > 1000, (len(own), len(forwarded))
    assert router.alive()
    assert httpx.get(f"{_router(running_stack)}/v2/health/live").status_code == 200
    growth_mb = (rss_after - rss_before) / 2**20
    assert growth_mb < 20, f"router RSS grew {growth_mb:.1f} MiB over the fuzz run"
