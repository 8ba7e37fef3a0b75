"""Benchmark: what the serving path's logs and traces cost, off and on: per request in one
process, and in throughput of MLServer under load.

Part `inprocess` times, in one process, exactly the telemetry calls one request makes across
the router, the runtime and the feedback writer (router.infer, router.feedback and
runtime.infer spans, the runtime's validation, predict and drift_enqueue stages; four JSON
lines), against the same sequence with telemetry off (the state checks and shared no-op
context managers the code keeps on the path),
with traces only, and with traces of a 10% sample (`observability.sample_ratio`). Spans go to
the `file` exporter and lines to a file, as `mainsail up` would write them. The per-request
figures are set beside the time a served request takes at saturation (1 / the serving
benchmark's throughput) to estimate the share of throughput they cost.

Part `load` is the throughput run: two MLServer 1.7.1 processes serving the same iris model
with the Mainsail runtime (as bench/bench_serving.py starts it; parallel_workers 0), one with
telemetry off and one with JSON logs and every request traced (`file` exporter, a unique
`x-request-id` per request), loaded in turn by wrk -t1 -c16 (REST, one row), rounds
interleaved and their order rotated; req/s, p99 and the server's CPU per request are medians
over rounds. The gated ratio is the worse of the ratio of median req/s and the median of the
rounds' paired ratios, as in bench_drift and bench_router: on this 2-core machine one arm's
rounds swing by 10-20% between two levels of the server's CPU per request (about 750 and
850 µs, off and on alike): five rounds' medians alone read 0.915x and 1.07x on nearly the
same code, and two runs of 8 rounds back to back 0.975x and 0.917x: 16 rounds. A third
server, JSON logs and traces of a 10% sample, runs in the same rounds for
information. After the run the servers are stopped and the on server's span file and log are
counted: every answered request must have its `runtime.infer` span and its `request served`
line (nothing dropped to look fast).

    .venv/pipeline/bin/python bench/bench_telemetry.py [--part all|inprocess|load]
        [--requests 20000] [--seconds 10] [--rounds 16] [--quick]

Targets (issue 22): telemetry off costs nothing (in process, <= 0.1% of a served request) and
on, every request traced with JSON logs, <= 5% of a served request in process, and on/off req/s
>= 0.95 under load. The 10%-sample figure and the p99s are reported beside them.
Results: bench/results/telemetry.json (`--part P` alone: telemetry_P.json; header and gate:
bench/common.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from common import Run, add_common_args  # noqa: E402

from mainsail.core import telemetry  # noqa: E402


def one_request(log: logging.Logger, rid: str) -> None:
    """The telemetry calls of one request through router, runtime and feedback writer."""
    state = telemetry.STATE
    if state.tracer is None and not state.json_logs:  # router.answer_infer
        if state.tracer is None and not state.json_logs:  # runtime.predict
            with telemetry.stage("validation"):
                pass
            with telemetry.stage("predict"):
                pass
            with telemetry.stage("drift_enqueue"):
                pass
        return
    token = telemetry.REQUEST_ID.set(rid)
    with telemetry.span("router.infer", None, model="churn"):
        telemetry.traceparent()
        with telemetry.span("runtime.infer", None, model="churn"):
            with telemetry.stage("validation"):
                pass
            with telemetry.stage("predict", rows=1):
                pass
            with telemetry.stage("drift_enqueue"):
                pass
            telemetry.event(
                log, "request served", model="churn", version="1", rows=1, drift_queued=True
            )
        with telemetry.span("router.feedback", variant="champion", version="1"):
            ids = telemetry.current_ids()
        telemetry.event(log, "request routed", status=200, variant="champion", latency_ms=1.0)
    telemetry.event(log, "prediction stored in the feedback store", request_id=rid, **ids)
    telemetry.event(log, "served rows received", request_ids=[rid], rows=1)
    telemetry.REQUEST_ID.reset(token)


async def timed(n: int, log: logging.Logger, recorder: Any = None) -> float:
    """CPU µs per request of `n` requests (this process's, its export threads' included), the
    export of their spans and lines included: steadier than wall time when the machine has
    other work, and what the requests take from a saturated server. They run in an asyncio
    loop that gets control back every 256 requests, as in the serving processes (MLServer, the
    router: there between any two requests), whose loop's timers export the batches."""
    start = time.process_time()
    for i in range(n):
        one_request(log, f"r{i}")
        if i % 256 == 255:
            await asyncio.sleep(0)
    if recorder is not None:
        recorder.flush()
    if telemetry.STATE.handler is not None:
        telemetry.STATE.handler.flush()
    return (time.process_time() - start) / n * 1e6


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = %s
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, {["Content-Type"] = "application/json",
                               ["x-request-id"] = "bench-" .. n}, nil)
end
"""


def wrk(
    url: str, seconds: int, connections: int, work: Path, body: dict[str, Any]
) -> dict[str, Any]:
    """One wrk run, a unique `x-request-id` per request: req/s, p50/p99 (ms), answers."""
    from bench_serving import run_wrk

    script = work / "post.lua"
    script.write_text(WRK_SCRIPT % json.dumps(json.dumps(body)))
    return run_wrk(script, url, seconds, connections)


def in_process(args: argparse.Namespace) -> dict[str, list[float]]:
    """Part `inprocess`: µs per request of each arm, per run (arms alternated)."""
    with tempfile.TemporaryDirectory() as tmp, (Path(tmp) / "lines.jsonl").open("a") as lines:
        env = {
            telemetry.ENV_JSON_LOGS: "1",
            telemetry.ENV_TRACING: "file",
            telemetry.ENV_TRACE_DIR: tmp,
        }
        telemetry.setup("bench", env, stream=lines)
        telemetry.settle()  # as the runtime does once loaded (out of the full collections)
        recorder = telemetry.STATE.tracer
        sampled = telemetry._recorder("bench", "file", {**env, telemetry.ENV_TRACE_SAMPLE: "0.1"})
        log = logging.getLogger("mainsail.bench")
        arms: dict[str, list[float]] = {"off": [], "on": [], "traces_only": [], "sampled": []}
        settings = {
            "off": (None, False),
            "on": (recorder, True),
            "traces_only": (recorder, False),
            "sampled": (sampled, False),
        }

        async def alternate() -> None:
            for _ in range(args.runs):  # alternate, so drift of the machine hits every arm
                for arm, (arm_recorder, logs) in settings.items():
                    telemetry.STATE.tracer, telemetry.STATE.json_logs = arm_recorder, logs
                    # as many requests in every arm: a batch's export and collections
                    # amortized as in a running server
                    arms[arm].append(await timed(args.requests, log, arm_recorder))

        asyncio.run(alternate())
        telemetry.STATE.tracer, telemetry.STATE.json_logs = recorder, True
        sampled.shutdown()
    return arms


def group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the processes of process group `pgid`."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # pgrp; utime and stime follow at 11 and 12
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def under_load(args: argparse.Namespace) -> dict[str, Any]:
    """Part `load`: MLServer + the Mainsail runtime, telemetry off and on, under wrk."""
    from bench_serving import FEATURES, _post, _rows, build_iris

    from mainsail.serving.mlserver import (
        MLServerProcess,
        ServedModel,
        free_port,
        server_settings,
        write_repository,
    )

    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    work = Path(tempfile.mkdtemp(prefix="bench-telemetry-"))
    traces = work / "traces"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MAINSAIL_", "OTEL_"))}
    envs = {
        "off": clean,
        "on": {
            **clean,
            telemetry.ENV_JSON_LOGS: "1",
            telemetry.ENV_TRACING: "file",
            telemetry.ENV_TRACE_DIR: str(traces),
        },
        # For information: JSON logs of every request, traces of a 10% sample.
        "sampled": {
            **clean,
            telemetry.ENV_JSON_LOGS: "1",
            telemetry.ENV_TRACING: "file",
            telemetry.ENV_TRACE_DIR: str(work / "traces-sampled"),
            telemetry.ENV_TRACE_SAMPLE: "0.1",
        },
    }
    artifact = build_iris(work / "iris")
    body = {"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP64", "data": _rows(1)}]}
    servers: dict[str, MLServerProcess] = {}
    runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in envs}
    answered = 0  # requests the `on` server answered (wrk's count, warm-up included)
    try:
        for arm, env in envs.items():
            repo = work / arm
            settings = server_settings(
                repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port()
            )
            model = ServedModel("iris", uri=str(artifact), version="1")
            write_repository(repo, [model], settings)
            servers[arm] = MLServerProcess(repo, env=env).start(["iris"])
        urls = {arm: f"{server.url}/v2/models/iris/infer" for arm, server in servers.items()}
        answers = {arm: _post(url, body)["outputs"][0]["data"] for arm, url in urls.items()}
        if answers["off"] != answers["on"]:
            raise RuntimeError(f"the two servers disagree: {answers}")
        answered += 1
        warm = 1 if args.quick else 3
        for arm, url in urls.items():
            result = wrk(url, warm, args.connections, work, body)
            answered += result["requests"] if arm == "on" else 0
        for r in range(args.rounds):
            arms = list(envs)
            for arm in arms[r % len(arms) :] + arms[: r % len(arms)]:  # order rotated
                pgid = servers[arm].proc.pid  # type: ignore[union-attr]
                cpu = group_cpu_s(pgid)
                result = wrk(urls[arm], args.seconds, args.connections, work, body)
                cpu = group_cpu_s(pgid) - cpu
                result["server_cpu_us_per_request"] = round(cpu / result["requests"] * 1e6, 1)
                if result["non_2xx"]:
                    raise RuntimeError(f"{arm}: {result['non_2xx']} non-2xx answers")
                runs[arm].append(result)
                answered += result["requests"] if arm == "on" else 0
                print(f"load round {r + 1} telemetry {arm}: {result}", flush=True)
    finally:
        for server in servers.values():
            server.stop()  # a clean stop: the runtime's spans and lines are flushed at exit
    spans = [json.loads(line)["name"] for f in sorted(traces.glob("*.jsonl")) for line in f.open()]
    log_path = work / "on" / "mlserver.log"
    served = sum(
        line.startswith("{") and json.loads(line).get("msg") == "request served"
        for line in log_path.open(errors="replace")
    )
    recorded = {
        "answered": answered,
        "runtime_infer_spans": spans.count("runtime.infer"),
        "spans": len(spans),
        "request_served_lines": served,
    }
    print(f"load: on server recorded {recorded}", flush=True)
    if min(recorded["runtime_infer_spans"], served) < answered:
        raise RuntimeError(f"telemetry lost records under load: {recorded}")
    rps = {arm: statistics.median(r["rps"] for r in rs) for arm, rs in runs.items()}
    p99 = {arm: statistics.median(r["p99_ms"] for r in rs) for arm, rs in runs.items()}
    paired = [on["rps"] / off["rps"] for off, on in zip(runs["off"], runs["on"], strict=True)]
    paired_sampled = [
        on["rps"] / off["rps"] for off, on in zip(runs["off"], runs["sampled"], strict=True)
    ]
    cpu = {
        arm: statistics.median(r["server_cpu_us_per_request"] for r in rs)
        for arm, rs in runs.items()
    }
    shutil.rmtree(work, ignore_errors=True)
    return {
        "load": f"wrk -t1 -c{args.connections} -d{args.seconds}s, {args.rounds} rounds, "
        "order rotated, median",
        "model": f"iris LogisticRegression, 1 row ({len(FEATURES)} features), FP64 matrix",
        "runs": runs,
        "rps": rps,
        "p99_ms": p99,
        "rps_ratio": rps["on"] / rps["off"],
        "rps_ratio_paired_median": statistics.median(paired),
        "sampled_rps_ratio": rps["sampled"] / rps["off"],
        "sampled_rps_ratio_paired_median": statistics.median(paired_sampled),
        "p99_ratio": p99["on"] / p99["off"],
        "server_cpu_us_per_request": cpu,
        "server_cpu_ratio": cpu["on"] / cpu["off"],
        "recorded": recorded,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=["all", "inprocess", "load"], default="all")
    parser.add_argument("--requests", type=int, default=20_000, help="inprocess: per run")
    parser.add_argument("--runs", type=int, default=5, help="inprocess: runs per arm")
    parser.add_argument("--seconds", type=int, default=10, help="load: seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=16, help="load: rounds (off and on each)")
    parser.add_argument("--connections", type=int, default=16, help="load: wrk -c")
    add_common_args(parser)
    args = parser.parse_args()
    if args.quick:
        args.requests, args.runs, args.seconds, args.rounds = 2_000, 3, 2, 2
    run = Run.start("telemetry" if args.part == "all" else f"telemetry_{args.part}", args)
    results: dict[str, Any] = {}
    targets = []
    notes = []
    served_us: float | None = None  # the server's CPU µs per served request, telemetry off
    if args.part in ("all", "load"):
        load = under_load(args)
        served_us = load["server_cpu_us_per_request"]["off"]
        results["load"] = load
        targets.append(
            run.target(
                "load_rps_ratio",
                min(load["rps_ratio"], load["rps_ratio_paired_median"]),
                ">=",
                0.95,
                "x",
                what="MLServer + Mainsail runtime under wrk: req/s with JSON logs and every "
                "request traced / req/s with telemetry off (worse of ratio of medians and "
                "paired median)",
            )
        )
        notes.append(
            f"load: p99 on/off {load['p99_ratio']:.3g}x ({load['p99_ms']['on']:.2f} ms / "
            f"{load['p99_ms']['off']:.2f} ms); req/s ratio of medians "
            f"{load['rps_ratio']:.3g}x, paired rounds {load['rps_ratio_paired_median']:.3g}x; "
            f"the server's CPU per request on/off "
            f"{load['server_cpu_ratio']:.3g}x ({load['server_cpu_us_per_request']['on']:.0f} µs / "
            f"{load['server_cpu_us_per_request']['off']:.0f} µs)"
        )
        notes.append(
            f"load: JSON logs and traces of a 10% sample: req/s on/off "
            f"{load['sampled_rps_ratio']:.3g}x (paired rounds "
            f"{load['sampled_rps_ratio_paired_median']:.3g}x)"
        )
    if args.part in ("all", "inprocess"):
        arms = in_process(args)
        if served_us is None:
            served_us = served_request_us()
        share = {arm: statistics.median(v) / served_us for arm, v in arms.items()}
        results["inprocess"] = {
            "requests": args.requests,
            "runs": args.runs,
            "served_request_us": round(served_us, 1),
            "us_per_request": {
                arm: [round(x, 3 if arm == "off" else 1) for x in v] for arm, v in arms.items()
            },
            "median_us_per_request": {
                arm: round(statistics.median(v), 3) for arm, v in arms.items()
            },
            "share_of_a_served_request": {k: round(v, 6) for k, v in share.items()},
        }
        targets += [
            run.target("off_share", share["off"], "<=", 0.001, what="telemetry off, per request"),
            run.target("on_share", share["on"], "<=", 0.05, what="every request traced, JSON logs"),
        ]
        notes += [
            "inprocess: CPU per request of the telemetry calls in one process (exports "
            "included; the router's and the feedback writer's too, which run in another "
            "process), as a share of the CPU a served request takes (the load part's "
            "telemetry-off server in a full run, else 1 / the runtime's req/s in "
            "serving.json).",
            f"inprocess: traces of a 10% sample: {share['sampled']:.2%} of a served request",
        ]
    return run.finish(results, targets, notes)


def served_request_us() -> float:
    """The machine's time per served request at saturation (1 / throughput) of the Mainsail
    runtime in MLServer, from bench/results/serving.json (either format), else 4 ms."""
    try:
        data = json.loads((RESULTS / "serving.json").read_text())
        summary = data.get("results", data)["summary"]
        rps = summary.get("mainsail_1", summary.get("b_mainsail_runtime", {}))["rps"]
        return 1e6 / float(rps)
    except (OSError, KeyError, TypeError, ValueError, ZeroDivisionError):
        return 4000.0


if __name__ == "__main__":
    raise SystemExit(main())
