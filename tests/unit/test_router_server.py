"""The router's lean HTTP server speaks HTTP/1.1 correctly, and both ways of serving the router
(lean server, uvicorn + ASGI) answer inference the same.

Real HTTP: raw sockets where the test needs control of the bytes on the wire (pipelining,
chunked bodies, 100-continue, HTTP/1.0, malformed requests), httpx elsewhere.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httptools
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mainsail.serving.router import server as lean
from tests.support.router import ServerThread, V2Upstream, infer_body, start_router

INFER = b"/v2/models/churn/infer"


class _Responses:
    """Reads whole HTTP responses off a raw socket with httptools."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.parser = httptools.HttpResponseParser(self)
        self.done: list[tuple[int, dict[bytes, bytes], bytes]] = []
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.done.append((self.parser.get_status_code(), self._headers, b"".join(self._body)))
        self._headers, self._body = {}, []

    def read(self, n: int) -> list[tuple[int, dict[bytes, bytes], bytes]]:
        while len(self.done) < n:
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError(f"connection closed after {len(self.done)} of {n} answers")
            self.parser.feed_data(data)
        out, self.done = self.done[:n], self.done[n:]
        return out


def _post(rid: str, body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"POST " + INFER + b" HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"x-request-id: "
        + rid.encode()
        + b"\r\ncontent-length: %d\r\n" % len(body)
        + extra
        + b"\r\n"
        + body
    )


@pytest.fixture
def lean_router() -> Iterator[tuple[Any, V2Upstream]]:
    upstream = V2Upstream(label=3)
    up = ServerThread(upstream).start()
    router, _ = start_router({"champion": up}, {"champion": 1}, max_body_bytes=4096)
    yield router, upstream
    router.stop()
    up.stop()


def _connect(router: Any) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", router.port), timeout=5)
    return sock


def test_pipelined_requests_on_one_connection_are_answered_in_order(lean_router) -> None:
    router, upstream = lean_router
    body = json.dumps(infer_body()).encode()
    with _connect(router) as sock:
        sock.sendall(b"".join(_post(f"r{i}", body) for i in range(5)))  # one write, 5 requests
        answers = _Responses(sock).read(5)
    assert [a[0] for a in answers] == [200] * 5
    assert [a[1][b"x-request-id"] for a in answers] == [f"r{i}".encode() for i in range(5)]
    assert all(json.loads(a[2])["outputs"][0]["data"] == [3] for a in answers)
    assert upstream.request_ids == [f"r{i}" for i in range(5)]
    assert all(a[1][b"x-mainsail-variant"] == b"champion" for a in answers)


def test_chunked_request_body_is_decoded(lean_router) -> None:
    router, upstream = lean_router
    body = json.dumps(infer_body(value=2.5)).encode()
    half = len(body) // 2
    chunked = (
        b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:half], body[half:]))
        + b"0\r\n\r\n"
    )
    request = (
        b"POST " + INFER + b" HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"transfer-encoding: chunked\r\n\r\n" + chunked
    )
    with _connect(router) as sock:
        sock.sendall(request)
        [(status, _headers, _body)] = _Responses(sock).read(1)
    assert status == 200
    assert upstream.received[-1]["inputs"][0]["data"] == [2.5] * 4


def test_expect_100_continue_gets_an_interim_answer_before_the_body(lean_router) -> None:
    router, _ = lean_router
    body = json.dumps(infer_body()).encode()
    head, _, payload = _post("c1", body, b"expect: 100-continue\r\n").partition(b"\r\n\r\n")
    with _connect(router) as sock:
        sock.sendall(head + b"\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(payload)
        [(status, headers, _body)] = _Responses(sock).read(1)
    assert status == 200 and headers[b"x-request-id"] == b"c1"


def test_http_1_0_answer_closes_the_connection(lean_router) -> None:
    router, _ = lean_router
    with _connect(router) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.0\r\n\r\n")
        reader = _Responses(sock)
        [(status, headers, body)] = reader.read(1)
        assert sock.recv(10) == b""  # closed by the server
    assert status == 200 and json.loads(body) == {"live": True}
    assert headers[b"connection"] == b"close"


def test_malformed_request_gets_400_and_the_connection_closes(lean_router) -> None:
    router, _ = lean_router
    with _connect(router) as sock:
        sock.sendall(b"POST /v2/models/churn/infer HTTP/1.1\r\ncontent-length: nope\r\n\r\n")
        [(status, _headers, body)] = _Responses(sock).read(1)
        assert sock.recv(10) == b""
    assert status == 400 and "malformed HTTP request" in json.loads(body)["error"]


def test_requests_before_a_malformed_one_are_answered_first(lean_router) -> None:
    router, upstream = lean_router
    body = json.dumps(infer_body()).encode()
    with _connect(router) as sock:
        sock.sendall(_post("first", body) + b"BOGUS\x00 / HTTP/1.1\r\n\r\n")
        answers = _Responses(sock).read(2)
        assert sock.recv(10) == b""
    assert [a[0] for a in answers] == [200, 400]
    assert answers[0][1][b"x-request-id"] == b"first"
    assert upstream.request_ids == ["first"]


def test_oversized_request_head_gets_431_and_the_connection_closes(lean_router) -> None:
    router, _ = lean_router
    with _connect(router) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n")
        for i in range(100):
            sock.sendall(b"x-pad-%d: %s\r\n" % (i, b"y" * 1000))
        [(status, _headers, body)] = _Responses(sock).read(1)
    assert status == 431 and "65536" in json.loads(body)["error"]


def test_oversized_bodies_get_413_and_the_connection_stays_usable(lean_router) -> None:
    router, upstream = lean_router
    big = b'{"pad": "' + b"x" * 10_000 + b'"}'
    body = json.dumps(infer_body()).encode()
    admin = (
        b"PUT /admin/weights HTTP/1.1\r\nhost: x\r\nauthorization: Bearer s3cret\r\n"
        b"content-length: %d\r\n\r\n" % len(big) + big
    )
    with _connect(router) as sock:
        sock.sendall(_post("big", big) + admin + _post("ok", body))
        answers = _Responses(sock).read(3)
    assert [a[0] for a in answers] == [413, 413, 200]
    assert "4096" in json.loads(answers[0][2])["error"]
    assert upstream.request_ids == ["ok"]


def test_head_answers_carry_no_body(lean_router) -> None:
    router, _ = lean_router
    with _connect(router) as sock:
        sock.sendall(
            b"HEAD /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n"
            b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n"
        )
        # A response parser cannot know the first answer is to a HEAD: read raw bytes.
        data = b""
        while data.count(b"HTTP/1.1 200") < 2 or not data.endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    first, _, rest = data.partition(b"\r\n\r\n")
    assert b"content-length: 13" in first.lower()  # len(b'{"live":true}')
    assert rest.startswith(b"HTTP/1.1 200")
    assert rest.endswith(b'{"live":true}')


def test_idle_keep_alive_connections_are_closed(lean_router, monkeypatch) -> None:
    router, _ = lean_router
    monkeypatch.setattr(lean, "KEEP_ALIVE_S", 0.2)
    with _connect(router) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n")
        _Responses(sock).read(1)
        start = time.monotonic()
        assert sock.recv(10) == b""  # the sweep runs each second
        assert time.monotonic() - start < 3


def test_stop_lets_an_answer_in_progress_finish() -> None:
    slow = V2Upstream(delay_s=0.5)
    up = ServerThread(slow).start()
    router, _ = start_router({"champion": up}, {"champion": 1})
    result: dict[str, Any] = {}

    def call() -> None:
        result["r"] = httpx.post(f"{router.url}/v2/models/churn/infer", json=infer_body())

    try:
        caller = threading.Thread(target=call)
        caller.start()
        deadline = time.monotonic() + 5
        while not slow.received and time.monotonic() < deadline:
            time.sleep(0.01)
        assert slow.received, "the request never reached the upstream"
        router.stop()
        caller.join(5)
        assert result["r"].status_code == 200
        assert result["r"].headers["connection"] == "close"
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{router.url}/v2/health/live")
    finally:
        up.stop()


@pytest.mark.parametrize("server", ["lean", "uvicorn"])
def test_both_servers_answer_inference_alike(server: str) -> None:
    champ, chall = V2Upstream(label=0), V2Upstream(label=1)
    s1, s2 = ServerThread(champ).start(), ServerThread(chall).start()
    router, _ = start_router(
        {"champion": s1, "challenger": s2},
        {"champion": 50, "challenger": 50},
        server=server,
        max_body_bytes=2048,
    )
    try:
        with httpx.Client(base_url=router.url) as client:
            seen = {"champion": 0, "challenger": 0}
            for i in range(40):
                r = client.post(
                    "/v2/models/churn/infer", json=infer_body(), headers={"x-request-id": f"q{i}"}
                )
                assert r.status_code == 200
                assert r.headers["x-request-id"] == f"q{i}"
                assert r.headers["content-type"] == "application/json"
                role = r.headers["x-mainsail-variant"]
                assert r.headers["x-mainsail-model-version"] == f"v-{role}"
                assert r.json()["outputs"][0]["data"] == [0 if role == "champion" else 1]
                seen[role] += 1
            r = client.get("/v2/models/churn/infer")
            assert r.status_code == 405 and r.headers["allow"] == "POST"
            assert client.post("/v2/models/other/infer", json=infer_body()).status_code == 404
            big = infer_body()
            big["inputs"][0]["data"] = [1.0] * 1000
            assert client.post("/v2/models/churn/infer", json=big).status_code == 413
            fresh = [client.post("/v2/models/churn/infer", json=infer_body()) for _ in range(3)]
            rids = {r.headers["x-request-id"] for r in fresh}
            assert len(rids) == 3 and all(len(rid) == 32 and int(rid, 16) >= 0 for rid in rids)
            assert client.get("/v2/models/churn/ready").status_code == 200
            text = client.get("/metrics").text
        samples = {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        assert seen["champion"] > 0 and seen["challenger"] > 0
        total = sum(
            v
            for (name, labels), v in samples.items()
            if name == "mainsail_router_requests_total" and ("code", "200") in labels
        )
        assert total == 43
        rejected = {
            dict(labels)["reason"]: v
            for (name, labels), v in samples.items()
            if name == "mainsail_router_rejected_total"
        }
        assert rejected == {"unknown_model": 1, "too_large": 1}
    finally:
        router.stop()
        s1.stop()
        s2.stop()
