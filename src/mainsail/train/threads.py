"""Cap the threads of a fit (OpenMP, BLAS, torch).

On a small or shared machine, OpenMP pools that spin on more threads than there are free cores
slow a HistGradientBoosting fit down by an order of magnitude (measured here: 2.5 s with one
thread, 57 s with two under load). Parallelism comes from running fits side by side (Ray
trials, data-parallel workers) instead; `train.threads` raises the cap on a dedicated machine.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def limit_threads(threads: int, *, torch_too: bool = False) -> Iterator[None]:
    """Run the block with at most `threads` threads in native pools; restore them afterwards.

    torch's own pool is capped when torch is loaded (or `torch_too` loads it first).
    """
    from threadpoolctl import threadpool_limits

    if torch_too:
        import torch as _torch  # noqa: F401

    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        if torch is not None and before is not None:
            torch.set_num_threads(before)
