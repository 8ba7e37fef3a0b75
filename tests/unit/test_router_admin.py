"""The admin API changes weights and variants only with the right bearer token.

Real HTTP: router and V2 servers run under uvicorn on loopback.
"""

from __future__ import annotations

from collections import Counter

import httpx

from tests.support.router import ServerThread, V2Upstream, infer_body, start_router

AUTH = {"authorization": "Bearer s3cret"}


def test_admin_refuses_without_token_wrong_token_and_when_disabled() -> None:
    up = ServerThread(V2Upstream()).start()
    router, _ = start_router({"champion": up}, {"champion": 1})
    disabled, _ = start_router({"champion": up}, {"champion": 1}, token=None)
    try:
        r = httpx.put(f"{router.url}/admin/weights", json={"champion": 5})
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        r = httpx.put(
            f"{router.url}/admin/weights",
            json={"champion": 5},
            headers={"authorization": "Bearer s3cre"},
        )
        assert r.status_code == 401
        r = httpx.get(f"{router.url}/admin/state", headers={"authorization": "Basic s3cret"})
        assert r.status_code == 401
        r = httpx.get(f"{disabled.url}/admin/state", headers=AUTH)
        assert r.status_code == 403 and "MAINSAIL_ROUTER_TOKEN" in r.json()["error"]
        r = httpx.get(f"{router.url}/admin/state", headers=AUTH)
        assert r.status_code == 200
        assert r.json()["variants"]["champion"]["weight"] == 1
    finally:
        router.stop()
        disabled.stop()
        up.stop()


def test_weights_change_moves_traffic_and_bad_weights_are_refused() -> None:
    champ, chall = ServerThread(V2Upstream()).start(), ServerThread(V2Upstream(label=1)).start()
    router, _ = start_router({"champion": champ, "challenger": chall}, {"champion": 100})
    try:
        with httpx.Client(base_url=router.url, headers=AUTH) as client:
            for bad, needle in [
                ({"canary": 5}, "unknown variant 'canary'"),
                ({"champion": -1}, "integer 0-1000000"),
                ({"champion": "10"}, "integer 0-1000000"),
                ({"champion": 0, "challenger": 0}, "above 0"),
                ([], "JSON object"),
            ]:
                r = client.put("/admin/weights", json=bad)
                assert r.status_code == 400, bad
                assert needle in r.json()["error"], r.json()
            r = client.put("/admin/weights", json={"champion": 0, "challenger": 10})
            assert r.status_code == 200
            assert r.json()["variants"]["challenger"]["weight"] == 10
            seen = Counter(
                client.post("/v2/models/churn/infer", json=infer_body()).headers[
                    "x-mainsail-variant"
                ]
                for _ in range(50)
            )
        assert seen == {"challenger": 50}
    finally:
        router.stop()
        champ.stop()
        chall.stop()


def test_replacing_a_variant_points_traffic_at_the_new_server() -> None:
    old, new = ServerThread(V2Upstream(label=1)).start(), ServerThread(V2Upstream(label=2)).start()
    champ = ServerThread(V2Upstream()).start()
    router, _ = start_router({"champion": champ, "challenger": old}, {"challenger": 1})
    try:
        with httpx.Client(base_url=router.url, headers=AUTH) as client:
            r = client.put("/admin/variants/challenger", json={"url": "ftp://x", "model": "churn"})
            assert r.status_code == 400 and r.json()["error"].startswith("url")
            r = client.put(
                "/admin/variants/challenger",
                json={"url": new.url, "model": "churn", "version": "7"},
            )
            assert r.status_code == 200, r.text
            state = r.json()["variants"]["challenger"]
            assert state == {
                "role": "challenger",
                "url": new.url,
                "model": "churn",
                "version": "7",
                "weight": 1,
                "healthy": True,
            }
            r = client.post("/v2/models/churn/infer", json=infer_body())
            assert r.json()["outputs"][0]["data"] == [2]
            assert r.headers["x-mainsail-model-version"] == "7"
    finally:
        router.stop()
        for s in (old, new, champ):
            s.stop()
