"""The router splits traffic by weight, pins sticky callers and tags every answer.

Real HTTP end to end: the router and two tiny V2 servers run under uvicorn on loopback.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.support.router import ServerThread, V2Upstream, infer_body, start_router


@pytest.fixture
def pair() -> Iterator[tuple[V2Upstream, V2Upstream, ServerThread, ServerThread]]:
    champ, chall = V2Upstream(label=0), V2Upstream(label=1)
    s1, s2 = ServerThread(champ).start(), ServerThread(chall).start()
    yield champ, chall, s1, s2
    s1.stop()
    s2.stop()


def test_weighted_split_follows_weights_within_binomial_noise(pair) -> None:
    champ, chall, s1, s2 = pair
    router, _ = start_router({"champion": s1, "challenger": s2}, {"champion": 90, "challenger": 10})
    try:
        n = 1000
        with httpx.Client(base_url=router.url) as client:
            seen = Counter(
                client.post("/v2/models/churn/infer", json=infer_body()).headers[
                    "x-mainsail-variant"
                ]
                for _ in range(n)
            )
        # 10% of 1000: sd = sqrt(1000*0.1*0.9) ~ 9.5; 4 sd either side.
        assert 62 <= seen["challenger"] <= 138, seen
        assert seen["champion"] + seen["challenger"] == n
        assert len(chall.received) == seen["challenger"]
        assert len(champ.received) == seen["champion"]
    finally:
        router.stop()


def test_weight_zero_variant_gets_no_traffic(pair) -> None:
    _champ, chall, s1, s2 = pair
    router, _ = start_router({"champion": s1, "challenger": s2}, {"champion": 100, "challenger": 0})
    try:
        with httpx.Client(base_url=router.url) as client:
            for _ in range(200):
                r = client.post("/v2/models/churn/infer", json=infer_body())
                assert r.status_code == 200
                assert r.headers["x-mainsail-variant"] == "champion"
        assert chall.received == []
    finally:
        router.stop()


def test_sticky_header_pins_each_caller_to_one_variant(pair) -> None:
    _champ, _chall, s1, s2 = pair
    router, _ = start_router({"champion": s1, "challenger": s2}, {"champion": 50, "challenger": 50})
    try:
        with httpx.Client(base_url=router.url) as client:
            chosen: dict[str, set[str]] = {}
            for session in [f"user-{i}" for i in range(40)] * 5:
                r = client.post(
                    "/v2/models/churn/infer",
                    json=infer_body(),
                    headers={"x-mainsail-session": session},
                )
                chosen.setdefault(session, set()).add(r.headers["x-mainsail-variant"])
        assert all(len(v) == 1 for v in chosen.values()), chosen
        # At 50/50 both variants get some of the 40 callers.
        assert {next(iter(v)) for v in chosen.values()} == {"champion", "challenger"}
    finally:
        router.stop()


def test_sticky_key_in_the_body_pins_an_entity(pair) -> None:
    _champ, _chall, s1, s2 = pair
    router, _ = start_router(
        {"champion": s1, "challenger": s2},
        {"champion": 50, "challenger": 50},
        sticky_key="customer_id",
    )
    try:
        with httpx.Client(base_url=router.url) as client:
            chosen: dict[str, set[str]] = {}
            for customer in [f"c{i}" for i in range(30)] * 4:
                r = client.post(
                    "/v2/models/churn/infer",
                    json=infer_body(value=float(len(chosen)), customer=customer),
                )
                chosen.setdefault(customer, set()).add(r.headers["x-mainsail-variant"])
        assert all(len(v) == 1 for v in chosen.values()), chosen
        assert {next(iter(v)) for v in chosen.values()} == {"champion", "challenger"}
    finally:
        router.stop()


def test_request_id_is_forwarded_or_created(pair) -> None:
    champ, _chall, s1, s2 = pair
    router, _ = start_router({"champion": s1, "challenger": s2}, {"champion": 1, "challenger": 0})
    try:
        with httpx.Client(base_url=router.url) as client:
            given = client.post(
                "/v2/models/churn/infer", json=infer_body(), headers={"x-request-id": "abc-123"}
            )
            fresh = client.post("/v2/models/churn/infer", json=infer_body())
        assert given.headers["x-request-id"] == "abc-123"
        assert len(fresh.headers["x-request-id"]) == 32
        assert champ.request_ids == ["abc-123", fresh.headers["x-request-id"]]
        assert given.headers["x-mainsail-model-version"] == "v-champion"
        assert given.json()["outputs"][0]["data"] == [0]
    finally:
        router.stop()


def test_unknown_model_and_bad_body_are_4xx_with_a_message(pair) -> None:
    champ, _chall, s1, s2 = pair
    router, _ = start_router({"champion": s1, "challenger": s2}, {"champion": 1})
    try:
        with httpx.Client(base_url=router.url) as client:
            r = client.post("/v2/models/other/infer", json=infer_body())
            assert r.status_code == 404 and "'other'" in r.json()["error"]
            r = client.post("/v2/models/churn/infer", content=b"{not json")
            assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
            bad = infer_body()
            bad["inputs"][0]["shape"] = [1, 5]
            r = client.post("/v2/models/churn/infer", json=bad)
            assert r.status_code == 400
            assert "inputs[0] ('x').data: shape [1, 5] needs 5 elements, got 4" in r.json()["error"]
            r = client.get("/v2/models/churn/infer")
            assert r.status_code == 405
        assert champ.received == []  # nothing malformed reached the model
    finally:
        router.stop()


def test_oversized_body_gets_413(pair) -> None:
    _champ, _chall, s1, s2 = pair
    router, _ = start_router(
        {"champion": s1, "challenger": s2}, {"champion": 1}, max_body_bytes=2048
    )
    try:
        big = infer_body()
        big["inputs"][0]["data"] = [1.0] * 4000
        big["inputs"][0]["shape"] = [1000, 4]
        r = httpx.post(f"{router.url}/v2/models/churn/infer", json=big)
        assert r.status_code == 413 and "2048" in r.json()["error"]
    finally:
        router.stop()
