"""Structured logs and OpenTelemetry traces of the serving path, off by default at no cost.

Standard library only, so every runtime env imports it; OpenTelemetry's SDK is imported only
when spans go to its `otlp` or `console` exporter. Each process of the serving path calls
``setup(service)`` once at start-up; the settings come from the environment (written by
:func:`telemetry_env` from the project config's `observability` and `privacy` sections):

* :data:`ENV_JSON_LOGS` = ``1``: the `mainsail` loggers write JSON lines (`ts`, `level`,
  `service`, `logger`, `msg`, `request_id`, `trace_id`, `span_id`, extra fields), with every
  email / phone / card-like value redacted (:mod:`mainsail.core.privacy`);
* :data:`ENV_TRACING` = ``otlp`` | ``file`` | ``console``: OpenTelemetry spans, recorded by
  :mod:`mainsail.core.spans` (the SDK's span costs ten times as much on the request path) and
  exported to a file per process or through the SDK's OTLP or console exporter.

On the request path: :func:`span` (a shared no-op context manager while tracing is off),
:func:`stage` (a step of the current span's work, exported as its child), :func:`event`
(returns at once while JSON logs are off), and :data:`REQUEST_ID`, the context variable that
carries the request id into every log line of the same task or thread.

While on, the request path only records: finished spans go to a bounded queue (exported every
:data:`SPAN_FLUSH_MS` ms, one write per batch, flushed at exit), and an event's line, made
at once, to a :class:`LineWriter` (written with its batch within :data:`LINE_FLUSH_S`;
warnings and errors at once; flushed at exit). A batch is written by a timer of the process's
asyncio loop where one runs (MLServer, the router), else by a daemon thread. `event` needs no
`logging.LogRecord` (the `mainsail` loggers' lines, a prepared formatter).
"""

from __future__ import annotations

import contextvars
import gc
import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from mainsail.core import naming, spans
from mainsail.core.batching import Batcher
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
"""OpenTelemetry's variable of the batch span processor: the export interval (ms)."""

ENV_SPAN_QUEUE = "OTEL_BSP_MAX_QUEUE_SIZE"
"""OpenTelemetry's variable of the batch span processor: the most spans waiting for export."""

SPAN_FLUSH_MS = 200
"""Default export interval of finished spans (the SDK's batch processor's is 5000 ms)."""
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


class _Noop:
    """The shared no-op span of the request path while tracing is off: `with` it gives None
    and lets every exception through, at the least cost Python allows (its `__enter__` is a
    C call; `contextlib.nullcontext` costs half as much again, three times per request)."""

    __slots__ = ()
    __enter__: Any = staticmethod(type(None))

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        return None


_NOOP = _Noop()


class _State:
    json_logs = False
    tracer: spans.Recorder | None = None  # set while spans are recorded
    handler: JsonHandler | None = None
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


def setup(
    service: str,
    environ: Mapping[str, str] = os.environ,
    *,
    traces: bool = True,
    stream: IO[str] | None = None,
) -> None:
    """Configure this process's logs and traces from `environ`; once per process (a second call
    in the same process does nothing, a forked worker configures itself again). `traces=False`:
    logs only. JSON lines go to `stream` (stderr)."""
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
        STATE.tracer = _recorder(service, exporter, environ)


def _recorder(service: str, kind: str, environ: Mapping[str, str]) -> spans.Recorder:
    """The span recorder of exporter `kind` with the sample ratio, export interval and queue
    bound that `environ` sets (see :mod:`mainsail.core.spans`)."""
    try:
        ratio = float(environ.get(ENV_TRACE_SAMPLE) or 1.0)
    except ValueError:
        ratio = -1.0
    if not 0.0 < ratio <= 1.0:
        raise RuntimeError(
            f"{ENV_TRACE_SAMPLE}={environ.get(ENV_TRACE_SAMPLE)!r}: expected a share in (0, 1]"
        )
    try:
        delay = float(environ.get(ENV_SPAN_FLUSH_MS) or SPAN_FLUSH_MS)
    except ValueError:
        delay = SPAN_FLUSH_MS
    try:
        queue = int(environ.get(ENV_SPAN_QUEUE) or SPAN_QUEUE)
    except ValueError:
        queue = SPAN_QUEUE
    if kind not in ("otlp", "file", "console"):
        raise RuntimeError(f"{ENV_TRACING}={kind!r}: expected otlp, file or console")
    return spans.recorder_for(
        service,
        kind,
        environ,
        ratio=ratio,
        interval_ms=delay,
        max_queue=queue,
        trace_dir=Path(environ.get(ENV_TRACE_DIR) or "traces"),
        redact=lambda text: redact(text, STATE.redact),
    )


def settle(*, always: bool = False) -> None:
    """Called by a serving process once it has loaded (its modules, its model): while spans or
    JSON lines are recorded (`always`: in any case), collect, then move every object alive now
    out of the cyclic collector's reach (`gc.freeze`).

    Queued spans and lines live long enough to reach the oldest generation, so they bring full
    collections about, and in MLServer a full collection of the loaded process took about
    150 ms (the p99 of a traced server under load); after the freeze it scans what the requests
    made, about 1 ms. The router settles always: it loads no model, and under an open-loop load
    its full collections of the loaded heap took 10-40 ms each (a `gc.callbacks` probe), in the
    tail of its added p99. What was alive at the freeze is never collected as a cycle: a model
    unloaded later, or a variant the router's admin API replaces, keeps its cyclic garbage
    (plain reference counting still frees the rest)."""
    if not always and STATE.tracer is None and not STATE.json_logs:
        return
    gc.collect()
    gc.freeze()


def shutdown() -> None:
    """Export the spans and write the lines still queued (also done at exit)."""
    if STATE.tracer is not None:
        STATE.tracer.flush()
    if STATE.handler is not None:
        STATE.handler.flush()


def tracing() -> bool:
    """True while spans are recorded."""
    return STATE.tracer is not None


def span(name: str, headers: Mapping[str, Any] | None = None, **attributes: Any) -> Any:
    """A span named `name` (a child of the current one, or of the W3C `traceparent` in
    `headers`) with `attributes` and the current request id; a no-op while tracing is off,
    and under a span that is not sampled (whose decision its children share)."""
    recorder = STATE.tracer
    if recorder is None:
        return _NOOP
    if headers is not None:
        parent = spans.parse_traceparent(headers.get("traceparent")) or spans.current()
    else:
        parent = spans.current()
        if parent is not None and not parent.sampled:
            return _NOOP
    rid = REQUEST_ID.get()
    if rid is not None:
        attributes["mainsail.request_id"] = rid
    return spans.Span(recorder, name, parent, attributes)


def stage(name: str, **attributes: Any) -> Any:
    """A step of the current span's own work (`validation`, `predict`, ...), exported as its
    child span with the span's request id (:class:`~mainsail.core.spans.Stage`: cheaper than a
    span, never current, so never a parent: a step that calls another service is a `span`);
    a no-op while tracing is off and under no span or an unsampled one."""
    if STATE.tracer is None:
        return _NOOP
    parent = spans.current()
    if parent is None or not parent.sampled:
        return _NOOP
    return spans.Stage(parent, name, attributes)


def traceparent() -> str | None:
    """The W3C `traceparent` of the current span (to pass on downstream); None when off."""
    if STATE.tracer is None:
        return None
    current = spans.current()
    if current is None or type(current) is not spans.Span:
        return None
    return current.traceparent()


def current_ids() -> dict[str, str]:
    """`trace_id` and `span_id` of the current span (for a line written later, elsewhere);
    empty while tracing is off."""
    if STATE.tracer is None:
        return {}
    current = spans.current()
    if current is None:
        return {}
    return {"trace_id": current.trace_id, "span_id": current.span_id}


def logs_on() -> bool:
    """True while per-request JSON log lines are written."""
    return STATE.json_logs


def event(logger: logging.Logger, msg: str, **fields: Any) -> None:
    """One INFO line about the request being served (its id from `fields['request_id']` or
    :data:`REQUEST_ID`); returns at once while JSON logs are off. The line is made at once,
    while its facts are in the CPU's caches (rendered with its batch 100 ms later, it cost
    more), and written with its batch."""
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
    # The `mainsail` loggers' line, without a LogRecord (a third of the cost)
    handler.writer.write(
        handler.formatter.render(  # type: ignore[union-attr]
            time.time(), "info", logger.name, msg, fields, REQUEST_ID.get(), spans.current()
        )
    )


_TRACE_ID_FIELDS = frozenset({"trace_id", "span_id"})


class JsonFormatter(logging.Formatter):
    """One JSON object per record; values of the detected sensitive kinds are redacted."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service
        self._clock: tuple[int, str] = (-1, "")
        # an event's message is one of the code's own, a handful: each redacted once a mode
        self._messages: dict[tuple[str, str], str] = {}

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(getattr(record, "fields", None) or {})
        exc = self.formatException(record.exc_info) if record.exc_info else None
        level = record.levelname.lower()
        return self.render(
            record.created,
            level,
            record.name,
            record.getMessage(),
            fields,
            REQUEST_ID.get(),
            spans.current(),
            exc,
        )

    def render(
        self,
        created: float,
        level: str,
        name: str,
        msg: str,
        fields: dict[str, Any],
        rid: str | None,
        span: spans.Span | None,
        exc: str | None = None,
    ) -> str:
        """The line of one record (`fields` is consumed); `rid` and `span`: the request's id
        and span when it was made (ids of the span written while tracing is on)."""
        second = int(created)
        clock = self._clock
        if clock[0] != second:  # one strftime a second (a tuple: swapped whole, thread-safe)
            clock = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._clock = clock
        mode = STATE.redact
        message = self._messages.get((mode, msg))
        if message is None:
            message = redact(msg, mode)
            if len(self._messages) < 1024 and len(msg) <= 200:  # bounded, as messages are
                self._messages[mode, msg] = message
        out: dict[str, Any] = {
            "ts": f"{clock[1]}.{int((created - second) * 1000):03d}Z",
            "level": level,
            "service": self.service,
            "logger": name,
            "msg": message,
            "request_id": fields.pop("request_id", None) or rid,
        }
        if span is not None and STATE.tracer is not None:
            out["trace_id"], out["span_id"] = span.trace_id, span.span_id
        # The text that can carry a client's or a row's values is redacted; ids and times not
        # (a trace's ids passed on as fields: hex digits, made here or checked in a traceparent).
        for key, value in fields.items():
            if isinstance(value, str) and key not in _TRACE_ID_FIELDS:
                value = redact(value, mode)
            out[key] = value
        if exc is not None:
            out["exc"] = redact(exc, mode)
        return spans.encode_json(out)


class LineWriter:
    """Text lines to a stream, written in batches by a daemon thread (or a timer of the
    writing thread's asyncio loop) within `interval` seconds of the first one waiting (`flush`
    writes them at once; at exit too). The request path only appends its line to a deque; past
    `max_pending` lines the caller writes them itself."""

    def __init__(
        self,
        stream: IO[str],
        interval: float = LINE_FLUSH_S,
        max_pending: int = 4096,
    ):
        self.stream = stream
        batches: Batcher[str] = Batcher(
            self._write,
            interval=interval,
            limit=max_pending,
            name="mainsail-json-lines",
            overflow="flush",
            loop_ok=True,
        )
        self.write, self.flush = batches.add, batches.flush

    def _write(self, lines: list[str]) -> None:
        try:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed stream at exit
            pass


class JsonHandler(logging.Handler):
    """The `mainsail` loggers' JSON lines through a :class:`LineWriter`; a record at WARNING
    or above is written at once, with the lines before it."""

    def __init__(self, writer: LineWriter, service: str) -> None:
        super().__init__()
        self.writer = writer
        formatter = JsonFormatter(service)
        self.setFormatter(formatter)

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
