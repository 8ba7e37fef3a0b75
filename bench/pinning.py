"""CPU layouts for the serving benchmarks: `shared` and `pinned`.

On a cluster the model server, the router (Seldon's Envoy) and the drift sidecar are separate
containers with their own CPU; on a 2-core benchmark machine they share the cores with the load
generator. The benchmarks measure two layouts, alternating round by round:

- `shared`: every process on every CPU (how they run on this machine by default);
- `pinned`: the model server alone on CPU 0, everything else (load tool, router, sidecar, the
  benchmark itself) on the other CPUs, the same in both arms of a comparison, so a ratio
  measures the work a component adds to the model server and to the request path rather than
  how four processes fight over two cores.

Linux only (sched_setaffinity).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["LAYOUTS", "SERVER_CPUS", "apply_layout", "parse_layouts"]

LAYOUTS = {
    "shared": "every process on every CPU",
    "pinned": "the model server alone on CPU 0; the load tool and every other process on the "
    "other CPUs (on a cluster they are separate pods)",
}
"""The layouts and what each means, for the result files."""

SERVER_CPUS = frozenset({0})
"""Where the pinned layout runs the model server."""

_ALL_CPUS = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()


def parse_layouts(text: str) -> list[str]:
    """`shared`, `pinned` or both, comma-separated; ValueError with the reason otherwise."""
    layouts = [x.strip() for x in text.split(",") if x.strip()]
    unknown = set(layouts) - set(LAYOUTS)
    if not layouts or unknown:
        raise ValueError(f"layouts are shared and/or pinned, got {text!r}")
    if "pinned" in layouts and len(os.sched_getaffinity(0)) < 2:
        raise ValueError("the pinned layout needs at least two CPUs")
    return layouts


def apply_layout(layout: str, servers: Iterable[int], others: Iterable[int]) -> None:
    """Lay out the process trees of `servers` and `others`, and this process (whose children,
    the load tool among them, inherit it). Call it before each measured run."""
    everything = _ALL_CPUS
    rest = everything - SERVER_CPUS
    pinned = layout == "pinned"
    for pid in servers:
        _pin_tree(pid, SERVER_CPUS if pinned else everything)
    for pid in others:
        _pin_tree(pid, rest if pinned else everything)
    os.sched_setaffinity(0, rest if pinned else everything)


def _pin_tree(pid: int, cpus: Iterable[int]) -> None:
    """Every thread of `pid` and of its descendants (a server may run workers as children)."""
    import psutil

    cpus = set(cpus)
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        tasks = Path(f"/proc/{proc.pid}/task")
        for tid in (int(t.name) for t in tasks.iterdir()) if tasks.is_dir() else (proc.pid,):
            try:
                os.sched_setaffinity(tid, cpus)
            except ProcessLookupError:  # a thread that ended meanwhile
                continue
