"""Benchmark: the canary router at 90/10 next to the model server it fronts, same model, same load.

Both sides serve a one-row iris LogisticRegression with MLServer 1.7.1's stock sklearn runtime
(parallel_workers 0), started by the local stack (`mainsail.stack.manager.up`, SeaweedFS off):

- baseline: wrk straight to the champion's MLServer;
- router: wrk to the router at 90/10; both variants point at that same MLServer process (a
  second server would add capacity and flatter the router), so the difference between the two
  sides is the router's own cost.

The load tool is wrk (Debian package `wrk`), `-t1 -c16 -d<duration>s --latency`, with a Lua
script for the POST body. Runs alternate (baseline, router, baseline, router, ...); the medians
of `--runs` runs are compared with the targets: the router adds at most 1 ms at p50 and keeps at
least 0.8x of the direct throughput. Then a `--soak` second run through the router must have
zero errors (non-2xx answers and socket errors). Results: bench/results/router.json.

    .venv/pipeline/bin/python bench/bench_router.py [--duration 10] [--runs 3] [--soak 60]

Exits non-zero when a target is missed or the soak run had errors.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(REPO / "tests" / "integration" / "stack"))

BODY = {
    "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]
}
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(url: str, duration: int, script: Path, connections: int = 16) -> dict[str, Any]:
    """One wrk run; returns req/s, p50/p90/p99 (ms), requests and errors."""
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pct = dict(re.findall(r"^\s*(50|90|99)%\s+(\S+)\s*$", out, re.M))
    if len(pct) != 3:
        raise RuntimeError(f"cannot read wrk's latency distribution:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    socket_errors = sum(int(x) for x in sock.groups()) if sock else 0
    return {
        "rps": rps,
        "p50_ms": _ms(pct["50"]),
        "p90_ms": _ms(pct["90"]),
        "p99_ms": _ms(pct["99"]),
        "requests": total,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": socket_errors,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--runs", type=int, default=3, help="runs per side (medians are kept)")
    parser.add_argument("--soak", type=int, default=60, help="seconds of the zero-error run")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2

    from stack_testkit import stack_config

    from mainsail.stack.manager import down, up
    from mainsail.stack.process import read_state

    workdir = Path(tempfile.mkdtemp(prefix="bench-router-"))
    os.environ["MAINSAIL_ROUTER_TOKEN"] = "bench"
    cfg = stack_config(workdir, seaweedfs=False, providers=["mlserver", "router"])
    cfg.stack.challenger.model_dir = cfg.stack.champion.model_dir
    script = workdir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(BODY))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    direct = f"http://127.0.0.1:{cfg.stack.champion.http}/v2/models/iris/infer"
    routed = f"http://127.0.0.1:{cfg.stack.router.port}/v2/models/iris/infer"
    runs: dict[str, list[dict[str, Any]]] = {"direct": [], "router": []}
    try:
        up(cfg)
        # Both variants on the champion's server: the backend's capacity is the same with and
        # without the router, so the difference is the router's own cost (a second server
        # would add capacity and flatter the router).
        import httpx

        champion_url = f"http://127.0.0.1:{cfg.stack.champion.http}"
        r = httpx.put(
            f"http://127.0.0.1:{cfg.stack.router.port}/admin/variants/challenger",
            json={"url": champion_url, "model": "iris", "version": "1"},
            headers={"authorization": "Bearer bench"},
        )
        r.raise_for_status()
        pids = {p.name: p.pid for p in read_state(cfg.stack.data_dir)}
        for url in (direct, routed):  # warm-up, not recorded
            wrk(url, 3, script)
        for i in range(args.runs):
            for name, url in (("direct", direct), ("router", routed)):
                before = {n: cpu_seconds(pid) for n, pid in pids.items()}
                result = wrk(url, args.duration, script)
                # CPU per request is robust to other load on the machine, unlike req/s.
                for proc, pid in pids.items():
                    used = cpu_seconds(pid) - before[proc]
                    result[f"cpu_us_per_req_{proc}"] = round(1e6 * used / result["requests"], 1)
                runs[name].append(result)
                print(f"run {i + 1} {name}: {result}", flush=True)
        soak = wrk(routed, args.soak, script) if args.soak > 0 else None
        if soak is not None:
            print(f"soak {args.soak}s through the router: {soak}", flush=True)
    finally:
        down(cfg)
        shutil.rmtree(workdir, ignore_errors=True)

    med = {
        name: {
            key: statistics.median(r[key] for r in rs)
            for key in rs[0]
            if key in ("rps", "p50_ms", "p99_ms") or key.startswith("cpu_us")
        }
        for name, rs in runs.items()
    }
    added_p50 = med["router"]["p50_ms"] - med["direct"]["p50_ms"]
    ratio = med["router"]["rps"] / med["direct"]["rps"]
    soak_errors = (soak["non_2xx"] + soak["socket_errors"]) if soak else None
    checks = {
        "router_adds_at_most_1ms_p50": added_p50 <= 1.0,
        "router_keeps_0.8x_throughput": ratio >= 0.8,
        "soak_zero_errors": soak_errors == 0 if soak else None,
    }
    report = {
        "benchmark": "router",
        "tool": "wrk 4.1.0 (Debian package wrk), -t1 -c16 --latency, POST one iris row",
        "model": (
            "iris LogisticRegression; MLServer 1.7.1 stock sklearn runtime, parallel_workers 0"
        ),
        "split": "router 90/10, both variants on the baseline's MLServer process",
        "duration_s": args.duration,
        "runs": args.runs,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_end": os.getloadavg(),
        },
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "raw": runs,
        "median": med,
        "router_added_p50_ms": round(added_p50, 3),
        "router_throughput_ratio": round(ratio, 3),
        "soak": {"duration_s": args.soak, **soak} if soak else None,
        "checks": checks,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "router.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"median": med, "added_p50_ms": added_p50, "ratio": ratio, **checks}))
    return 0 if all(v is not False for v in checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
