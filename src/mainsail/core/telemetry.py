"""Structured logs and OpenTelemetry traces of the serving path, off by default at no cost.

Standard library only at import time, so every runtime env imports it; OpenTelemetry's SDK is
imported by :func:`setup` only when tracing is on. Each process of the serving path calls
``setup(service)`` once at start-up; the settings come from the environment (written by
:func:`telemetry_env` from the project config's `observability` and `privacy` sections):

* :data:`ENV_JSON_LOGS` = ``1``: the `mainsail` loggers write JSON lines (`ts`, `level`,
  `service`, `logger`, `msg`, `request_id`, `trace_id`, `span_id`, extra fields), with every
  email / phone / card-like value redacted (:mod:`mainsail.core.privacy`);
* :data:`ENV_TRACING` = ``otlp`` | ``file`` | ``console``: spans through the OTel SDK.

On the request path: :func:`span` (a shared no-op context manager while tracing is off),
:func:`event` (returns at once while JSON logs are off), and :data:`REQUEST_ID`, the context
variable that carries the request id into every log line of the same task or thread.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mainsail.core import naming
from mainsail.core.privacy import Redact, redact

ENV_JSON_LOGS = naming.ENV_JSON_LOGS
"""`1`: JSON log lines (see the module docstring)."""
ENV_TRACING = naming.ENV_TRACING
"""Span exporter: `otlp`, `file` or `console`; unset or empty: no tracing."""
ENV_TRACE_DIR = "MAINSAIL_TRACE_DIR"
"""Folder of the `file` exporter (one `<service>-<pid>.jsonl` per process)."""
ENV_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
"""OpenTelemetry's own variable: the `otlp` exporter's collector."""
ENV_TRACE_SAMPLE = naming.ENV_TRACE_SAMPLE
"""Share of requests traced (0 < ratio <= 1; parent-based, so a whole trace or none)."""
ENV_REDACT = naming.ENV_REDACT
"""`hash` or `drop`: how sensitive values in log lines are rendered (`privacy.redact`)."""

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "mainsail_request_id", default=None
)
"""The request id of the request being served by this task or thread."""

_NOOP = contextlib.nullcontext()


class _State:
    json_logs = False
    tracer: Any = None
    propagator: Any = None
    service = ""
    pid = 0
    redact: Redact = "hash"


STATE = _State()


def telemetry_env(observability: Any, privacy: Any, default_trace_dir: Path) -> dict[str, str]:
    """Environment of a serving-path process for the project's `observability` (an
    :class:`~mainsail.config.observability.ObservabilityConfig`) and `privacy` sections."""
    env = {ENV_REDACT: privacy.redact}
    if observability.json_logs:
        env[ENV_JSON_LOGS] = "1"
    if observability.tracing:
        env[ENV_TRACING] = observability.exporter
        env[ENV_TRACE_DIR] = str(observability.trace_dir or default_trace_dir)
        if observability.sample_ratio < 1.0:
            env[ENV_TRACE_SAMPLE] = str(observability.sample_ratio)
        if observability.exporter == "otlp":
            env[ENV_OTLP_ENDPOINT] = observability.otlp_endpoint
    return env


def setup(service: str, environ: Mapping[str, str] = os.environ, *, traces: bool = True) -> None:
    """Configure this process's logs and traces from `environ`; once per process (a second call
    in the same process does nothing, a forked worker configures itself again). `traces=False`:
    logs only (an env without the OpenTelemetry SDK)."""
    if STATE.pid == os.getpid():
        return
    STATE.pid, STATE.service = os.getpid(), service
    STATE.redact = "drop" if environ.get(ENV_REDACT) == "drop" else "hash"
    STATE.json_logs = environ.get(ENV_JSON_LOGS, "") in ("1", "true")
    if STATE.json_logs:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter(service))
        logger = logging.getLogger("mainsail")
        for old in [h for h in logger.handlers if isinstance(h.formatter, JsonFormatter)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    exporter = environ.get(ENV_TRACING, "")
    if exporter and traces:
        STATE.tracer, STATE.propagator = _tracer(service, exporter, environ)


def _tracer(service: str, kind: str, environ: Mapping[str, str]) -> tuple[Any, Any]:
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError as err:
        raise RuntimeError(
            f"{ENV_TRACING}={kind} needs the OpenTelemetry SDK (opentelemetry-sdk) in this "
            f"environment: {err}"
        ) from None
    try:
        ratio = float(environ.get(ENV_TRACE_SAMPLE) or 1.0)
    except ValueError:
        ratio = -1.0
    if not 0.0 < ratio <= 1.0:
        raise RuntimeError(
            f"{ENV_TRACE_SAMPLE}={environ.get(ENV_TRACE_SAMPLE)!r}: expected a share in (0, 1]"
        )
    provider = TracerProvider(
        resource=Resource.create({"service.name": service}),
        sampler=ParentBased(TraceIdRatioBased(ratio)),
    )
    if kind == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError as err:
            raise RuntimeError(
                f"{ENV_TRACING}=otlp needs opentelemetry-exporter-otlp-proto-grpc in this "
                f"environment (the serving env has it); use `file` here: {err}"
            ) from None
        endpoint = environ.get(ENV_OTLP_ENDPOINT, "http://127.0.0.1:4317")
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    elif kind == "file":
        folder = Path(environ.get(ENV_TRACE_DIR) or "traces")
        folder.mkdir(parents=True, exist_ok=True)
        out = (folder / f"{service}-{os.getpid()}.jsonl").open("a", buffering=1)
        # One compact line per span (the SDK's own `to_json` costs ten times as much).
        exporter = ConsoleSpanExporter(out=out, formatter=lambda s: _span_line(s, service))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif kind == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    else:
        raise RuntimeError(f"{ENV_TRACING}={kind!r}: expected otlp, file or console")
    return provider.get_tracer("mainsail"), TraceContextTextMapPropagator()


def _span_line(span: Any, service: str) -> str:
    """A finished span as one JSON line: ids in hex as in log lines, times in ns."""
    ctx, parent = span.context, span.parent
    return (
        json.dumps(
            {
                "name": span.name,
                "service": service,
                "trace_id": f"{ctx.trace_id:032x}",
                "span_id": f"{ctx.span_id:016x}",
                "parent_id": f"{parent.span_id:016x}" if parent is not None else None,
                "start_ns": span.start_time,
                "end_ns": span.end_time,
                "status": span.status.status_code.name,
                "attributes": dict(span.attributes or {}),
            },
            default=str,
        )
        + "\n"
    )


def tracing() -> bool:
    """True while spans are recorded."""
    return STATE.tracer is not None


def span(name: str, headers: Mapping[str, Any] | None = None, **attributes: Any) -> Any:
    """A span named `name` (a child of the current one, or of the W3C `traceparent` in
    `headers`) with `attributes` and the current request id; a no-op while tracing is off."""
    tracer = STATE.tracer
    if tracer is None:
        return _NOOP
    return _span(tracer, name, headers, attributes)


@contextlib.contextmanager
def _span(
    tracer: Any, name: str, headers: Mapping[str, Any] | None, attributes: dict[str, Any]
) -> Iterator[Any]:
    context = None
    if headers is not None:
        carrier = {k: v for k, v in headers.items() if k == "traceparent"}
        context = STATE.propagator.extract(carrier) if carrier else None
    rid = REQUEST_ID.get()
    if rid is not None:
        attributes = {"mainsail.request_id": rid, **attributes}
    with tracer.start_as_current_span(name, context=context, attributes=attributes) as current:
        yield current


def traceparent() -> str | None:
    """The W3C `traceparent` of the current span (to pass on downstream); None when off."""
    if STATE.propagator is None:
        return None
    carrier: dict[str, str] = {}
    STATE.propagator.inject(carrier)
    return carrier.get("traceparent")


def current_ids() -> dict[str, str]:
    """`trace_id` and `span_id` of the current span (for a line written later, elsewhere);
    empty while tracing is off."""
    if STATE.tracer is None:
        return {}
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return {}
    return {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}


def logs_on() -> bool:
    """True while per-request JSON log lines are written."""
    return STATE.json_logs


def event(logger: logging.Logger, msg: str, **fields: Any) -> None:
    """One INFO line about the request being served (its id from `fields['request_id']` or
    :data:`REQUEST_ID`); returns at once while JSON logs are off."""
    if not STATE.json_logs:
        return
    logger.info(msg, extra={"fields": fields})


class JsonFormatter(logging.Formatter):
    """One JSON object per record; values of the detected sensitive kinds are redacted."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(getattr(record, "fields", None) or {})
        mode = STATE.redact
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": redact(record.getMessage(), mode),
            "request_id": fields.pop("request_id", None) or REQUEST_ID.get(),
        }
        out.update(current_ids())
        # The text that can carry a client's or a row's values is redacted; ids and times not.
        for key, value in fields.items():
            out[key] = redact(value, mode) if isinstance(value, str) else value
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info), mode)
        return json.dumps(out, default=str)
