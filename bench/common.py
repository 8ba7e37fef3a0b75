"""The one result writer and gate of every benchmark under bench/.

Each `bench_<name>.py` does its measuring, then hands its figures and its targets to a `Run`:

    run = Run.start("serving", args)            # load average before; refuse a busy machine
    ...measure...
    return run.finish(results, [Target(...), ...])   # write the file, print, exit status

Every result file then carries the same header: the benchmark, the date (UTC), the git commit
(and whether the tree had uncommitted changes under src/ or bench/), the machine (CPU model,
cores usable by the process, memory), the 1/5/15-minute load average before and after the run,
whether the run was `busy` or `quick`, and the targets, each with its measured value, its limit
and passed/failed. `finish` returns 0 only when every target passed (a target whose value could
not be measured counts as missed).

Busy machine. A benchmark on a shared machine measures the neighbours: before it starts, `Run`
waits up to `--wait-quiet` seconds (the previous benchmark of `make bench` leaves the load
average high for a minute or two) for the 1-minute load average to fall to `--max-load` (default
`MAINSAIL_BENCH_MAX_LOAD`, else a quarter of the usable cores). If it does not, the run is
refused (exit 3, with the load and the threshold in the message) unless `--allow-busy`: then it
runs, and its file is marked `"busy": true`. A busy result never overwrites a clean one: it goes
to `results/<name>.busy.json` when `results/<name>.json` holds a clean result.

Quick mode (`--quick`): a few seconds of each code path, for smoke tests. Its file goes to
`results/tmp/quick/<name>.json` (git-ignored), never over an official result, and a busy machine
does not refuse it (it is marked busy instead).
"""

from __future__ import annotations

import argparse
import json
import math
import operator
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
QUICK_RESULTS = RESULTS / "tmp" / "quick"

EXIT_MISSED = 1
EXIT_BUSY = 3

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}


@dataclass(frozen=True)
class Target:
    """One target of a benchmark: `value op limit` must hold (e.g. ratio >= 1.0)."""

    name: str
    value: float | None
    op: str
    limit: float
    unit: str = ""
    what: str = ""

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"target {self.name}: op must be one of {sorted(_OPS)}")

    @property
    def passed(self) -> bool:
        if self.value is None or (isinstance(self.value, float) and math.isnan(self.value)):
            return False
        return _OPS[self.op](float(self.value), float(self.limit))

    def as_dict(self) -> dict[str, Any]:
        value = None if self.value is None else round(float(self.value), 4)
        return {
            "name": self.name,
            "value": value,
            "op": self.op,
            "limit": self.limit,
            "unit": self.unit,
            "what": self.what,
            "passed": self.passed,
        }

    def line(self) -> str:
        value = "not measured" if self.value is None else f"{float(self.value):.4g}{self.unit}"
        mark = "PASS" if self.passed else "MISSED"
        return f"  [{mark}] {self.name}: {value} (target {self.op} {self.limit}{self.unit})"


def default_max_load() -> float:
    env = os.environ.get("MAINSAIL_BENCH_MAX_LOAD")
    if env:
        return float(env)
    return max(0.5, 0.25 * usable_cpus())


def usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """The flags every benchmark takes (see the module docstring)."""
    group = parser.add_argument_group("result and gate (bench/common.py)")
    group.add_argument(
        "--quick",
        action="store_true",
        help="a few seconds of every code path (smoke test); the result goes to "
        "bench/results/tmp/quick/, never over an official one",
    )
    group.add_argument(
        "--allow-busy",
        action="store_true",
        help="run even when the machine is busy, and mark the result file busy",
    )
    group.add_argument(
        "--max-load",
        type=float,
        default=None,
        help="1-minute load average above which the machine counts as busy "
        "(default: $MAINSAIL_BENCH_MAX_LOAD, else a quarter of the usable cores, at least 0.5)",
    )
    group.add_argument(
        "--wait-quiet",
        type=float,
        default=180.0,
        help="seconds to wait for the load average to fall under --max-load before deciding",
    )
    group.add_argument("--out", type=Path, default=None, help="result file (default: per mode)")
    group.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="NAME=LIMIT",
        help="override a target's limit (e.g. to prove that a missed target fails the run)",
    )


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, platform: what moves absolute figures between machines."""
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "usable_cores": usable_cpus(),
        "memory_gib": mem_gib,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def git_commit() -> dict[str, Any]:
    """HEAD and whether src/ or bench/ (its results aside) had uncommitted changes when the run
    started."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        # the code and the benchmarks, not the result files another run may have just written
        changed = git("status", "--porcelain", "--untracked-files=no", "--", "src", "bench",
                      ":(exclude)bench/results")  # fmt: skip
        dirty = bool(changed)
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


@dataclass
class Run:
    """One benchmark run: its header, the busy gate and the result file."""

    name: str
    quick: bool = False
    allow_busy: bool = False
    max_load: float = field(default_factory=default_max_load)
    out: Path | None = None
    overrides: dict[str, float] = field(default_factory=dict)
    started: str = ""
    load_before: list[float] = field(default_factory=list)
    busy: bool = False
    commit: dict[str, Any] = field(default_factory=dict)
    t0: float = 0.0

    @classmethod
    def start(cls, name: str, args: argparse.Namespace) -> Run:
        """Wait for a quiet machine (up to --wait-quiet), then refuse or flag a busy one.

        Exits the process with EXIT_BUSY when the machine stays busy and neither --allow-busy
        nor --quick was given."""
        overrides = {}
        for item in getattr(args, "target", []) or []:
            key, _, limit = item.partition("=")
            overrides[key.strip()] = float(limit)
        run = cls(
            name=name,
            quick=bool(getattr(args, "quick", False)),
            allow_busy=bool(getattr(args, "allow_busy", False)),
            max_load=getattr(args, "max_load", None) or default_max_load(),
            out=getattr(args, "out", None),
            overrides=overrides,
        )
        wait = 0.0 if run.quick else float(getattr(args, "wait_quiet", 0.0) or 0.0)
        deadline = time.monotonic() + wait
        load = _load()
        while load[0] > run.max_load and time.monotonic() < deadline:
            print(
                f"{name}: load average {load[0]} > {run.max_load}; waiting for a quiet "
                f"machine ({deadline - time.monotonic():.0f}s left)",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(min(10.0, max(0.0, deadline - time.monotonic())))
            load = _load()
        run.load_before = load
        run.busy = load[0] > run.max_load
        if run.busy and not (run.allow_busy or run.quick):
            print(
                f"{name}: REFUSED: the machine is busy (1-minute load average {load[0]} > "
                f"{run.max_load}, after waiting {wait:.0f}s); figures taken now would measure "
                "the neighbours. Re-run on a quiet machine, or pass --allow-busy to record a "
                "result marked busy (it never replaces a clean one).",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(EXIT_BUSY)
        if run.busy:
            print(f"{name}: machine busy (load {load[0]} > {run.max_load}); result marked busy")
        run.started = datetime.now(UTC).isoformat(timespec="seconds")
        run.commit = git_commit()
        run.t0 = time.monotonic()
        return run

    def limit(self, name: str, default: float) -> float:
        """A target's limit, unless --target NAME=LIMIT overrides it."""
        return self.overrides.get(name, default)

    def target(
        self, name: str, value: float | None, op: str, limit: float, unit: str = "", what: str = ""
    ) -> Target:
        """A Target whose limit --target NAME=LIMIT may override."""
        return Target(name, value, op, self.limit(name, limit), unit, what)

    def path(self) -> Path:
        """Where this run's file goes (see the module docstring)."""
        if self.out is not None:
            return self.out
        if self.quick:
            return QUICK_RESULTS / f"{self.name}.json"
        official = RESULTS / f"{self.name}.json"
        if self.busy and official.is_file():
            try:
                previous = json.loads(official.read_text())
            except ValueError:
                previous = {}
            if previous.get("busy") is False:  # a clean result: keep it
                return RESULTS / f"{self.name}.busy.json"
        return official

    def finish(
        self,
        results: dict[str, Any],
        targets: Sequence[Target],
        notes: Sequence[str] = (),
        *,
        diagnostic: bool = False,
    ) -> int:
        """Write the result file and print the targets; the process's exit status.

        A run without targets fails, unless it is a `diagnostic` one (e.g. the router's
        micro-benchmark alone), which states none and gates nothing."""
        unknown = set(self.overrides) - {t.name for t in targets}
        if unknown:
            print(f"{self.name}: --target names no target: {sorted(unknown)}", file=sys.stderr)
            return 2
        load_after = _load()
        passed = all(t.passed for t in targets)
        doc = {
            "benchmark": self.name,
            "date": self.started,
            "duration_s": round(time.monotonic() - self.t0, 1),
            **self.commit,
            "machine": machine(),
            "load_average": {"before": self.load_before, "after": load_after},
            "busy_threshold": self.max_load,
            "busy": self.busy,
            "quick": self.quick,
            "passed": passed,
            "targets": [t.as_dict() for t in targets],
            "notes": list(notes),
            "results": results,
        }
        path = self.path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        flags = [f for f, on in (("busy", self.busy), ("quick", self.quick)) if on]
        shown = f" ({', '.join(flags)})" if flags else ""
        print(f"== {self.name}: {len(targets)} targets{shown}")
        for t in targets:
            print(t.line())
        print(f"   load average before {self.load_before}, after {load_after}; wrote {path}")
        if not targets and not diagnostic:
            print(f"{self.name}: no target stated", file=sys.stderr)
            return EXIT_MISSED
        if not passed:
            missed = [t.name for t in targets if not t.passed]
            print(f"{self.name}: FAILED: missed {', '.join(missed)}", file=sys.stderr)
            return EXIT_MISSED
        return 0


def median_or_none(values: Sequence[float]) -> float | None:
    import statistics

    return statistics.median(values) if values else None
