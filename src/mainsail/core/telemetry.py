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

While on, the request path only records: finished spans go to the SDK's `BatchSpanProcessor`
(a bounded queue, exported by its thread every :data:`SPAN_FLUSH_MS` ms, one write per batch,
flushed at exit), and JSON lines to a :class:`LineWriter` (written by its thread within
:data:`LINE_FLUSH_S`; warnings and errors at once; flushed at exit). `event` renders its line
without a `logging.LogRecord` (the `mainsail` loggers' lines, a prepared formatter).
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import contextvars
import gc
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

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
ENV_SPAN_FLUSH_MS = "OTEL_BSP_SCHEDULE_DELAY"
"""OpenTelemetry's own variable: the batch span processor's export interval (ms)."""

ENV_SPAN_QUEUE = "OTEL_BSP_MAX_QUEUE_SIZE"
"""OpenTelemetry's own variable: the most finished spans waiting for export."""

SPAN_FLUSH_MS = 200
"""Default export interval of finished spans (the SDK's is 5000 ms)."""
SPAN_QUEUE = 8192
"""Default bound of the export queue (the SDK's 2048 is a third of a second of a runtime
serving 2,000 requests a second, three spans each, while its exporting thread waits for the
GIL)."""
LINE_FLUSH_S = 0.1
"""Longest delay of an INFO JSON line (warnings and errors are written at once)."""

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "mainsail_request_id", default=None
)
"""The request id of the request being served by this task or thread."""

_NOOP = contextlib.nullcontext()


class _State:
    json_logs = False
    tracer: Any = None
    propagator: Any = None
    provider: Any = None
    # opentelemetry's get_current_span, set_span_in_context, context.attach and detach
    current_span: Any = None
    in_context: Any = None
    attach: Any = None
    detach: Any = None
    handler: JsonHandler | None = None
    service = ""
    pid = 0
    redact: Redact = "hash"
    partial = False  # a sample of the requests is traced (sample ratio < 1)


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


def setup(
    service: str,
    environ: Mapping[str, str] = os.environ,
    *,
    traces: bool = True,
    stream: IO[str] | None = None,
) -> None:
    """Configure this process's logs and traces from `environ`; once per process (a second call
    in the same process does nothing, a forked worker configures itself again). `traces=False`:
    logs only (an env without the OpenTelemetry SDK). JSON lines go to `stream` (stderr)."""
    if STATE.pid == os.getpid():
        return
    STATE.pid, STATE.service = os.getpid(), service
    STATE.redact = "drop" if environ.get(ENV_REDACT) == "drop" else "hash"
    STATE.json_logs = environ.get(ENV_JSON_LOGS, "") in ("1", "true")
    if STATE.json_logs:
        handler = JsonHandler(LineWriter(sys.stderr if stream is None else stream), service)
        logger = logging.getLogger("mainsail")
        for old in [h for h in logger.handlers if isinstance(h.formatter, JsonFormatter)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        STATE.handler = handler
    exporter = environ.get(ENV_TRACING, "")
    if exporter and traces:
        STATE.tracer, STATE.propagator = _tracer(service, exporter, environ)


def _tracer(service: str, kind: str, environ: Mapping[str, str]) -> tuple[Any, Any]:
    try:
        from opentelemetry.context import attach, detach
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
        )
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased
        from opentelemetry.trace import get_current_span, set_span_in_context
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
    # All spans at 1.0 (what TraceIdRatioBased(1.0) decides too, without its arithmetic).
    root = ALWAYS_ON if ratio == 1.0 else TraceIdRatioBased(ratio)
    provider = TracerProvider(
        resource=Resource.create({"service.name": service}), sampler=ParentBased(root)
    )
    try:
        delay = float(environ.get(ENV_SPAN_FLUSH_MS) or SPAN_FLUSH_MS)
    except ValueError:
        delay = SPAN_FLUSH_MS

    queue = None if environ.get(ENV_SPAN_QUEUE) else SPAN_QUEUE

    def batch(exporter: Any) -> Any:
        # Spans leave the request path at once: the SDK's bounded queue (dropped and counted
        # beyond), exported by its thread; the provider flushes it at exit.
        return BatchSpanProcessor(exporter, max_queue_size=queue, schedule_delay_millis=delay)

    if kind == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError as err:
            raise RuntimeError(
                f"{ENV_TRACING}=otlp needs opentelemetry-exporter-otlp-proto-grpc in this "
                f"environment (the serving env has it); use `file` here: {err}"
            ) from None
        endpoint = environ.get(ENV_OTLP_ENDPOINT, "http://127.0.0.1:4317")
        provider.add_span_processor(batch(OTLPSpanExporter(endpoint=endpoint)))
    elif kind == "file":
        folder = Path(environ.get(ENV_TRACE_DIR) or "traces")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{service}-{os.getpid()}.jsonl"
        provider.add_span_processor(batch(_file_exporter(path, service)))
    elif kind == "console":
        provider.add_span_processor(batch(ConsoleSpanExporter(out=sys.stderr)))
    else:
        raise RuntimeError(f"{ENV_TRACING}={kind!r}: expected otlp, file or console")
    STATE.provider, STATE.current_span, STATE.in_context = (
        provider,
        get_current_span,
        set_span_in_context,
    )
    STATE.attach, STATE.detach = attach, detach
    STATE.partial = ratio < 1.0
    return provider.get_tracer("mainsail"), TraceContextTextMapPropagator()


def _file_exporter(path: Path, service: str) -> Any:
    """The `file` exporter: each batch of spans as JSON lines, one write (the SDK's
    `ConsoleSpanExporter` writes span by span, its `to_json` costs ten times as much)."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class FileSpanExporter(SpanExporter):
        def __init__(self) -> None:
            self.out = path.open("a")

        def export(self, spans: Any) -> SpanExportResult:
            try:
                self.out.write("".join([_span_line(s, service) for s in spans]))
                self.out.flush()
            except (OSError, ValueError):
                return SpanExportResult.FAILURE
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            self.out.close()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    return FileSpanExporter()


_encode = json.JSONEncoder(default=str).encode
"""`json.dumps(value, default=str)` without building an encoder per call."""
_STATUS: dict[Any, str] = {}


def _span_line(span: Any, service: str) -> str:
    """A finished span as one JSON line: ids in hex as in log lines, times in ns (the keys of
    `{"name", "service", "trace_id", "span_id", "parent_id", "start_ns", "end_ns", "status",
    "attributes"}`, written directly: this runs for every span)."""
    ctx, parent, code = span.context, span.parent, span.status.status_code
    status = _STATUS.get(code)
    if status is None:
        status = _STATUS[code] = _encode(code.name)
    attributes = span.attributes
    parent_id = f'"{parent.span_id:016x}"' if parent is not None else "null"
    return (
        f'{{"name": {_encode(span.name)}, "service": {_encode(service)}, '
        f'"trace_id": "{ctx.trace_id:032x}", "span_id": "{ctx.span_id:016x}", '
        f'"parent_id": {parent_id}, '
        f'"start_ns": {_encode(span.start_time)}, "end_ns": {_encode(span.end_time)}, '
        f'"status": {status}, '
        f'"attributes": {_encode(dict(attributes)) if attributes else "{}"}}}\n'
    )


def settle() -> None:
    """Called by a serving process once it has loaded (its modules, its model): while spans are
    recorded, collect, then move every object alive now out of the cyclic collector's reach
    (`gc.freeze`). Queued spans live long enough to reach the oldest generation, so they bring
    full collections about, and in MLServer a full collection of the loaded process took about
    150 ms (the p99 of a traced server under load); after the freeze it scans what the requests
    made, about 1 ms. What was alive at the freeze is never collected as a cycle: a model
    unloaded later keeps its cyclic garbage (plain reference counting still frees the rest)."""
    if STATE.tracer is None:
        return
    gc.collect()
    gc.freeze()


def shutdown() -> None:
    """Export the spans and write the lines still queued (also done at exit)."""
    if STATE.provider is not None:
        STATE.provider.force_flush()
    if STATE.handler is not None:
        STATE.handler.flush()


def tracing() -> bool:
    """True while spans are recorded."""
    return STATE.tracer is not None


def span(name: str, headers: Mapping[str, Any] | None = None, **attributes: Any) -> Any:
    """A span named `name` (a child of the current one, or of the W3C `traceparent` in
    `headers`) with `attributes` and the current request id; a no-op while tracing is off."""
    tracer = STATE.tracer
    if tracer is None:
        return _NOOP
    if STATE.partial and headers is None:
        # Under a span that is not recorded, the (parent-based) sampler records no child:
        # skip making one. Most spans of a sampled configuration take this way.
        ctx = STATE.current_span().get_span_context()
        if ctx.is_valid and not ctx.trace_flags.sampled:
            return _NOOP
    return _Span(tracer, name, headers, attributes)


class _Span:
    """One span made current for a `with` block (what the SDK's `start_as_current_span` does,
    without its two generator-based context managers): the exception recorded and the status
    set to ERROR when one escapes the block, the span ended on exit."""

    __slots__ = ("attributes", "current", "headers", "name", "token", "tracer")

    def __init__(
        self, tracer: Any, name: str, headers: Mapping[str, Any] | None, attributes: dict[str, Any]
    ) -> None:
        self.tracer, self.name, self.headers, self.attributes = tracer, name, headers, attributes

    def __enter__(self) -> Any:
        parent = None
        if self.headers is not None:
            given = self.headers.get("traceparent")
            if given:
                parent = STATE.propagator.extract({"traceparent": given})
        attributes = self.attributes
        rid = REQUEST_ID.get()
        if rid is not None:
            attributes = {"mainsail.request_id": rid, **attributes}
        self.current = current = self.tracer.start_span(
            self.name, context=parent, attributes=attributes
        )
        self.token = STATE.attach(STATE.in_context(current))
        return current

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        STATE.detach(self.token)
        current = self.current
        if isinstance(exc, Exception) and current.is_recording():
            from opentelemetry.trace import Status, StatusCode

            current.record_exception(exc)
            current.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        current.end()


def traceparent() -> str | None:
    """The W3C `traceparent` of the current span (to pass on downstream); None when off."""
    if STATE.propagator is None:
        return None
    ctx = STATE.current_span().get_span_context()
    if not ctx.is_valid:
        return None
    # What TraceContextTextMapPropagator.inject writes, without its carrier and setter.
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


def current_ids() -> dict[str, str]:
    """`trace_id` and `span_id` of the current span (for a line written later, elsewhere);
    empty while tracing is off."""
    if STATE.tracer is None:
        return {}
    ctx = STATE.current_span().get_span_context()
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
    handler = STATE.handler
    if (
        handler is None
        or not logger.name.startswith("mainsail")
        or not logger.isEnabledFor(logging.INFO)
    ):
        logger.info(msg, extra={"fields": fields})
        return
    # The `mainsail` loggers' line, rendered without a LogRecord (a third of the cost).
    formatter: JsonFormatter = handler.formatter  # type: ignore[assignment]
    handler.writer.write(formatter.render(time.time(), "info", logger.name, msg, fields))


class JsonFormatter(logging.Formatter):
    """One JSON object per record; values of the detected sensitive kinds are redacted."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service
        self._clock: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(getattr(record, "fields", None) or {})
        exc = self.formatException(record.exc_info) if record.exc_info else None
        level = record.levelname.lower()
        return self.render(record.created, level, record.name, record.getMessage(), fields, exc)

    def render(
        self,
        created: float,
        level: str,
        name: str,
        msg: str,
        fields: dict[str, Any],
        exc: str | None = None,
    ) -> str:
        """The line of one record (`fields` is consumed)."""
        second = int(created)
        clock = self._clock
        if clock[0] != second:  # one strftime a second (a tuple: swapped whole, thread-safe)
            clock = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._clock = clock
        mode = STATE.redact
        out: dict[str, Any] = {
            "ts": f"{clock[1]}.{int((created - second) * 1000):03d}Z",
            "level": level,
            "service": self.service,
            "logger": name,
            "msg": redact(msg, mode),
            "request_id": fields.pop("request_id", None) or REQUEST_ID.get(),
        }
        if STATE.tracer is not None:
            out.update(current_ids())
        # The text that can carry a client's or a row's values is redacted; ids and times not.
        for key, value in fields.items():
            out[key] = redact(value, mode) if isinstance(value, str) else value
        if exc is not None:
            out["exc"] = redact(exc, mode)
        return _encode(out)


class LineWriter:
    """Text lines to a stream, written in batches by a daemon thread within `interval`
    seconds of the first one waiting (`flush` writes them at once; at exit too). The request
    path only appends to a deque; past `max_pending` lines the caller writes them itself."""

    def __init__(self, stream: IO[str], interval: float = LINE_FLUSH_S, max_pending: int = 4096):
        self.stream, self.interval, self.max_pending = stream, interval, max_pending
        self.pid = os.getpid()
        self._pending: collections.deque[str] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        atexit.register(self.flush)

    def write(self, line: str) -> None:
        self._pending.append(line)
        if not self._wake.is_set():
            if self._thread is None:
                self._start()
            self._wake.set()
        if len(self._pending) >= self.max_pending:
            self.flush()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="mainsail-json-lines", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(self.interval)  # gather the lines of this interval into one write
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Write every waiting line now (in this thread)."""
        if os.getpid() != self.pid:  # a forked child's copy of the parent's lines
            self._pending.clear()
            return
        with self._lock:
            pending, lines = self._pending, []
            while pending:
                lines.append(pending.popleft())
            if not lines:
                return
            lines.append("")
            try:
                self.stream.write("\n".join(lines))
                self.stream.flush()
            except (OSError, ValueError):  # a closed stream at exit
                pass


class JsonHandler(logging.Handler):
    """The `mainsail` loggers' JSON lines through a :class:`LineWriter`; a record at WARNING
    or above is written at once, with the lines before it."""

    def __init__(self, writer: LineWriter, service: str) -> None:
        super().__init__()
        self.writer = writer
        self.setFormatter(JsonFormatter(service))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.writer.write(self.format(record))
        except Exception:
            self.handleError(record)
            return
        if record.levelno >= logging.WARNING:
            self.writer.flush()

    def flush(self) -> None:
        self.writer.flush()
