"""Health checks take a failing variant out of rotation and put it back when healthy.

Real HTTP: router and V2 servers run under uvicorn on loopback; "down" is either a server that
answers not-ready or a server that was stopped (connection refused).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from tests.support.router import ServerThread, V2Upstream, infer_body, start_router


def _wait(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_not_ready_variant_leaves_rotation_and_rejoins() -> None:
    chall_app = V2Upstream(label=1)
    champ, chall = ServerThread(V2Upstream()).start(), ServerThread(chall_app).start()
    router, state = start_router(
        {"champion": champ, "challenger": chall}, {"champion": 50, "challenger": 50}
    )
    try:
        assert state.variants["challenger"].healthy
        chall_app.ready = False
        _wait(lambda: not state.variants["challenger"].healthy)
        with httpx.Client(base_url=router.url) as client:
            variants = {
                client.post("/v2/models/churn/infer", json=infer_body()).headers[
                    "x-mainsail-variant"
                ]
                for _ in range(40)
            }
            assert variants == {"champion"}
            metrics = client.get("/metrics").text
            assert (
                'mainsail_router_variant_healthy{model="churn",variant="challenger",'
                'version="v-challenger"} 0.0' in metrics
            )
        chall_app.ready = True
        _wait(lambda: state.variants["challenger"].healthy)
        with httpx.Client(base_url=router.url) as client:
            variants = {
                client.post("/v2/models/churn/infer", json=infer_body()).headers[
                    "x-mainsail-variant"
                ]
                for _ in range(40)
            }
        assert variants == {"champion", "challenger"}
    finally:
        router.stop()
        champ.stop()


def test_stopped_server_costs_no_failed_request_and_readiness_reflects_it() -> None:
    champ, chall = ServerThread(V2Upstream()).start(), ServerThread(V2Upstream(label=1)).start()
    router, state = start_router(
        {"champion": champ, "challenger": chall},
        {"champion": 50, "challenger": 50},
        health_interval_s=30,  # only the passive check can notice in time
    )
    try:
        with httpx.Client(base_url=router.url) as client:
            chall.stop()
            codes = [
                client.post("/v2/models/churn/infer", json=infer_body()).status_code
                for _ in range(60)
            ]
            # Refused connections are retried on the champion and take the challenger out.
            assert codes == [200] * 60
            assert not state.variants["challenger"].healthy
            metrics = client.get("/metrics").text
            assert 'mainsail_router_retries_total{reason="connect",variant="challenger"}' in metrics
            champ.stop()
            r = client.post("/v2/models/churn/infer", json=infer_body())
            assert r.status_code in (502, 503), r.text
            assert "error" in r.json()
            _wait(lambda: not state.variants["champion"].healthy, timeout=40)
            assert client.get("/v2/health/ready").status_code == 503
    finally:
        router.stop()


def test_upstream_timeout_gives_504_with_a_message() -> None:
    champ = ServerThread(V2Upstream(delay_s=1.0)).start()
    router, _ = start_router({"champion": champ}, {"champion": 1}, upstream_timeout_s=0.2)
    try:
        r = httpx.post(f"{router.url}/v2/models/churn/infer", json=infer_body(), timeout=5)
        assert r.status_code == 504 and "timed out" in r.json()["error"]
    finally:
        router.stop()
        champ.stop()


def test_a_failed_check_replaces_the_variants_kept_alive_connections() -> None:
    """On the kind cluster a connection kept alive to a deleted pod (behind the variant's
    Service) kept the challenger out of rotation after its new pod was ready; a failed check
    now drops the pool, so the next one connects afresh. A passing check keeps it."""
    import asyncio

    from mainsail.core.ports import free_port
    from mainsail.serving.router.app import RouterSettings, create_router
    from tests.support.router import ServerThread, V2Upstream

    up = ServerThread(V2Upstream()).start()
    try:
        settings = RouterSettings.model_validate(
            {
                "model_name": "churn",
                "variants": [
                    {"role": "champion", "url": up.url, "model": "churn", "weight": 1},
                    {
                        "role": "challenger",
                        "url": f"http://127.0.0.1:{free_port()}",
                        "model": "churn",
                        "weight": 1,
                    },
                ],
            }
        )
        router = create_router(settings, None)
        champion, challenger = router.variants["champion"], router.variants["challenger"]
        kept, dropped = champion.pool, challenger.pool

        async def both() -> tuple[bool, bool]:
            return await router.check(champion), await router.check(challenger)

        assert asyncio.run(both()) == (True, False)
        assert champion.pool is kept
        assert challenger.pool is not dropped
    finally:
        up.stop()


def test_a_variant_answering_404_for_its_model_is_failed_over_not_passed_back() -> None:
    """A stopping MLServer unloads its model and answers 404 for it while still listening (seen
    on the kind cluster when the challenger's pod was killed): the router's own path to the
    variant cannot be the client's mistake, so the request goes to the champion and the
    challenger leaves rotation; with no variant left the answer is a 503, not a 404."""
    champ_app, chall_app = V2Upstream(), V2Upstream(label=1)
    champ, chall = ServerThread(champ_app).start(), ServerThread(chall_app).start()
    router, state = start_router(
        {"champion": champ, "challenger": chall},
        {"champion": 50, "challenger": 50},
        health_interval_s=30,  # only the passive check can notice in time
    )
    try:
        chall_app.model = "unloaded"  # its /v2/models/churn/* now answer 404
        with httpx.Client(base_url=router.url) as client:
            answers = [client.post("/v2/models/churn/infer", json=infer_body()) for _ in range(40)]
            assert [r.status_code for r in answers] == [200] * 40
            assert {r.headers["x-mainsail-variant"] for r in answers} == {"champion"}
            assert not state.variants["challenger"].healthy
            metrics = client.get("/metrics").text
            assert (
                'mainsail_router_retries_total{reason="model_not_served",variant="challenger"}'
                in metrics
            )
        champ_app.model = "unloaded"
        r = httpx.post(f"{router.url}/v2/models/churn/infer", json=infer_body(), timeout=5)
        assert r.status_code == 503 and "no model available" in r.json()["error"]
    finally:
        router.stop()
        champ.stop()
        chall.stop()
