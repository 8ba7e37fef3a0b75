"""DriftFeed, the serving side of the drift feed: never blocks, counts drops, survives outages.

The receiving end is a real HTTP server in the test (stdlib) whose speed and answers the test
controls; the real sidecar is exercised in test_drift_sidecar.py and the integration tests.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from mainsail.drift.client import DriftFeed, encode_batch
from mainsail.s3local import free_port


class _Receiver:
    def __init__(self, delay_s: float = 0.0, status: int = 202) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.delay_s = delay_s
        self.status = status
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if receiver.delay_s:
                    receiver.release.wait(receiver.delay_s)
                receiver.bodies.append(body)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def rows(self) -> int:
        return sum(len(b["rows"]) for b in self.bodies)

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    r = _Receiver()
    yield r
    r.close()


def _rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"x": float(i), "c": "a"} for i in range(start, start + n)]


def test_rows_arrive_in_order_and_are_counted(receiver: _Receiver) -> None:
    with DriftFeed(receiver.url) as feed:
        for i in range(5):
            assert feed.submit("churn", "3", _rows(10, i * 10), [0.5] * 10)
        assert feed.flush(10)
    xs = [row["x"] for body in receiver.bodies for row in body["rows"]]
    assert xs == [float(i) for i in range(50)]
    assert all(b["model"] == "churn" and b["version"] == "3" for b in receiver.bodies)
    assert sum(len(b["predictions"]) for b in receiver.bodies) == 50
    assert feed.stats.snapshot() == {
        "submitted_rows": 50,
        "sent_rows": 50,
        "dropped_rows": 0,
        "failed_rows": 0,
    }


def test_submit_never_blocks_and_counts_drops_when_the_sidecar_is_slow() -> None:
    slow = _Receiver(delay_s=30.0)
    try:
        feed = DriftFeed(slow.url, max_queue=3, timeout_s=30.0)
        t0 = time.perf_counter()
        accepted = [feed.submit("churn", "3", _rows(10)) for _ in range(50)]
        elapsed = time.perf_counter() - t0
        # One batch is in flight, three wait in the queue; the rest are dropped at once.
        assert elapsed < 1.0, f"submit blocked for {elapsed:.2f}s"
        assert 3 <= sum(accepted) <= 4
        snap = feed.stats.snapshot()
        assert snap["dropped_rows"] == 10 * (50 - sum(accepted))
        assert snap["submitted_rows"] == 10 * sum(accepted)
        slow.release.set()
        assert feed.flush(10)
        feed.close()
        assert feed.stats.sent_rows == 10 * sum(accepted)
    finally:
        slow.close()


def test_a_sidecar_that_is_down_costs_failed_rows_not_exceptions() -> None:
    errors: list[str] = []
    port = free_port("127.0.0.1")  # nothing listens there
    with DriftFeed(f"http://127.0.0.1:{port}", timeout_s=0.5, on_error=errors.append) as feed:
        for _ in range(3):
            assert feed.submit("churn", "3", _rows(5))
        assert feed.flush(10)
    snap = feed.stats.snapshot()
    assert snap["failed_rows"] == 15 and snap["sent_rows"] == 0
    assert errors and "Connection refused" in errors[0]
    assert "POST" in feed.stats.last_error


def test_error_answers_count_as_failed(receiver: _Receiver) -> None:
    receiver.status = 400
    with DriftFeed(receiver.url) as feed:
        feed.submit("churn", "3", _rows(4))
        assert feed.flush(10)
    assert feed.stats.failed_rows == 4 and feed.stats.sent_rows == 0
    assert "400" in feed.stats.last_error


def test_queued_batches_of_one_version_are_merged_but_versions_are_not_mixed() -> None:
    slow = _Receiver(delay_s=30.0)
    try:
        feed = DriftFeed(slow.url, max_queue=100)
        feed.submit("churn", "1", _rows(1))  # taken at once, held by the slow receiver
        time.sleep(0.3)
        for _ in range(10):
            feed.submit("churn", "1", _rows(2))
        feed.submit("churn", "2", _rows(3))
        slow.release.set()
        slow.delay_s = 0.0
        assert feed.flush(10)
        feed.close()
        sizes = [(b["version"], len(b["rows"])) for b in slow.bodies]
        assert sizes == [("1", 1), ("1", 20), ("2", 3)]
    finally:
        slow.close()


def test_linger_merges_a_burst_and_a_half_full_queue_cuts_it_short(receiver: _Receiver) -> None:
    # A 30 s linger: the test would time out if the half-full wake-up did not end it early.
    feed = DriftFeed(receiver.url, max_queue=20, linger_s=30.0)
    try:
        started = time.monotonic()
        for i in range(11):  # the first is taken by the thread; then 10 queued = half of 20
            feed.submit("churn", "1", _rows(1, start=i))
            time.sleep(0.01)
        assert feed.flush(10)
        assert time.monotonic() - started < 10
        assert receiver.rows() == 11
        assert len(receiver.bodies) < 11  # merged into fewer POSTs than batches
        assert [r["x"] for b in receiver.bodies for r in b["rows"]] == [float(i) for i in range(11)]
    finally:
        feed.close()


def test_submit_after_close_is_dropped(receiver: _Receiver) -> None:
    feed = DriftFeed(receiver.url)
    feed.close()
    assert feed.submit("churn", "3", _rows(2)) is False
    assert feed.stats.dropped_rows == 2


def test_encode_batch_turns_numpy_nan_and_na_into_json() -> None:
    import pandas as pd

    rows = [
        {"x": np.float64(1.5), "n": np.int64(3), "b": np.bool_(True), "m": math.nan, "p": pd.NA}
    ]
    body = json.loads(encode_batch("churn", 3, rows, np.array([0.25])))
    assert body == {
        "model": "churn",
        "version": "3",
        "rows": [{"x": 1.5, "n": 3, "b": True, "m": None, "p": None}],
        "predictions": [0.25],
    }


def test_merged_pre_encoded_batches_post_the_same_json_as_encode_batch(receiver: _Receiver) -> None:
    first = [{"x": 1.5, "c": "a", "n": np.float32(2.0)}]
    second = [{"x": float("nan"), "c": None, "n": np.int64(3)}, {"x": 0.0, "c": "b", "n": 1}]
    feed = DriftFeed(receiver.url, linger_s=0.5)
    feed.submit("churn", "1", first, [np.int64(0)])
    feed.submit("churn", "1", second, ["1", 0])
    assert feed.flush(10)
    feed.close()
    expected = json.loads(encode_batch("churn", "1", first + second, [0, "1", 0]))
    assert receiver.bodies == [expected]
    assert expected["rows"][1] == {"x": None, "c": None, "n": 3}


def test_max_queue_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_queue"):
        DriftFeed("http://127.0.0.1:1", max_queue=0)


def test_posts_reuse_one_keep_alive_connection_and_survive_its_close() -> None:
    peers: list[tuple[str, int]] = []
    bodies: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like the sidecar

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            peers.append(self.client_address)
            bodies.append(len(json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            if len(bodies) == 3:
                self.send_header("Connection", "close")  # the server ends this connection
            self.end_headers()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with DriftFeed(f"http://127.0.0.1:{httpd.server_address[1]}", linger_s=0) as feed:
            for i in range(6):
                assert feed.submit("churn", "3", _rows(1, i))
                assert feed.flush(10)
        assert feed.stats.snapshot()["sent_rows"] == 6
        assert len(peers) == 6
        # One connection for the first three POSTs, a fresh one after the server closed it.
        assert len(set(peers[:3])) == 1 and len(set(peers[3:])) == 1
        assert peers[0] != peers[3]
    finally:
        httpd.shutdown()
        httpd.server_close()
