"""Hand items from the request path to a daemon thread that passes them on in batches.

Used by the serving path's telemetry (finished spans, JSON log lines): the request path only
appends to a deque; the thread wakes on the first item waiting, sleeps `interval` to gather
the others, and hands them all to the sink in one call. Standard library only.
"""

from __future__ import annotations

import atexit
import collections
import os
import threading
import time
from collections.abc import Callable
from typing import Generic, Literal, TypeVar

T = TypeVar("T")


class Batcher(Generic[T]):
    """Items passed to `sink` in batches by a daemon thread named `name`, within `interval`
    seconds of the first one waiting; :meth:`flush` passes them at once (and runs at exit).
    Beyond `limit` waiting items, `overflow="drop"` drops the new one and counts it
    (:attr:`dropped`), `"flush"` makes the caller flush them itself. A forked child drops its
    copy of the parent's items. `sink` must not raise (it runs in the thread)."""

    def __init__(
        self,
        sink: Callable[[list[T]], None],
        *,
        interval: float,
        limit: int,
        name: str,
        overflow: Literal["drop", "flush"],
    ) -> None:
        self.sink, self.interval, self.limit, self.name = sink, interval, limit, name
        self.drop = overflow == "drop"
        self.dropped = 0
        self.pid = os.getpid()
        self._pending: collections.deque[T] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        atexit.register(self.flush)

    def add(self, item: T) -> None:
        """Queue `item` (the request path's only cost: an append and a flag check)."""
        pending = self._pending
        if len(pending) >= self.limit:
            if self.drop:
                self.dropped += 1
                return
            pending.append(item)
            self.flush()
            return
        pending.append(item)
        if not self._wake.is_set():
            if self._thread is None:
                self._start()
            self._wake.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(self.interval)  # gather the items of this interval into one batch
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Pass every waiting item to the sink now (in this thread)."""
        if os.getpid() != self.pid:  # a forked child's copy of the parent's items
            self._pending.clear()
            return
        with self._lock:
            pending, batch = self._pending, []
            while pending:
                batch.append(pending.popleft())
            if batch:
                self.sink(batch)
