"""Config section: structured logs and OpenTelemetry traces of the serving path."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from mainsail.config.base import StrictModel


class ObservabilityConfig(StrictModel):
    """JSON logs and traces that follow one request id from the router through MLServer, the
    mainsail runtime, the feature lookup, the drift feed (and sidecar) and the feedback store.

    Both are off by default and then cost nothing: no OpenTelemetry import, no per-request log
    record. The local stack hands the settings to its processes as environment variables
    (:func:`mainsail.core.telemetry.telemetry_env`)."""

    json_logs: bool = False
    """Write the mainsail loggers' lines as JSON objects (one per line, on stderr), each with
    `request_id` (and `trace_id` / `span_id` while tracing), plus one line per request and
    stage of the serving path."""
    tracing: bool = False
    """Record OpenTelemetry spans: `router.infer`, `router.feedback`, `runtime.infer` with its
    children `validation`, `feature_lookup`, `predict` and `drift_enqueue`; the router passes
    the W3C `traceparent` header on, so one request is one trace."""
    exporter: Literal["otlp", "file", "console"] = "file"
    """Where spans go: `otlp` (gRPC to `otlp_endpoint`; needs the OTLP exporter, which the
    serving env has), `file` (one JSON object per span and line, a file per process in
    `trace_dir`) or `console` (stderr)."""
    sample_ratio: float = Field(1.0, gt=0.0, le=1.0)
    """Share of requests traced (decided by the router from the trace id; downstream processes
    follow its decision through `traceparent`). Each traced request costs about 100 µs of CPU
    across the path; under load every request traced took 28% of MLServer's throughput on
    1-row requests, a 10% sample with JSON logs 14% (`bench/bench_telemetry.py`): under heavy
    load, trace a sample."""
    otlp_endpoint: str = "http://127.0.0.1:4317"
    """OTLP/gRPC endpoint of a collector (Jaeger, the OpenTelemetry Collector)."""
    trace_dir: Path | None = None
    """Folder of the `file` exporter; the stack's `traces/` folder when null."""
