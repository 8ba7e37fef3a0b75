"""DriftFeed and LoopDriftFeed, the serving side of the drift feed: never blocks, counts drops,
survives outages.

The receiving end is a real HTTP server in the test (stdlib) whose speed and answers the test
controls; the real sidecar is exercised in test_drift_sidecar.py and the integration tests.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from mainsail.drift.client import DriftFeed, LoopDriftFeed, encode_batch
from mainsail.registry.seaweedfs import free_port
from tests.support.encoders import with_and_without_orjson


class _Receiver:
    def __init__(self, delay_s: float = 0.0, status: int = 202, keep_alive: bool = False) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.peers: list[int] = []
        """The client port of each POST: one port for many POSTs = a kept-alive connection."""
        self.delay_s = delay_s
        self.status = status
        self.close_after_next = False
        """Close the connection after the next answer without saying so (an idle timeout)."""
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if receiver.delay_s:
                    receiver.release.wait(receiver.delay_s)
                receiver.bodies.append(body)
                receiver.peers.append(self.client_address[1])
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
                if receiver.close_after_next:
                    receiver.close_after_next = False
                    self.close_connection = True

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
    # A 30 s linger: the rows could only arrive in time if the half-full wake-up ended it.
    feed = DriftFeed(receiver.url, max_queue=20, linger_s=30.0)
    try:
        for i in range(10):  # the 10th queued batch is half of 20
            feed.submit("churn", "1", _rows(1, start=i))
            time.sleep(0.01)
        deadline = time.monotonic() + 10
        while receiver.rows() < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert receiver.rows() == 10
        assert len(receiver.bodies) < 10  # merged into fewer POSTs than batches
        assert [r["x"] for b in receiver.bodies for r in b["rows"]] == [float(i) for i in range(10)]
    finally:
        feed.close()


def test_flush_sends_at_once_instead_of_lingering(receiver: _Receiver) -> None:
    feed = DriftFeed(receiver.url, linger_s=30.0)
    try:
        feed.submit("churn", "1", _rows(3))
        started = time.monotonic()
        assert feed.flush(10)
        assert time.monotonic() - started < 10
        assert receiver.rows() == 3
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


def test_a_batch_posts_the_same_json_with_orjson_and_without() -> None:
    # orjson encodes the rows where the env has it (MLServer's dependency); a process without
    # it, or a value orjson refuses (an integer beyond 64 bits), gets json's: the same values.
    code = """
import json, math, numpy, pandas
from mainsail.drift import client
rows = [
    [numpy.float64(1.5), numpy.int64(3), numpy.bool_(True), math.nan, pandas.NA, "é"],
    [math.inf, -0.0, 2**70, numpy.float32(0.25), None, "x"],
]
print(json.dumps({
    "orjson": client.orjson is not None,
    "body": client.encode_batch(
        "churn", 3, rows, numpy.array([0, 1]), columns=list("abcdef"), scores=[0.5, math.nan]
    ).decode(),
}))
"""
    runs = with_and_without_orjson(code)
    assert runs["with"]["orjson"] and not runs["without"]["orjson"]
    bodies = [json.loads(run["body"]) for run in runs.values()]
    assert (
        bodies[0]
        == bodies[1]
        == {
            "model": "churn",
            "version": "3",
            "columns": list("abcdef"),
            "rows": [[1.5, 3, True, None, None, "é"], [None, -0.0, 2**70, 0.25, None, "x"]],
            "predictions": [0, 1],
            "scores": [0.5, None],
        }
    )


def test_numpy_arrays_post_the_same_json_as_lists_with_orjson_and_without() -> None:
    # Arrays of numbers, booleans and str are kept as they are and encoded with their POST:
    # NaN and infinities as null, a one-column matrix still as one list per row, and float16
    # (no native numpy type for orjson) as its values.
    code = """
import json, numpy
from mainsail.drift import client
print(json.dumps({"body": client.encode_batch(
    "m", 1, numpy.array([[1.5], [numpy.nan]]), numpy.array(["a", "b"]), columns=["x"],
    scores=numpy.array([0.5, numpy.inf], dtype=numpy.float16),
).decode()}))
"""
    runs = with_and_without_orjson(code)
    for run in runs.values():
        assert json.loads(run["body"]) == {
            "model": "m",
            "version": "1",
            "columns": ["x"],
            "rows": [[1.5], [None]],
            "predictions": ["a", "b"],
            "scores": [0.5, None],
        }


def test_array_batches_merge_into_the_json_their_lists_make(receiver: _Receiver) -> None:
    # A served matrix, its labels and its scores queue as arrays and are encoded with the
    # POST, each run of one dtype in one call; lists between them are encoded at submit.
    names = ("x", "y")
    batches = [
        (np.array([[1.5, np.nan], [np.inf, -0.0]]), np.array(["a", "b"]), np.array([0.25, np.nan])),
        ([(2.0, None)], ["c"], [0.5]),
        (np.array([[3.0, 4.0]], dtype=np.float32), np.array(["d"]), np.array([0.75])),
        (np.array([[5, 6]]), np.array(["e"]), np.array([1.0], dtype=np.float32)),
        (np.array([[7.0, 8.0]]), np.array(["f"]), np.array([0.0])),
    ]
    feed = DriftFeed(receiver.url, linger_s=0.5)
    for rows, labels, scores in batches:
        assert feed.submit("m", "1", rows, labels, columns=names, scores=scores)
    assert feed.flush(10)
    feed.close()
    as_lists = [[1.5, None], [None, -0.0], [2.0, None], [3.0, 4.0], [5, 6], [7.0, 8.0]]
    scores = [0.25, None, 0.5, 0.75, 1.0, 0.0]
    expected = encode_batch("m", "1", as_lists, list("abcdef"), columns=names, scores=scores)
    assert receiver.bodies == [json.loads(expected)]


def test_submitted_rows_never_go_down_while_the_sender_takes_batches(receiver: _Receiver) -> None:
    # submit() takes no lock: the sender counts what it takes, a snapshot adds what is queued,
    # and a Prometheus counter read from it must never go down.
    feed = DriftFeed(receiver.url, linger_s=0.001, max_queue=5000)
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append(feed.stats.snapshot()["submitted_rows"])

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for i in range(3000):
            assert feed.submit("m", "1", np.array([[float(i)]]), columns=("x",))
        assert feed.flush(10)
    finally:
        stop.set()
        watcher.join()
        feed.close()
    assert len(seen) > 100 and seen == sorted(seen)
    assert feed.stats.snapshot()["submitted_rows"] == 3000 == receiver.rows()


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


def test_rows_with_columns_post_names_once_and_merge_only_with_the_same_columns(
    receiver: _Receiver,
) -> None:
    names = ("x", "c")
    feed = DriftFeed(receiver.url, linger_s=0.5)
    assert feed.submit("churn", "1", [(1.5, "a")], [0], columns=names)
    assert feed.submit("churn", "1", [[np.float64(2.0), None]], ["1"], columns=names)
    assert feed.submit("churn", "1", [(3.0, "b", True)], [1], columns=("x", "c", "flag"))
    assert feed.submit("churn", "1", [{"x": 4.0, "c": "d"}], [0])  # objects: a POST of its own
    assert feed.flush(10)
    feed.close()
    assert receiver.bodies == [
        json.loads(encode_batch("churn", "1", [(1.5, "a"), (2.0, None)], [0, "1"], columns=names)),
        json.loads(encode_batch("churn", "1", [(3.0, "b", True)], [1], columns=["x", "c", "flag"])),
        json.loads(encode_batch("churn", "1", [{"x": 4.0, "c": "d"}], [0])),
    ]
    assert receiver.bodies[0]["columns"] == ["x", "c"]
    assert receiver.bodies[0]["rows"] == [[1.5, "a"], [2.0, None]]
    assert "columns" not in receiver.bodies[2]


def test_bad_columns_are_refused_by_encode_batch_and_dropped_by_submit() -> None:
    with pytest.raises(ValueError, match="columns must be non-empty feature names"):
        encode_batch("churn", "1", [(1,)], columns=[""])
    feed = DriftFeed("http://127.0.0.1:1", linger_s=0)
    try:
        assert feed.submit("churn", "1", [(1,)], columns=()) is False
        assert feed.stats.dropped_rows == 1
        assert "columns must be non-empty" in feed.stats.last_error
    finally:
        feed.close(0.1)


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


# -- LoopDriftFeed: the same feed on an asyncio loop (the model server's), without a thread ----


def _names() -> set[str]:
    return {t.name for t in threading.enumerate()}


def test_loop_feed_sends_from_the_loop_in_order_and_merges_a_linger(receiver: _Receiver) -> None:
    names = ("x", "c")

    async def scenario() -> LoopDriftFeed:
        feed = LoopDriftFeed(receiver.url, linger_s=0.3)
        for i in range(5):
            assert feed.submit("churn", "3", [(float(i), "a")], [i], columns=names)
            await asyncio.sleep(0.01)
        assert "drift-feed" not in _names()  # no thread of its own
        await asyncio.sleep(1.0)  # the linger ends on its own: no flush
        await feed.aclose()
        return feed

    feed = asyncio.run(scenario())
    rows = [(float(i), "a") for i in range(5)]
    assert receiver.bodies == [
        json.loads(encode_batch("churn", "3", rows, list(range(5)), columns=names))
    ]
    assert feed.stats.snapshot() == {
        "submitted_rows": 5,
        "sent_rows": 5,
        "dropped_rows": 0,
        "failed_rows": 0,
    }


def test_loop_feed_half_full_queue_ends_the_linger(receiver: _Receiver) -> None:
    async def scenario() -> None:
        # A 30 s linger: the rows only arrive in time if the half-full queue ended it.
        feed = LoopDriftFeed(receiver.url, max_queue=20, linger_s=30.0)
        for i in range(10):
            feed.submit("churn", "1", _rows(1, start=i))
        deadline = time.monotonic() + 10
        while receiver.rows() < 10 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await feed.aclose()

    asyncio.run(scenario())
    assert receiver.rows() == 10 and len(receiver.bodies) == 1


def test_loop_feed_never_blocks_the_loop_when_the_sidecar_hangs() -> None:
    slow = _Receiver(delay_s=30.0)

    async def scenario() -> tuple[LoopDriftFeed, list[bool], int]:
        feed = LoopDriftFeed(slow.url, max_queue=3, timeout_s=0.5, linger_s=0)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        t0 = time.perf_counter()
        accepted = []
        for _ in range(50):
            accepted.append(feed.submit("churn", "3", _rows(10)))
            await asyncio.sleep(0)
        assert time.perf_counter() - t0 < 1.0
        await asyncio.sleep(1.5)  # the POST in flight times out meanwhile
        task.cancel()
        slow.release.set()
        assert await feed.flush(10)
        await feed.aclose()
        return feed, accepted, ticks

    try:
        feed, accepted, ticks = asyncio.run(scenario())
    finally:
        slow.close()
    assert ticks > 50  # ~150 if the loop ran freely; a blocked loop would show a handful
    snap = feed.stats.snapshot()
    assert snap["dropped_rows"] == 10 * accepted.count(False) > 0
    assert snap["failed_rows"] >= 10  # the hung POST, cut off by timeout_s
    assert snap["sent_rows"] + snap["failed_rows"] == snap["submitted_rows"]
    assert "TimeoutError" in feed.stats.last_error


def test_loop_feed_counts_a_sidecar_that_is_down_or_refuses() -> None:
    errors: list[str] = []
    port = free_port("127.0.0.1")  # nothing listens there
    refusing = _Receiver(status=400)

    async def scenario() -> tuple[LoopDriftFeed, LoopDriftFeed]:
        down = LoopDriftFeed(f"http://127.0.0.1:{port}", timeout_s=0.5, on_error=errors.append)
        refused = LoopDriftFeed(refusing.url)
        for feed in (down, refused):
            for _ in range(3):
                assert feed.submit("churn", "3", _rows(5))
            assert await feed.flush(10)
            await feed.aclose()
        return down, refused

    try:
        down, refused = asyncio.run(scenario())
    finally:
        refusing.close()
    assert down.stats.failed_rows == 15 and down.stats.sent_rows == 0
    assert errors and "ConnectionRefusedError" in errors[0]
    assert refused.stats.failed_rows == 15 and "HTTP 400" in refused.stats.last_error


def test_loop_feed_keeps_its_connection_and_retries_once_when_the_sidecar_closed_it() -> None:
    receiver = _Receiver(keep_alive=True)

    async def scenario() -> LoopDriftFeed:
        feed = LoopDriftFeed(receiver.url, linger_s=0)
        for i in range(3):
            feed.submit("churn", "1", _rows(1, start=i))
            assert await feed.flush(10)
        receiver.close_after_next = True  # the next answer, then an idle-timeout close
        for i in range(3, 5):
            feed.submit("churn", "1", _rows(1, start=i))
            assert await feed.flush(10)
            await asyncio.sleep(0.1)  # let the close reach the client
        await feed.aclose()
        return feed

    try:
        feed = asyncio.run(scenario())
    finally:
        receiver.close()
    assert [r["x"] for b in receiver.bodies for r in b["rows"]] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert len(set(receiver.peers[:4])) == 1  # one kept-alive connection for the first four
    assert receiver.peers[4] != receiver.peers[3]  # a fresh one after the close
    assert feed.stats.failed_rows == 0 and feed.stats.sent_rows == 5


def test_loop_feed_takes_batches_from_other_threads(receiver: _Receiver) -> None:
    async def scenario() -> LoopDriftFeed:
        feed = LoopDriftFeed(receiver.url, linger_s=0.05)
        worker = threading.Thread(target=lambda: feed.submit("churn", "1", _rows(4)))
        worker.start()
        await asyncio.to_thread(worker.join)
        await asyncio.sleep(0.05)  # the hand-over runs on the loop
        assert await feed.flush(10)
        await feed.aclose()
        return feed

    feed = asyncio.run(scenario())
    assert receiver.rows() == 4 and feed.stats.sent_rows == 4


def test_loop_feed_gathers_array_batches_into_the_json_their_lists_make(
    receiver: _Receiver,
) -> None:
    # On the loop, consecutive array batches of one model version are kept in one gather and
    # joined when it is queued; a full gather, a list batch, another dtype or a wider text
    # starts a new one. The POST must be what the rows as lists make, in order, ids included;
    # a gather holds at most `max_merge_rows`, where a feed stops merging batches.
    names = ("x", "y")
    batches: list[tuple[Any, Any, Any, str | None]] = [
        (np.array([[1.5, np.nan]]), np.array(["a"]), np.array([0.25]), "r1"),
        (
            np.array([[np.inf, -0.0], [2.0, 2.5]]),
            np.array(["b", "c"]),
            np.array([np.nan, 0.5]),
            None,
        ),
        (np.array([[3.0, 4.0]]), np.array(["d"]), np.array([0.75]), "r2"),
        (np.array([[3.5, 4.5]]), np.array(["d"]), np.array([0.7]), None),  # the gather is full
        ([(5.0, None)], ["e"], [0.5], "r3"),  # a list: a batch of its own
        (np.array([[6.1, 7.0]], dtype=np.float32), np.array(["f"]), np.array([0.0]), None),
        (np.array([[8.0, 9.0]]), np.array(["g"]), np.array([1.0]), "r4"),  # float64 rows
        (np.array([[10.0, 11.0]]), np.array(["hh"]), np.array([1.0]), None),  # wider text
    ]

    async def scenario() -> tuple[LoopDriftFeed, list[int], dict[str, int]]:
        feed = LoopDriftFeed(receiver.url, linger_s=30.0, max_merge_rows=3)
        gathered = []
        for rows, labels, scores, rid in batches:
            assert feed.submit("m", "1", rows, labels, columns=names, scores=scores, request_id=rid)
            gathered.append(feed._gather.n if feed._gather is not None else 0)
        snapshot = feed.stats.snapshot()
        assert await feed.flush(10)
        await feed.aclose()
        return feed, gathered, snapshot

    feed, gathered, snapshot = asyncio.run(scenario())
    # The first batch checks the columns (plain path); then gathers of 2+1 rows, 1 row, and
    # one row each after the list, the float32 rows, the float64 rows and a wider text.
    assert gathered == [0, 2, 3, 1, 0, 1, 1, 1]
    assert snapshot["submitted_rows"] == 9  # gathered rows count as submitted before the POST
    as_lists = [[1.5, None], [None, -0.0], [2.0, 2.5], [3.0, 4.0], [3.5, 4.5], [5.0, None],
                [6.1, 7.0], [8.0, 9.0], [10.0, 11.0]]  # fmt: skip
    labels = ["a", "b", "c", "d", "d", "e", "f", "g", "hh"]
    scores = [0.25, None, 0.5, 0.75, 0.7, 0.5, 0.0, 1.0, 1.0]
    expected = json.loads(encode_batch("m", "1", as_lists, labels, columns=names, scores=scores))
    # Merging stops once a POST holds `max_merge_rows` (1 + 3, then 1 + 1 + 1, then 1 + 1);
    # read in order, the bodies are the rows as lists.
    assert [len(b["rows"]) for b in receiver.bodies] == [4, 3, 2]
    ids = [rid for b in receiver.bodies for rid in b.pop("request_ids", [])]
    assert ids == ["r1", "r2", "r3", "r4"]
    joined = {
        key: [v for b in receiver.bodies for v in b[key]]
        for key in ("rows", "predictions", "scores")
    }
    assert {**receiver.bodies[0], **joined} == expected
    assert feed.stats.snapshot() == {
        "submitted_rows": 9,
        "sent_rows": 9,
        "dropped_rows": 0,
        "failed_rows": 0,
    }
