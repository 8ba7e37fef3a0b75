"""Feeding served rows to the drift sidecar without ever slowing serving down.

Standard library (and orjson where the env has it: `mainsail.core.jsoncodec`), so the serving
and drift environments import it as is. Two feeds share one queue policy and one wire format:
:class:`LoopDriftFeed` for code on an asyncio event loop (the serving runtime on MLServer's
loop: no thread, so sending never competes with serving for the GIL) and :class:`DriftFeed`,
which sends from a daemon thread of its own, for everything else.

* `submit()` never blocks and never raises because of the sidecar: a full queue drops the batch
  and counts it (`dropped_rows`);
* a sidecar that is down, slow or answers an error costs one failed POST per batch (counted in
  `failed_rows`), never an exception in the caller;
* consecutive queued batches of the same model version are merged into one POST (the feed
  lingers `linger_s` after the first one, less when its queue is half full), so a busy server
  sends fewer, larger requests;
* `submit()` encodes a list of rows to JSON bytes at once: the queue then holds no Python
  containers that outlive the request (which made the garbage collector run on a serving path
  that otherwise allocates none for long). A numpy array of numbers, booleans or strings (a
  served matrix, a model's labels, its scores) is not a container the collector tracks: the
  queue keeps the array itself, and the POST encodes each run of such arrays in one call.
  (On a served request every extra call runs on cold caches: the two per-request encodes
  this moves cost about 5 µs of an iris request's 170 µs there, against 0.45 µs each in a
  loop of their own. The feed's whole in-process cost fell by only 1-2 µs of about 13,
  within bench_drift's noise);
* `submit()` takes no lock: the sender counts the rows it takes from the queue, and a
  snapshot adds those still queued;
* rows may come as value sequences with their `columns` named once (`submit(...,
  columns=names)`): the cheapest form to build and encode on the request path, and the body
  carries the names once per POST instead of once per row;
* POSTs reuse one keep-alive connection: a new TCP connection (and, at the sidecar, a new
  handler thread) per POST cost both processes more CPU than the rows themselves.

Usage::

    feed = DriftFeed("http://127.0.0.1:8010")
    feed.submit("churn", "3", rows, predictions)   # rows: list of {feature: value}
    feed.submit("churn", "3", [[1.0, "gold"]], predictions, columns=("tenure", "plan"))
    ...
    feed.close()            # on a loop: feed = LoopDriftFeed(url); ...; await feed.aclose()
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mainsail.core.files import jsonable
from mainsail.core.jsoncodec import orjson, stdlib_encoder

__all__ = ["DriftFeed", "FeedStats", "LoopDriftFeed", "encode_batch"]


@dataclass
class FeedStats:
    """Counters of a feed; read them to export as metrics on the serving side."""

    submitted_rows: int = 0
    """Rows accepted into the queue. The sender adds a batch's rows as it takes the batch from
    the queue (so `submit` takes no lock); `snapshot()` adds the rows still queued."""
    sent_rows: int = 0
    """Rows the sidecar acknowledged (HTTP 2xx)."""
    dropped_rows: int = 0
    """Rows dropped because the queue was full."""
    failed_rows: int = 0
    """Rows lost because the POST failed (sidecar down, timeout or an error answer)."""
    last_error: str = ""
    """The latest send failure, for logs."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _queued: Callable[[], int] = field(default=lambda: 0, repr=False)
    """Rows accepted and not yet taken by the sender (set by the feed)."""

    def add(self, name: str, n: int) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def snapshot(self) -> dict[str, int]:
        """A consistent copy of the counters."""
        with self._lock:
            return {
                "submitted_rows": self.submitted_rows + self._queued(),
                "sent_rows": self.sent_rows,
                "dropped_rows": self.dropped_rows,
                "failed_rows": self.failed_rows,
            }


def _default(value: Any) -> Any:
    """json hook for the common non-JSON values: numpy scalars and arrays, pandas.NA."""
    if hasattr(value, "item") and callable(value.item):
        try:
            return value.item()
        except (ValueError, TypeError):
            pass
    if hasattr(value, "tolist"):
        return value.tolist()
    if value.__class__.__name__ == "NAType":  # a missing category or flag in a served frame
        return None
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _make_encoder() -> Callable[[Any], bytes]:
    """A compact JSON encoder of a batch's values, built once. orjson where the env has it: a
    one-row batch in a fifth of the time (this runs for every served request), NaN and
    infinities written as null. Else json's C encoder, strict (NaN raises: `_encode_items`
    takes the slow path, which writes null too)."""
    text = stdlib_encoder(_default, allow_nan=False)
    stdlib = lambda value: text(value).encode()  # noqa: E731
    if orjson is None:
        return stdlib
    dumps, option = orjson.dumps, orjson.OPT_SERIALIZE_NUMPY
    # What orjson refuses (an integer beyond 64 bits, a value `_default` cannot convert)
    # raises its JSONEncodeError, a TypeError: `_encode_items`' slow path handles it.
    return lambda value: dumps(value, default=_default, option=option)


_encode = _make_encoder()


def _encode_items(values: Sequence[Any]) -> bytes:
    """A JSON array's items without the brackets: `[a, b]` -> `a,b` (a fragment that joins
    with others by commas). NaN, numpy and pandas values as in `encode_batch`."""
    # A list at the top, always: `_default` would turn a one-element numpy array into a scalar.
    items = values if isinstance(values, list) else list(values)
    try:
        text = _encode(items)
    except (TypeError, ValueError):  # NaN, infinities or exotic values: the slow, safe path
        text = json.dumps(jsonable(items), separators=(",", ":")).encode()
    return text[1:-1]


_LAZY_KINDS = frozenset("biufU")
"""numpy dtype kinds a queue keeps as arrays: booleans, integers, floats, str. What they hold
always encodes (NaN and infinities as null), so a POST never fails on them."""


def _part(values: Any) -> Any:
    """What a queued batch keeps of `values`: a 1- or 2-d numpy array of a kind in
    `_LAZY_KINDS` as it is, anything else encoded now (`_encode_items`)."""
    if (
        values.__class__.__name__ == "ndarray"
        and values.dtype.kind in _LAZY_KINDS
        and 1 <= values.ndim <= 2
    ):
        return values
    return _encode_items(values)


def _join(parts: Sequence[Any]) -> bytes:
    """The comma-joined JSON items of a POST's batches: encoded parts as they are, and each run
    of arrays of one dtype and row shape concatenated and encoded in one call."""
    out: list[bytes] = []
    run: list[Any] = []
    for part in parts:
        if run and (
            isinstance(part, bytes)
            or part.dtype != run[0].dtype
            or part.shape[1:] != run[0].shape[1:]
        ):
            out.append(_encode_arrays(run))
            run = []
        if isinstance(part, bytes):
            out.append(part)
        else:
            run.append(part)
    if run:
        out.append(_encode_arrays(run))
    return b",".join(out)


def _encode_arrays(arrays: list[Any]) -> bytes:
    """Arrays of one dtype and row shape as the items of one JSON array."""
    import numpy as np  # only arrays reach here: numpy is loaded

    whole = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
    if orjson is not None and whole.dtype.kind != "U":
        try:  # numbers and booleans natively (NaN and infinities as null)
            text: bytes = orjson.dumps(
                np.ascontiguousarray(whole), option=orjson.OPT_SERIALIZE_NUMPY
            )
            return text[1:-1]
        except TypeError:  # a dtype orjson does not take natively (float16): as lists
            pass
    return _encode_items(whole.tolist())


def encode_batch(
    model: str,
    version: str,
    rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]],
    predictions: Sequence[Any] | None = None,
    *,
    columns: Sequence[str] | None = None,
    scores: Sequence[float | None] | None = None,
) -> bytes:
    """The JSON body the sidecar's `POST /v1/rows` takes (NaN and pandas.NA become null):
    rows as {feature: value} objects, or, with `columns`, as value arrays in that order;
    `scores` are a classifier's probabilities of its last class. Each may also be a numpy
    array. The same encoding as a feed's POST of merged batches: one definition of the body."""
    item = _Item.encode(model, version, rows, predictions, _columns(columns), scores)
    return _Item.body([item])


def _columns(columns: Sequence[str] | None) -> tuple[str, ...] | None:
    if columns is None:
        return None
    names = tuple(columns)
    if not names or not all(isinstance(c, str) and c for c in names):
        raise ValueError(f"columns must be non-empty feature names, got {columns!r}")
    return names


class _FeedBase:
    """What both feeds share: the bounded queue of encoded batches, submit's checks and
    accounting, the grouping into POSTs, and the request's target."""

    def __init__(
        self,
        url: str,
        *,
        max_queue: int = 1000,
        timeout_s: float = 2.0,
        max_merge_rows: int = 5000,
        linger_s: float = 0.05,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {max_queue}")
        self.url = url.rstrip("/") + "/v1/rows"
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"drift feed URL must be http(s)://host[:port], got {url!r}")
        self._parts = parts
        self.timeout_s = timeout_s
        self.max_merge_rows = max_merge_rows
        self.linger_s = linger_s
        self.stats = FeedStats()
        self._on_error = on_error
        # A deque, not a queue.Queue: append and popleft are atomic, so submit() takes no lock
        # (a Queue locks and notifies on every put).
        self._items: deque[_Item] = deque()
        self._max_queue = max_queue
        self._half = max(1, max_queue // 2)
        self._columns: tuple[str, ...] | None = None
        self.stats._queued = self._queued_rows
        self._open()

    def _open(self) -> None:
        """Set up the transport (the end of __init__)."""
        raise NotImplementedError

    def _closing(self) -> bool:
        """Whether the feed is closed or closing: submit() then drops."""
        raise NotImplementedError

    def _enqueue(self, item: _Item) -> bool:
        """Queue an accepted batch and see that it gets sent; False if it cannot be."""
        raise NotImplementedError

    def _gathered(self, batch: _Batch) -> bool:
        """Whether an accepted batch was taken into a gather instead (see LoopDriftFeed)."""
        return False

    def submit(
        self,
        model: str,
        version: str,
        rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]],
        predictions: Sequence[Any] | None = None,
        *,
        columns: tuple[str, ...] | None = None,
        scores: Sequence[float | None] | None = None,
        request_id: str | None = None,
    ) -> bool:
        """Queue one batch; False (and counted as dropped) when the queue is full or closed.

        `rows` are {feature: value} objects, or value sequences in the order of `columns`
        (a tuple: batches of the same model version and columns merge into one POST);
        `scores` are a classifier's probabilities of its last class, one per row;
        `request_id` (the served request's) travels in the POST's `request_ids`, so the
        sidecar's log lines name the requests their rows came from. Each of `rows`,
        `predictions` and `scores` may be a numpy array: one of numbers, booleans or str is
        kept, not copied, until its POST is encoded, so it must not change after the call.
        Never raises: a batch that cannot be encoded is dropped too (`stats.last_error`)."""
        n = len(rows)
        if n == 0:
            return True
        if self._closing() or len(self._items) >= self._max_queue:
            self.stats.add("dropped_rows", n)
            return False
        if self._gathered((model, version, columns, rows, predictions, scores, request_id)):
            return True
        try:
            if columns is not None and columns is not self._columns:
                self._columns = _columns(columns)  # checked once per names tuple, not per call
            item = _Item.encode(model, version, rows, predictions, columns, scores, request_id)
        except (TypeError, ValueError) as err:  # never the caller's problem
            self.stats.add("dropped_rows", n)
            self.stats.last_error = f"drift feed: rows could not be encoded: {err}"
            return False
        return self._enqueue(item)

    def pending(self) -> int:
        """Batches waiting in the queue."""
        return len(self._items)

    def _queued_rows(self) -> int:
        """Rows waiting in the queue; called under the stats lock, which `_take_posts` holds
        while it takes batches, so a snapshot never misses rows on their way out."""
        return sum(item.rows for item in self._items.copy())  # copy(): atomic, unlike iteration

    def _take_posts(self) -> list[list[_Item]]:
        """What is queued now (not what arrives meanwhile: that waits for the next linger),
        grouped into POSTs: consecutive batches that join (same model version, same columns),
        up to `max_merge_rows` rows a POST."""
        items = self._items
        stats = self.stats
        with stats._lock:  # a snapshot sees these rows either queued or submitted, never neither
            taken = [items.popleft() for _ in range(len(items))]
            stats.submitted_rows += sum(item.rows for item in taken)
        posts: list[list[_Item]] = []
        batch: list[_Item] = []
        rows = 0
        for nxt in taken:
            if batch and (rows >= self.max_merge_rows or not nxt.joins(batch[0])):
                posts.append(batch)
                batch, rows = [], 0
            batch.append(nxt)
            rows += nxt.rows
        if batch:
            posts.append(batch)
        return posts

    def _sent(self, batch: list[_Item], error: BaseException | None) -> None:
        n = sum(item.rows for item in batch)
        if error is None:
            self.stats.add("sent_rows", n)
            return
        message = f"drift feed: POST {self.url} failed: {error!r}"
        self.stats.add("failed_rows", n)
        self.stats.last_error = message
        if self._on_error is not None:
            self._on_error(message)

    @property
    def _path(self) -> str:
        return self._parts.path + (f"?{self._parts.query}" if self._parts.query else "")


class DriftFeed(_FeedBase):
    """Fire-and-forget feed of served rows to the drift sidecar, sent by a thread of its own
    (see the module docstring); for code without an event loop. Code that runs on an asyncio
    loop, such as a model server, uses :class:`LoopDriftFeed`."""

    def _open(self) -> None:
        self._conn: http.client.HTTPConnection | None = None
        self._busy = False
        """True while the thread holds batches it took from `_items` (for `flush`)."""
        self._closed = threading.Event()
        # Set by submit() when the thread may be asleep with batches waiting (see `_loop`).
        self._ready = threading.Event()
        # Ends a linger early: set by submit() when the queue reaches half full, and by close().
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drift-feed", daemon=True)
        self._thread.start()

    def _closing(self) -> bool:
        return self._closed.is_set()

    def _enqueue(self, item: _Item) -> bool:
        self._items.append(item)
        # After the append: either the thread's clear() comes later and it finds the batch,
        # or this sees the cleared event and wakes it. No wake-up is lost either way.
        if not self._ready.is_set():
            self._ready.set()
        if len(self._items) >= self._half:
            self._wake.set()
        return True

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Send what is queued now, without lingering, and wait until every batch was sent or
        failed; True when the queue drained."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self._items and not self._busy:
                return True
            self._wake.set()  # each time: a linger that starts after one set() clears it
            time.sleep(0.01)
        return False

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (up to `timeout_s`), then stop the thread."""
        if self._closed.is_set():
            return
        self.flush(timeout_s)
        self._closed.set()
        self._wake.set()
        self._ready.set()
        self._thread.join(timeout_s)

    def __enter__(self) -> DriftFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._drop_connection()

    def _loop(self) -> None:
        items = self._items
        while True:
            self._ready.clear()  # before looking: a batch appended after this sets it again
            if not items:
                if self._closed.is_set():
                    return
                self._ready.wait()
                continue
            self._busy = True  # before taking: flush() must not see an empty, idle feed
            try:
                # Let a few more batches arrive: fewer, larger POSTs cost serving less CPU.
                if self.linger_s > 0 and not self._closed.is_set():
                    self._linger()
                for batch in self._take_posts():
                    self._send(batch)
            finally:
                self._busy = False

    def _linger(self) -> None:
        """Wait up to `linger_s` for more batches, less when the queue is half full (a long
        linger on a busy server must not fill the queue and drop rows). One timed wait, not a
        polling loop: each wake-up of this thread takes the GIL from the serving thread."""
        self._wake.clear()
        if len(self._items) < self._half:
            self._wake.wait(self.linger_s)

    def _send(self, batch: list[_Item]) -> None:
        try:
            status, answer = self._post(_Item.body(batch))
            if status >= 300:
                raise _RefusedError(f"HTTP {status}: {answer[:200].decode(errors='replace')}")
        except (OSError, http.client.HTTPException, _RefusedError, ValueError, TypeError) as err:
            self._sent(batch, err)
        else:
            self._sent(batch, None)

    def _post(self, body: bytes) -> tuple[int, bytes]:
        """POST on the kept-alive connection; one retry on a fresh one when the server had
        closed an idle connection (the request never reached it)."""
        for attempt in (0, 1):
            reused = self._conn is not None
            conn = self._conn or self._connect()
            try:
                conn.request("POST", self._path, body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                answer = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._drop_connection()
                if reused and attempt == 0:
                    continue
                raise
            except BaseException:
                self._drop_connection()
                raise
            if response.will_close:
                self._drop_connection()
            return response.status, answer
        raise AssertionError("unreachable")

    def _connect(self) -> http.client.HTTPConnection:
        host, port = self._parts.hostname or "", self._parts.port
        cls = (
            http.client.HTTPSConnection
            if self._parts.scheme == "https"
            else http.client.HTTPConnection
        )
        self._conn = cls(host, port, timeout=self.timeout_s)
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class LoopDriftFeed(_FeedBase):
    """The feed for code on an asyncio event loop, such as the model server: no thread at all.
    Batches queue and merge as in :class:`DriftFeed`; a timer on the loop ends the linger and a
    task on the loop POSTs them over a kept-alive connection, so sending never waits for the
    GIL. A feed thread in a busy server did: it woke at every release of the GIL by the serving
    thread (about a thousand times a second under load, seen with strace and per-thread CPU)
    and lost the race, which cost the server more CPU than the rows themselves.

    On the loop's thread, consecutive batches of numpy arrays (a served matrix, its labels and
    scores) of one model version go into one :class:`_Gather` instead of each being queued
    as a batch of its own: a few identity checks and list appends per request instead of a
    batch object, and the POST joins each field's arrays with one `concatenate` instead of
    comparing hundreds of parts (bench_drift's iris feed, a POST per 290 one-row requests:
    encoding it went from 0.49 to 0.14 ms; in one in-process probe, the request path's share
    of the feed went from 3.7 to 3.1 µs).

    Create it, call `submit()` and `await aclose()` on the loop's thread; `submit()` from
    another thread hands the batch over with `call_soon_threadsafe`."""

    def _open(self) -> None:
        self._gather: _Gather | None = None
        """The batches being gathered; queued (`_seal`) before anything after them."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._closed = False
        self._hurry = False
        """Send without lingering (flush and close)."""
        host = self._parts.hostname or ""
        port = self._parts.port or (443 if self._parts.scheme == "https" else 80)
        self._address = (host, port)
        self._head = (
            f"POST {self._path} HTTP/1.1\r\nHost: {self._parts.netloc}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()

    def _closing(self) -> bool:
        return self._closed

    def _gathered(self, batch: _Batch) -> bool:
        """On the loop's thread, a batch of arrays joins the current gather or starts a new
        one (which queues the current one)."""
        columns, rows = batch[2], batch[3]
        if rows.__class__.__name__ != "ndarray" or threading.get_ident() != self._loop_thread:
            return False
        gather = self._gather
        if gather is None or not gather.put(batch):
            if columns is not None and columns is not self._columns:
                return False  # the plain path checks new names once
            fresh = _Gather.start(batch, self.max_merge_rows)
            if fresh is None or not fresh.put(batch):
                return False
            self._seal()
            self._gather = fresh
        if self._task is None:
            self._schedule()
        return True

    def _seal(self) -> None:
        """Queue the current gather as one batch (on the loop's thread)."""
        gather = self._gather
        if gather is None:
            return
        with self.stats._lock:  # a snapshot counts its rows once: gathered or queued
            self._gather = None
            self._items.append(gather.item())

    def _queued_rows(self) -> int:
        gather = self._gather
        return super()._queued_rows() + (gather.n if gather is not None else 0)

    def _take_posts(self) -> list[list[_Item]]:
        self._seal()
        return super()._take_posts()

    def _waiting(self) -> bool:
        """Whether rows wait to be sent (queued or gathered)."""
        return bool(self._items) or self._gather is not None

    def _enqueue(self, item: _Item) -> bool:
        if threading.get_ident() == self._loop_thread:
            self._queue(item)
            return True
        try:
            self._loop.call_soon_threadsafe(self._queue, item)
        except RuntimeError:  # the loop is closed: the server is going away
            self.stats.add("dropped_rows", item.rows)
            return False
        return True

    async def flush(self, timeout_s: float = 10.0) -> bool:
        """Send what is queued now, without lingering; True when every batch was sent or
        failed within `timeout_s`."""
        self._hurry = True
        try:
            deadline = time.monotonic() + timeout_s
            while self._waiting() or self._task is not None:
                if time.monotonic() >= deadline:
                    return False
                self._start()
                await asyncio.sleep(0.01)
            return True
        finally:
            self._hurry = False

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (up to `timeout_s`), then close the connection."""
        if self._closed:
            return
        await self.flush(timeout_s)
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
        self._drop_connection()

    def _queue(self, item: _Item) -> None:
        self._seal()  # gathered rows came first
        self._items.append(item)
        if self._task is None:
            self._schedule()

    def _schedule(self) -> None:
        """Start sending now (half full, or no linger), or when the linger ends."""
        if self._hurry or self.linger_s <= 0 or len(self._items) >= self._half:
            self._start()
        elif self._timer is None:
            self._timer = self._loop.call_later(self.linger_s, self._start)

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is None and self._waiting():
            self._task = self._loop.create_task(self._send_queued())

    async def _send_queued(self) -> None:
        try:
            for batch in self._take_posts():
                await self._send(batch)
        finally:
            self._task = None
            if self._waiting() and not self._closed:
                self._schedule()  # what arrived meanwhile lingers in turn

    async def _send(self, batch: list[_Item]) -> None:
        try:
            status, answer = await asyncio.wait_for(self._post(_Item.body(batch)), self.timeout_s)
            if status >= 300:
                raise _RefusedError(f"HTTP {status}: {answer[:200].decode(errors='replace')}")
        except (OSError, _RefusedError, ValueError) as err:  # TimeoutError is an OSError
            self._drop_connection()
            self._sent(batch, err)
        else:
            self._sent(batch, None)

    async def _post(self, body: bytes) -> tuple[int, bytes]:
        """One HTTP/1.1 POST on the kept-alive connection; one retry on a fresh one when the
        server had closed an idle connection (the request never reached it)."""
        for attempt in (0, 1):
            reused = self._writer is not None
            if self._reader is None or self._writer is None:
                ssl = True if self._parts.scheme == "https" else None
                self._reader, self._writer = await asyncio.open_connection(*self._address, ssl=ssl)
            reader, writer = self._reader, self._writer
            writer.write(b"%s%d\r\n\r\n%s" % (self._head, len(body), body))
            try:
                await writer.drain()
                status_line = await reader.readline()
                if not status_line:
                    raise ConnectionResetError("the sidecar closed the connection")
                status, length, keep = await _read_head(reader, status_line)
                answer = await reader.readexactly(length) if length >= 0 else await reader.read()
            except (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError):
                self._drop_connection()
                if reused and attempt == 0:
                    continue
                raise ConnectionResetError("the sidecar closed the connection") from None
            except BaseException:
                self._drop_connection()
                raise
            if not keep or length < 0:
                self._drop_connection()
            return status, answer
        raise AssertionError("unreachable")

    def _drop_connection(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


async def _read_head(reader: asyncio.StreamReader, status_line: bytes) -> tuple[int, int, bool]:
    """(status, Content-Length or -1, keep-alive) of an HTTP/1.x response; ValueError when it
    is not one."""
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP response: {status_line[:80]!r}")
    status, length, keep = int(parts[1]), -1, parts[0] == b"HTTP/1.1"
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            return status, length, keep
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"connection":
            keep = value.strip().lower() == b"keep-alive" or (
                keep and value.strip().lower() != b"close"
            )


@dataclass(slots=True)
class _Item:
    """One submitted batch: `encoded_rows`, `encoded_predictions` and `encoded_scores` are JSON
    array items without brackets (see `_encode_items`) or a numpy array the POST encodes
    (`_part`). Never changed once made (not frozen: a frozen dataclass is made in 4x the time,
    on the request path)."""

    model: str
    version: str
    rows: int
    encoded_rows: Any
    encoded_predictions: Any
    columns: tuple[str, ...] | None = None
    """The names of the values in each row; None when rows are {feature: value} objects."""
    encoded_scores: Any = None
    request_ids: Sequence[str] = ()
    """The served requests the rows came from (with structured logs or tracing on)."""

    @classmethod
    def encode(
        cls,
        model: str,
        version: str,
        rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]],
        predictions: Sequence[Any] | None,
        columns: tuple[str, ...] | None = None,
        scores: Sequence[float | None] | None = None,
        request_id: str | None = None,
    ) -> _Item:
        """One batch, encoded (TypeError or ValueError if a value cannot be)."""
        preds = None if predictions is None else _part(predictions)
        if scores is not None and len(scores) != len(rows):
            raise ValueError(f"{len(scores)} scores for {len(rows)} rows")
        encoded_scores = None if scores is None else _part(scores)
        return cls(
            model,
            str(version),
            len(rows),
            _part(rows),
            preds,
            columns,
            encoded_scores,
            () if request_id is None else (request_id,),
        )

    def joins(self, first: _Item) -> bool:
        """Whether this batch can go in the same POST as `first`."""
        return (
            self.model == first.model
            and self.version == first.version
            and (self.encoded_predictions is None) == (first.encoded_predictions is None)
            and (self.encoded_scores is None) == (first.encoded_scores is None)
            and (self.columns is first.columns or self.columns == first.columns)
        )

    @staticmethod
    def body(batch: Sequence[_Item]) -> bytes:
        """The POST body of batches that join (the same JSON as `encode_batch`)."""
        first = batch[0]
        fields: dict[str, Any] = {"model": first.model, "version": first.version}
        if first.columns is not None:
            fields["columns"] = first.columns
        head = json.dumps(fields, separators=(",", ":"))
        parts = [head[:-1].encode(), b',"rows":[', _join([i.encoded_rows for i in batch]), b"]"]
        if first.encoded_predictions is not None:
            preds = _join([i.encoded_predictions for i in batch])
            parts += [b',"predictions":[', preds, b"]"]
        if first.encoded_scores is not None:
            scores = _join([i.encoded_scores for i in batch])
            parts += [b',"scores":[', scores, b"]"]
        ids = [rid for i in batch for rid in i.request_ids]
        if ids:
            parts += [b',"request_ids":', json.dumps(ids).encode()]
        parts.append(b"}")
        return b"".join(parts)


_Batch = tuple[str, Any, "tuple[str, ...] | None", Any, Any, Any, "str | None"]
"""What `submit` was given: model, version, columns, rows, predictions, scores, request id."""


@dataclass(slots=True)
class _Gather:
    """Consecutive array batches of one model version (same columns, dtypes and row width),
    kept in lists and queued as one :class:`_Item` (their arrays joined) when sealed. Taking
    a batch is a few identity checks and list appends: no numpy call, no object made."""

    model: str
    version: Any
    """As submitted (the item gets its text)."""
    columns: tuple[str, ...] | None
    kinds: tuple[Any, Any, Any]
    """The dtypes of rows, predictions and scores (None for one not sent)."""
    width: int
    """Values per row."""
    array: Any
    """numpy's ndarray (the class an array must be, exactly)."""
    limit: int
    """Rows it takes at most: the feed's `max_merge_rows`, so a POST stays within it."""
    rows: list[Any] = field(default_factory=list)
    predictions: list[Any] = field(default_factory=list)
    scores: list[Any] = field(default_factory=list)
    n: int = 0
    request_ids: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, batch: _Batch, limit: int) -> _Gather | None:
        """An empty gather for batches like this one; None when it cannot be gathered (not
        all arrays of `_LAZY_KINDS`: 2-d rows, 1-d predictions and scores)."""
        import numpy as np  # only arrays reach here: numpy is loaded

        def kind(values: Any, ndim: int) -> Any:
            if values is None and ndim == 1:
                return None
            if (
                values.__class__ is not np.ndarray
                or values.ndim != ndim
                or values.dtype.kind not in _LAZY_KINDS
            ):
                raise TypeError
            return values.dtype

        model, version, columns, rows, predictions, scores, _ = batch
        try:
            kinds = (kind(rows, 2), kind(predictions, 1), kind(scores, 1))
        except TypeError:
            return None
        return cls(model, version, columns, kinds, rows.shape[1], np.ndarray, limit)

    def put(self, batch: _Batch) -> bool:
        """Take one batch (kept, not copied); False, with nothing taken, when it does not
        belong here (another model version, columns, dtype or width, a missing or extra
        array) or does not fit."""
        model, version, columns, rows, predictions, scores, request_id = batch
        n = len(rows)
        rows_kind, predictions_kind, scores_kind = self.kinds
        if not (
            0 < n <= self.limit - self.n
            and (model is self.model or model == self.model)
            and (version is self.version or version == self.version)
            and (columns is self.columns or columns == self.columns)
            and rows.__class__ is self.array
            and (rows.dtype is rows_kind or rows.dtype == rows_kind)
            and rows.ndim == 2
            and rows.shape[1] == self.width
            and _takes(predictions, predictions_kind, n, self.array)
            and _takes(scores, scores_kind, n, self.array)
        ):
            return False
        self.rows.append(rows)
        if predictions is not None:
            self.predictions.append(predictions)
        if scores is not None:
            self.scores.append(scores)
        self.n += n
        if request_id is not None:
            self.request_ids.append(request_id)
        return True

    def item(self) -> _Item:
        """The gathered batches as one queued batch."""
        return _Item(
            self.model,
            str(self.version),
            self.n,
            _joined(self.rows),
            _joined(self.predictions) if self.kinds[1] is not None else None,
            self.columns,
            _joined(self.scores) if self.kinds[2] is not None else None,
            self.request_ids,
        )


def _takes(values: Any, kind: Any, n: int, array: Any) -> bool:
    """Whether a gather of arrays of dtype `kind` (None: no array) takes `values` for `n`
    rows: a 1-d array of that very dtype (a narrower text or number type would change what
    the POST writes)."""
    if kind is None:
        return values is None
    return (
        values.__class__ is array
        and (values.dtype is kind or values.dtype == kind)
        and values.ndim == 1
        and len(values) == n
    )


def _joined(arrays: list[Any]) -> Any:
    import numpy as np

    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


class _RefusedError(Exception):
    """The sidecar answered with an error status."""
