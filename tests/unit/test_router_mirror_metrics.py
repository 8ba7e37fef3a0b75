"""Mirroring copies requests without touching the answer; metrics count per variant.

Real HTTP: router and V2 servers run under uvicorn on loopback.
"""

from __future__ import annotations

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.router import ServerThread, V2Upstream, infer_body, start_router


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_mirror_gets_copies_and_its_failures_do_not_reach_the_caller() -> None:
    champ_app = V2Upstream(label=0)
    mirror_app = V2Upstream(label=9, status=500, delay_s=0.05)
    champ, mirror = ServerThread(champ_app).start(), ServerThread(mirror_app).start()
    router, _ = start_router({"champion": champ, "mirror": mirror}, {"champion": 1, "mirror": 100})
    try:
        with httpx.Client(base_url=router.url) as client:
            for i in range(20):
                r = client.post("/v2/models/churn/infer", json=infer_body(float(i)))
                assert r.status_code == 200
                assert r.headers["x-mainsail-variant"] == "champion"
                assert r.json()["outputs"][0]["data"] == [0]
            labels = frozenset(
                {"variant": "mirror", "model": "churn", "version": "v-mirror"}.items()
            )
            answered = ("mainsail_router_requests_total", labels | {("code", "500")})
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                samples = _samples(client.get("/metrics").text)
                if samples.get(answered) == 20:
                    break
                time.sleep(0.05)
        assert mirror_app.received == champ_app.received
        assert mirror_app.request_ids == champ_app.request_ids
        assert samples[answered] == 20
        assert samples[("mainsail_router_errors_total", labels | {("reason", "status_5xx")})] == 20
    finally:
        router.stop()
        champ.stop()
        mirror.stop()


def test_metrics_count_requests_classes_values_and_latency_per_variant() -> None:
    champ, chall = (
        ServerThread(V2Upstream(label=0)).start(),
        ServerThread(V2Upstream(label=1)).start(),
    )
    router, _ = start_router(
        {"champion": champ, "challenger": chall}, {"champion": 70, "challenger": 30}
    )
    try:
        with httpx.Client(base_url=router.url) as client:
            seen = {"champion": 0, "challenger": 0}
            for _ in range(100):
                r = client.post("/v2/models/churn/infer", json=infer_body())
                seen[r.headers["x-mainsail-variant"]] += 1
            client.post("/v2/models/churn/infer", content=b"[]")
            samples = _samples(client.get("/metrics").text)
        for role, label in (("champion", "0"), ("challenger", "1")):
            base = frozenset({"variant": role, "model": "churn", "version": f"v-{role}"}.items())
            assert (
                samples[("mainsail_router_requests_total", base | {("code", "200")})] == seen[role]
            )
            key = base | {("output", "predict"), ("value", label)}
            assert samples[("mainsail_router_predictions_total", key)] == seen[role]
            count = samples[
                ("mainsail_router_prediction_value_count", base | {("output", "proba")})
            ]
            assert count == seen[role]
            total = samples[("mainsail_router_prediction_value_sum", base | {("output", "proba")})]
            assert abs(total - 0.25 * seen[role]) < 1e-9
            assert samples[("mainsail_router_request_duration_seconds_count", base)] == seen[role]
            weight = 70 if role == "champion" else 30
            assert samples[("mainsail_router_variant_weight", base)] == weight
        assert (
            samples[("mainsail_router_rejected_total", frozenset({("reason", "bad_request")}))] == 1
        )
    finally:
        router.stop()
        champ.stop()
        chall.stop()
