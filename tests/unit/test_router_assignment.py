"""The router records the variant it ASSIGNED a request to beside the one that ANSWERED it.

On kind, the challenger's pod killed mid-experiment made every request fail over to the
champion, which the router recorded as the champion's: the controller's sample-ratio check then
saw 0.42% challenger at a 25% canary and paused. Real HTTP (the router's lean server, two tiny V2
servers under uvicorn) and a real SQLite feedback store.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mainsail.feedback.store import FeedbackStore
from mainsail.promotion.srm import srm_look
from mainsail.serving.router.app import Router, RouterSettings, create_router
from tests.support.router import LeanServerThread, ServerThread, V2Upstream, infer_body


@contextlib.contextmanager
def routed(
    upstreams: tuple[ServerThread, ServerThread], weights: tuple[int, int], tmp_path: Path
) -> Iterator[tuple[LeanServerThread, Router, FeedbackStore]]:
    """The router (lean server, SQLite feedback store) in front of champion and challenger."""
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    settings = RouterSettings.model_validate(
        {
            "model_name": "churn",
            "seed": 3,
            # Only the passive check (a refused connection) takes the challenger out in time.
            "router": {"health_interval_s": 30, "health_timeout_s": 0.5},
            "feedback_url": url,
            "variants": [
                {"role": role, "url": server.url, "model": "churn", "version": v, "weight": w}
                for role, server, v, w in zip(
                    ("champion", "challenger"), upstreams, ("2", "3"), weights, strict=True
                )
            ],
        }
    )
    router = create_router(settings, "t0ken")
    server = LeanServerThread(router).start()
    store = FeedbackStore(url)
    try:
        yield server, router, store
    finally:
        server.stop()
        store.close()


def _stored(store: FeedbackStore, n: int) -> None:
    """Wait for the router's writer to store `n` requests."""
    deadline = time.monotonic() + 10
    while sum(store.requests_per_variant("churn").values()) < n:
        assert time.monotonic() < deadline, store.requests_per_variant("churn")
        time.sleep(0.05)


@pytest.fixture
def upstreams() -> Iterator[tuple[ServerThread, ServerThread]]:
    champ, chall = ServerThread(V2Upstream(label=0)).start(), ServerThread(V2Upstream(label=1))
    chall.start()
    yield champ, chall
    champ.stop()
    chall.stop()


def test_a_killed_challenger_changes_who_answers_not_the_assignment(
    upstreams: tuple[ServerThread, ServerThread], tmp_path: Path
) -> None:
    chall = upstreams[1]
    answered: Counter[str] = Counter()
    moved: Counter[str] = Counter()
    with routed(upstreams, (75, 25), tmp_path) as (router, state, store):
        with httpx.Client(base_url=router.url) as client:
            for i in range(800):
                if i == 200:
                    chall.stop()  # the challenger's pod is gone
                r = client.post("/v2/models/churn/infer", json=infer_body())
                assert r.status_code == 200, r.text  # no request lost
                answered[r.headers["x-mainsail-variant"]] += 1
                if "x-mainsail-assigned-variant" in r.headers:
                    assert r.headers["x-mainsail-variant"] == "champion"
                    moved[r.headers["x-mainsail-assigned-variant"]] += 1
        assert not state.variants["challenger"].healthy
        _stored(store, 800)
        assigned = store.requests_per_variant("churn")
        # 25% of 800: sd ~12.2; 4 sd either side.
        assert 151 <= assigned["challenger"] <= 249, assigned
        assert assigned["champion"] + assigned["challenger"] == 800
        # Who answered is what the store said before: the challenger only before its pod went.
        assert answered["challenger"] < 75 and answered["champion"] > 725, answered
        failovers = store.failovers("churn")
        assert failovers["challenger"]["failed_over"] == moved["challenger"] > 100
        assert failovers["challenger"]["assigned"] == assigned["challenger"]
        assert (
            failovers["challenger"]["failed_over"] + answered["challenger"]
            == assigned["challenger"]
        )
        assert failovers["champion"]["failed_over"] == 0
        # The first request to the dead pod was refused and re-sent; the rest never tried it.
        reasons = failovers["challenger"]["reasons"]
        assert set(reasons) == {"connect", "out_of_rotation"} and reasons["connect"] >= 1, reasons
        # Prometheus sees the same failovers (the overview dashboard's panel), by reason.
        scraped = {
            (s.labels["assigned"], s.labels["variant"], s.labels["reason"]): s.value
            for metric in state.metrics.registry.collect()
            if metric.name == "mainsail_router_failovers"
            for s in metric.samples
            if s.name == "mainsail_router_failovers_total"
        }
        assert scraped == {
            ("challenger", "champion", reason): count for reason, count in reasons.items()
        }, scraped
        # The comparison reads only requests answered by their assigned variant.
        assert (
            store.outcomes("churn", "challenger", "classification").errors.size
            == answered["challenger"]
        )
        assert (
            store.outcomes("churn", "champion", "classification").errors.size
            == assigned["champion"]
        )
        # The sample-ratio check passes on the assignment; on who answered it flags a mismatch.
        kw = {"alpha": 0.001, "concentration": 1000.0}
        ok, _ = srm_look(assigned["champion"], assigned["challenger"], 25, **kw)
        biased, _ = srm_look(answered["champion"], answered["challenger"], 25, **kw)
        assert not ok.mismatch and biased.mismatch, (ok, biased)


def test_a_sticky_caller_stays_assigned_to_its_variant_while_it_is_down(
    upstreams: tuple[ServerThread, ServerThread], tmp_path: Path
) -> None:
    from mainsail.serving.router.app import _unit_hash

    # A session the hash pins to the challenger (the second half of the weights).
    session = next(f"s{i}" for i in range(100) if _unit_hash(f"s{i}") >= 0.5)
    with routed(upstreams, (50, 50), tmp_path) as (router, _, store):
        with httpx.Client(base_url=router.url, headers={"x-mainsail-session": session}) as client:
            first = client.post("/v2/models/churn/infer", json=infer_body())
            assert first.headers["x-mainsail-variant"] == "challenger"
            assert "x-mainsail-assigned-variant" not in first.headers
            upstreams[1].stop()  # the challenger's pod is gone
            for _ in range(20):
                r = client.post("/v2/models/churn/infer", json=infer_body())
                assert r.status_code == 200, r.text
                assert r.headers["x-mainsail-variant"] == "champion"
                assert r.headers["x-mainsail-assigned-variant"] == "challenger"
        _stored(store, 21)
        assert store.requests_per_variant("churn") == {"challenger": 21}
        assert store.failovers("churn")["challenger"]["failed_over"] == 20
