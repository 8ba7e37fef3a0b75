"""Feeding served rows to the drift sidecar without ever slowing serving down.

Standard library only, so the serving environment imports it as is. :class:`DriftFeed` holds a
bounded in-memory queue and one daemon thread that posts batches to the sidecar:

* `submit()` never blocks and never raises because of the sidecar: a full queue drops the batch
  and counts it (`dropped_rows`);
* a sidecar that is down, slow or answers an error costs one failed POST per batch (counted in
  `failed_rows`), never an exception in the caller;
* consecutive queued batches of the same model version are merged into one POST (the thread
  lingers `linger_s` after the first one), so a busy server sends fewer, larger requests;
* `submit()` encodes its rows to JSON bytes at once: the queue then holds no Python containers
  that outlive the request (which made the garbage collector run on a serving path that
  otherwise allocates none for long), and the thread only joins bytes and sends them, so it
  seldom needs the GIL the serving thread runs on;
* POSTs reuse one keep-alive connection: a new TCP connection (and, at the sidecar, a new
  handler thread) per POST cost both processes more CPU than the rows themselves.

Usage::

    feed = DriftFeed("http://127.0.0.1:8010")
    feed.submit("churn", "3", rows, predictions)   # rows: list of {feature: value}
    ...
    feed.close()
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import queue
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DriftFeed", "FeedStats", "encode_batch"]


@dataclass
class FeedStats:
    """Counters of a feed; read them to export as metrics on the serving side."""

    submitted_rows: int = 0
    """Rows accepted into the queue."""
    sent_rows: int = 0
    """Rows the sidecar acknowledged (HTTP 2xx)."""
    dropped_rows: int = 0
    """Rows dropped because the queue was full."""
    failed_rows: int = 0
    """Rows lost because the POST failed (sidecar down, timeout or an error answer)."""
    last_error: str = ""
    """The latest send failure, for logs."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, n: int) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def snapshot(self) -> dict[str, int]:
        """A consistent copy of the counters."""
        with self._lock:
            return {
                "submitted_rows": self.submitted_rows,
                "sent_rows": self.sent_rows,
                "dropped_rows": self.dropped_rows,
                "failed_rows": self.failed_rows,
            }


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays, NaN and other non-JSON values as JSON-safe Python values."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if value is None or isinstance(value, str | int | bool):
        return value
    if hasattr(value, "item") and callable(value.item):  # numpy / pandas scalars
        try:
            return _jsonable(value.item())
        except (ValueError, TypeError):
            pass
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value.__class__.__name__ in ("NAType", "NaTType"):  # pandas.NA / NaT
        return None
    return str(value)


def _default(value: Any) -> Any:
    """json.dumps hook for the common non-JSON values (numpy scalars and arrays)."""
    if hasattr(value, "item") and callable(value.item):
        try:
            return value.item()
        except (ValueError, TypeError):
            pass
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _encode_items(values: Sequence[Any]) -> bytes:
    """A JSON array's items without the brackets: `[a, b]` -> `a,b` (a fragment that joins
    with others by commas). NaN, numpy and pandas values as in `encode_batch`."""
    # A list at the top, always: `_default` would turn a one-element numpy array into a scalar.
    items = values if isinstance(values, list) else list(values)
    try:
        text = json.dumps(items, separators=(",", ":"), default=_default, allow_nan=False)
    except (TypeError, ValueError):
        text = json.dumps(_jsonable(items), separators=(",", ":"))
    return text[1:-1].encode()


def encode_batch(
    model: str,
    version: str,
    rows: Sequence[Mapping[str, Any]],
    predictions: Sequence[Any] | None = None,
) -> bytes:
    """The JSON body the sidecar's `POST /v1/rows` takes (NaN and pandas.NA become null).
    The same encoding as a feed's POST of merged batches: one definition of the body."""
    return _Item.body([_Item.encode(model, version, rows, predictions)])


class DriftFeed:
    """Fire-and-forget feed of served rows to the drift sidecar (see the module docstring)."""

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
        self._conn: http.client.HTTPConnection | None = None
        self.timeout_s = timeout_s
        self.max_merge_rows = max_merge_rows
        self.linger_s = linger_s
        self.stats = FeedStats()
        self._on_error = on_error
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=max_queue)
        self._closed = threading.Event()
        # Ends a linger early: set by submit() when the queue reaches half full, and by close().
        self._wake = threading.Event()
        self._half = max(1, max_queue // 2)
        self._thread = threading.Thread(target=self._run, name="drift-feed", daemon=True)
        self._thread.start()

    def submit(
        self,
        model: str,
        version: str,
        rows: Sequence[Mapping[str, Any]],
        predictions: Sequence[Any] | None = None,
    ) -> bool:
        """Queue one batch; False (and counted as dropped) when the queue is full or closed."""
        n = len(rows)
        if n == 0:
            return True
        if self._closed.is_set():
            self.stats.add("dropped_rows", n)
            return False
        try:
            item = _Item.encode(model, version, rows, predictions)
        except (TypeError, ValueError) as err:  # never the caller's problem
            self.stats.add("dropped_rows", n)
            self.stats.last_error = f"drift feed: rows could not be encoded: {err}"
            return False
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.stats.add("dropped_rows", n)
            return False
        self.stats.add("submitted_rows", n)
        if self._queue.qsize() >= self._half:
            self._wake.set()
        return True

    def pending(self) -> int:
        """Batches waiting in the queue."""
        return self._queue.qsize()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued batch was sent or failed; True when the queue drained."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.01)
        return False

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (up to `timeout_s`), then stop the thread."""
        if self._closed.is_set():
            return
        self.flush(timeout_s)
        self._closed.set()
        self._wake.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
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
        while True:
            item = self._queue.get()
            if item is None:
                self._queue.task_done()
                return
            batch = [item]
            taken = 1
            # Let a few more batches arrive: fewer, larger POSTs cost serving less CPU.
            if self.linger_s > 0 and not self._closed.is_set():
                self._linger()
            # Merge what else is already queued for the same model version into one POST.
            rows = item.rows
            while rows < self.max_merge_rows:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                taken += 1
                if nxt is None or not nxt.joins(batch[0]):
                    self._send(batch)
                    if nxt is None:
                        for _ in range(taken):
                            self._queue.task_done()
                        return
                    batch, rows = [nxt], nxt.rows
                    continue
                batch.append(nxt)
                rows += nxt.rows
            self._send(batch)
            for _ in range(taken):
                self._queue.task_done()

    def _linger(self) -> None:
        """Wait up to `linger_s` for more batches, less when the queue is half full (a long
        linger on a busy server must not fill the queue and drop rows). One timed wait, not a
        polling loop: each wake-up of this thread takes the GIL from the serving thread."""
        self._wake.clear()
        if self._queue.qsize() < self._half:
            self._wake.wait(self.linger_s)

    def _send(self, batch: list[_Item]) -> None:
        n = sum(item.rows for item in batch)
        try:
            status, answer = self._post(_Item.body(batch))
            if status >= 300:
                raise _RefusedError(f"HTTP {status}: {answer[:200].decode(errors='replace')}")
            self.stats.add("sent_rows", n)
        except (OSError, http.client.HTTPException, _RefusedError, ValueError, TypeError) as err:
            message = f"drift feed: POST {self.url} failed: {err}".strip()
            self.stats.add("failed_rows", n)
            self.stats.last_error = message
            if self._on_error is not None:
                self._on_error(message)

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

    @property
    def _path(self) -> str:
        return self._parts.path + (f"?{self._parts.query}" if self._parts.query else "")

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


@dataclass(frozen=True)
class _Item:
    """One submitted batch, already encoded: `encoded_rows` and `encoded_predictions` are JSON
    array items without brackets (see `_encode_items`)."""

    model: str
    version: str
    rows: int
    encoded_rows: bytes
    encoded_predictions: bytes | None

    @classmethod
    def encode(
        cls,
        model: str,
        version: str,
        rows: Sequence[Mapping[str, Any]],
        predictions: Sequence[Any] | None,
    ) -> _Item:
        """One batch, encoded (TypeError or ValueError if a value cannot be)."""
        preds = None if predictions is None else _encode_items(predictions)
        return cls(model, str(version), len(rows), _encode_items(rows), preds)

    def joins(self, first: _Item) -> bool:
        """Whether this batch can go in the same POST as `first`."""
        return (
            self.model == first.model
            and self.version == first.version
            and (self.encoded_predictions is None) == (first.encoded_predictions is None)
        )

    @staticmethod
    def body(batch: Sequence[_Item]) -> bytes:
        """The POST body of batches that join (the same JSON as `encode_batch`)."""
        first = batch[0]
        head = json.dumps({"model": first.model, "version": first.version}, separators=(",", ":"))
        parts = [head[:-1].encode(), b',"rows":[', b",".join(i.encoded_rows for i in batch), b"]"]
        if first.encoded_predictions is not None:
            preds = b",".join(i.encoded_predictions or b"" for i in batch)
            parts += [b',"predictions":[', preds, b"]"]
        parts.append(b"}")
        return b"".join(parts)


class _RefusedError(Exception):
    """The sidecar answered with an error status."""
