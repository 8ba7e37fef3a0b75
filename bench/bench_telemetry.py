"""Benchmark: what the serving path's logs and traces cost per request, off and on.

Not a throughput run (that needs the whole path under load: see the issue's remaining work);
this times, in one process, exactly the telemetry calls one request makes across the router,
the runtime and the feedback writer (router.infer, router.feedback, runtime.infer, validation,
predict, drift_enqueue spans; six JSON lines), against the same sequence with telemetry off
(the state checks and shared no-op context managers the code keeps on the path), with traces
only, and with traces of a 10% sample (`observability.sample_ratio`). Spans go to
the `file` exporter and lines to a file, as `mainsail up` would write them. The per-request
figures are set beside the time a served request takes at saturation (1 / the serving
benchmark's throughput) to estimate the share of throughput they cost.

    .venv/pipeline/bin/python bench/bench_telemetry.py [--requests 20000] [--quick]

Targets (issue 22): telemetry off costs nothing (≤ 0.1% of a served request) and on, every
request traced with JSON logs, ≤ 5%. The 10%-sample figure is reported beside them.
Results: bench/results/telemetry.json (header and gate: bench/common.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent / "src"))

from common import Run, add_common_args  # noqa: E402

from mainsail.core import telemetry  # noqa: E402


def one_request(log: logging.Logger, rid: str) -> None:
    """The telemetry calls of one request through router, runtime and feedback writer."""
    state = telemetry.STATE
    if state.tracer is None and not state.json_logs:  # router.answer_infer
        if state.tracer is None and not state.json_logs:  # runtime.predict
            with telemetry.span("validation"):
                pass
            with telemetry.span("predict"):
                pass
            with telemetry.span("drift_enqueue"):
                pass
        return
    token = telemetry.REQUEST_ID.set(rid)
    with telemetry.span("router.infer", None, model="churn"):
        telemetry.traceparent()
        with telemetry.span("runtime.infer", None, model="churn"):
            with telemetry.span("validation"):
                pass
            with telemetry.span("predict", rows=1):
                pass
            with telemetry.span("drift_enqueue"):
                pass
            telemetry.event(log, "rows queued for the drift sidecar", queued=True)
            telemetry.event(log, "request served", model="churn", version="1", rows=1)
        with telemetry.span("router.feedback", variant="champion", version="1"):
            ids = telemetry.current_ids()
        telemetry.event(log, "request routed", status=200, variant="champion", latency_ms=1.0)
    telemetry.event(log, "prediction stored in the feedback store", request_id=rid, **ids)
    telemetry.event(log, "served rows received", request_ids=[rid], rows=1)
    telemetry.REQUEST_ID.reset(token)


def timed(n: int, log: logging.Logger) -> float:
    start = time.perf_counter()
    for i in range(n):
        one_request(log, f"r{i}")
    return (time.perf_counter() - start) / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    add_common_args(parser)
    args = parser.parse_args()
    if args.quick:
        args.requests, args.runs = 2_000, 3
    run = Run.start("telemetry", args)
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            telemetry.ENV_JSON_LOGS: "1",
            telemetry.ENV_TRACING: "file",
            telemetry.ENV_TRACE_DIR: tmp,
        }
        telemetry.setup("bench", env)
        sampled_env = {**env, telemetry.ENV_TRACE_SAMPLE: "0.1"}
        sampled_tracer, _ = telemetry._tracer("bench", "file", sampled_env)
        log = logging.getLogger("mainsail.bench")
        handler = logging.FileHandler(Path(tmp) / "lines.jsonl")
        handler.setFormatter(telemetry.JsonFormatter("bench"))
        root = logging.getLogger("mainsail")
        root.handlers = [handler]
        tracer = telemetry.STATE.tracer
        off, on, traces_only, sampled = [], [], [], []
        for _ in range(args.runs):  # alternate, so drift of the machine hits every arm
            telemetry.STATE.tracer, telemetry.STATE.json_logs = None, False
            off.append(timed(args.requests, log))
            telemetry.STATE.tracer, telemetry.STATE.json_logs = tracer, True
            on.append(timed(max(1, args.requests // 10), log))
            telemetry.STATE.tracer, telemetry.STATE.json_logs = tracer, False
            traces_only.append(timed(max(1, args.requests // 10), log))
            telemetry.STATE.tracer, telemetry.STATE.json_logs = sampled_tracer, False
            sampled.append(timed(max(1, args.requests // 10), log))
        handler.close()
    served_us = served_request_us()
    share = {
        "off": statistics.median(off) / served_us,
        "on": statistics.median(on) / served_us,
        "traces_only": statistics.median(traces_only) / served_us,
        "traces_sampled_10pct": statistics.median(sampled) / served_us,
    }
    results = {
        "requests": args.requests,
        "runs": args.runs,
        "served_request_us": round(served_us, 1),
        "off_us_per_request": [round(x, 3) for x in off],
        "on_us_per_request": [round(x, 1) for x in on],
        "traces_only_us_per_request": [round(x, 1) for x in traces_only],
        "traces_sampled_10pct_us_per_request": [round(x, 1) for x in sampled],
        "share_of_a_served_request": {k: round(v, 6) for k, v in share.items()},
    }
    targets = [
        run.target("off_share", share["off"], "<=", 0.001, what="telemetry off, per request"),
        run.target("on_share", share["on"], "<=", 0.05, what="every request traced, JSON logs"),
    ]
    notes = [
        "Per-request cost of the telemetry calls in one process, as a share of the time one "
        "request takes at saturation (1 / the Mainsail runtime's req/s in serving.json); not a "
        "throughput run of the whole path.",
        f"traces of a 10% sample: {share['traces_sampled_10pct']:.2%} of a served request",
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
