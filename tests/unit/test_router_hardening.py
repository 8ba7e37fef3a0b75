"""The router's bounds on client input (issue 19), against real HTTP upstreams.

Request ids, the kserve client's body, the binary tensor extension, a client error that must not
count against a variant, and a hung variant cut at the deadline and retried on the other one.
"""

from __future__ import annotations

import gzip
import json
import struct
import time

import httpx
import pytest

from tests.support.router import ServerThread, V2Upstream, infer_body, start_router


@pytest.fixture
def pair():  # type: ignore[no-untyped-def]
    up_champ, up_chall = V2Upstream(label=0), V2Upstream(label=1)
    champ = ServerThread(up_champ).start()
    chall = ServerThread(up_chall).start()
    router, state = start_router({"champion": champ, "challenger": chall}, {"champion": 1})
    try:
        yield router, state, up_champ, up_chall
    finally:
        router.stop()
        champ.stop()
        chall.stop()


@pytest.mark.parametrize(
    "rid", ["a\nb", "a\r\nb", "a\x00b", "é", "x" * 129, "", "-leading-dash", '{"x"}']
)
def test_a_bad_body_id_is_a_400_naming_id_and_never_reaches_a_variant(pair, rid: str) -> None:  # type: ignore[no-untyped-def]
    router, state, champ, _ = pair
    before = len(champ.received)
    r = httpx.post(f"{router.url}/v2/models/churn/infer", json={**infer_body(), "id": rid})
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith("id:")
    assert len(r.text) < 400  # a huge id is never echoed
    assert len(champ.received) == before
    assert state.variants["champion"].healthy


def test_a_bad_x_request_id_header_is_a_400(pair) -> None:  # type: ignore[no-untyped-def]
    router, *_ = pair
    r = httpx.post(
        f"{router.url}/v2/models/churn/infer",
        json=infer_body(),
        headers={"x-request-id": "é".encode()},
    )
    assert r.status_code == 400 and r.json()["error"].startswith("x-request-id:")
    r = httpx.post(
        f"{router.url}/v2/models/churn/infer",
        json=infer_body(),
        headers={"x-request-id": "y" * 129},
    )
    assert r.status_code == 400
    ok = httpx.post(
        f"{router.url}/v2/models/churn/infer",
        json=infer_body(),
        headers={"x-request-id": "client-42.a:b@c+d"},
    )
    assert ok.status_code == 200 and ok.headers["x-request-id"] == "client-42.a:b@c+d"


def test_the_kserve_clients_body_with_model_name_is_accepted(pair) -> None:  # type: ignore[no-untyped-def]
    router, *_ = pair
    body = {**infer_body(), "model_name": "churn", "model_version": "1", "id": "k-1"}
    r = httpx.post(f"{router.url}/v2/models/churn/infer", json=body)
    assert r.status_code == 200, r.text


def test_deep_json_anywhere_is_a_400_not_a_500(pair) -> None:  # type: ignore[no-untyped-def]
    router, *_ = pair
    for depth in (40, 900, 5000):
        raw = json.dumps({**infer_body(), "outputs": [{"name": "p", "parameters": {"x": 0}}]})
        raw = raw.replace('"x": 0', '"x": ' + "[" * depth + "]" * depth)
        r = httpx.post(
            f"{router.url}/v2/models/churn/infer",
            content=raw,
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 400 and "nested too deeply" in r.json()["error"], r.text


def test_the_binary_tensor_extension_is_decoded_and_forwarded_as_json(pair) -> None:  # type: ignore[no-untyped-def]
    router, _, champ, _ = pair
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [1, 4],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": 32},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    blob = struct.pack("<4d", 1.0, float("nan"), 3.0, 4.0)
    r = httpx.post(
        f"{router.url}/v2/models/churn/infer",
        content=header + blob,
        headers={
            "inference-header-content-length": str(len(header)),
            "content-type": "application/octet-stream",
        },
    )
    assert r.status_code == 200, r.text
    sent = champ.received[-1]
    assert sent["inputs"][0]["data"] == [1.0, None, 3.0, 4.0]  # NaN -> null (missing)
    assert "parameters" not in sent["inputs"][0]
    # Bytes that do not fit the shape: a 400 naming the input.
    r = httpx.post(
        f"{router.url}/v2/models/churn/infer",
        content=header + blob[:-3],
        headers={"inference-header-content-length": str(len(header))},
    )
    assert r.status_code == 400 and "inputs[0] ('x')" in r.json()["error"], r.text


def test_a_client_error_from_a_variant_counts_neither_as_error_nor_against_health() -> None:
    bad = ServerThread(V2Upstream(status=400)).start()
    router, state = start_router({"champion": bad}, {"champion": 1})
    try:
        for _ in range(20):
            r = httpx.post(f"{router.url}/v2/models/churn/infer", json=infer_body())
            assert r.status_code == 400
        metrics = httpx.get(f"{router.url}/metrics").text
        assert 'code="400"' in metrics or 'status="400"' in metrics, metrics
        assert "mainsail_router_errors_total{" not in metrics
        assert state.variants["champion"].healthy
    finally:
        router.stop()
        bad.stop()


def test_a_hung_variant_is_cut_at_the_deadline_and_the_request_retried_on_the_other() -> None:
    hung = ServerThread(V2Upstream(delay_s=30.0, label=1)).start()
    good = ServerThread(V2Upstream(label=0)).start()
    router, _ = start_router(
        {"champion": good, "challenger": hung},
        {"challenger": 1, "champion": 0},
        upstream_timeout_s=0.3,
    )
    try:
        start = time.monotonic()
        r = httpx.post(f"{router.url}/v2/models/churn/infer", json=infer_body(), timeout=10)
        elapsed = time.monotonic() - start
        assert r.status_code == 200, r.text
        assert r.headers["x-mainsail-variant"] == "champion"
        assert elapsed < 3.0
        metrics = httpx.get(f"{router.url}/metrics").text
        assert 'mainsail_router_retries_total{reason="timeout",variant="challenger"}' in metrics
    finally:
        router.stop()
        hung.stop()
        good.stop()


def test_gzip_bodies_are_inflated_within_the_limit(pair) -> None:  # type: ignore[no-untyped-def]
    router, _, champ, _ = pair
    packed = gzip.compress(json.dumps(infer_body(2.0)).encode())
    r = httpx.post(
        f"{router.url}/v2/models/churn/infer",
        content=packed,
        headers={"content-encoding": "gzip", "content-type": "application/json"},
    )
    assert r.status_code == 200, r.text
    assert champ.received[-1]["inputs"][0]["data"] == [2.0] * 4
    bomb = gzip.compress(b"0" * (20 * 1024 * 1024))
    r = httpx.post(
        f"{router.url}/v2/models/churn/infer", content=bomb, headers={"content-encoding": "gzip"}
    )
    assert r.status_code == 413, r.text
    r = httpx.post(
        f"{router.url}/v2/models/churn/infer", content=b"x", headers={"content-encoding": "br"}
    )
    assert r.status_code == 415, r.text
