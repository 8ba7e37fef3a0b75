"""One function over the columns of a long table, on every usable core (standard library).

The data stage's per-column statistics (sorts for distinct counts and quartiles, partitions for
quantiles and medians) run in numpy, which releases the GIL while it sorts: threads give the
wall clock what the cores have, with no copy of the data and the same results in the same
order as a plain loop. Short columns stay in the loop, where a thread costs more than it saves.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

MIN_ROWS = 100_000
"""Columns shorter than this are done in a plain loop."""


def usable_cores() -> int:
    """The cores this process may run on (its affinity, which a container's cpuset limits)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def map_columns(fn: Callable[[T], R], items: Iterable[T], *, rows: int) -> list[R]:
    """`[fn(item) for item in items]`, in threads when the columns have `rows` >= MIN_ROWS.
    `fn` must only read shared data (each call works on its own column)."""
    work = list(items)
    workers = min(len(work), usable_cores())
    if rows < MIN_ROWS or workers < 2:
        return [fn(item) for item in work]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="columns") as pool:
        return list(pool.map(fn, work))
