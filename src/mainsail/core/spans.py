"""A lean recorder of OpenTelemetry spans for the serving path (standard library; orjson
where the env has it).

The OpenTelemetry SDK's span costs about 18 µs of CPU to start, end and export on this kind of
machine, against a served one-row request of under 500 µs: four spans per request cost 15% of a
runtime's throughput. The request path here only needs what the OTel data model records (W3C
ids, parent, name, start and end, attributes, status, the exception event), so
:class:`Recorder` records exactly that into a bounded deque, in about 2 µs a span, and the
finished spans are exported in batches, by a timer of the recording thread's asyncio loop where
one runs and the export is a quick local write (``file``), else by a daemon thread:

* ``file``: one JSON object per line, a file per process (no SDK needed, so the drift env
  records spans too), each span's lines made as it ends (see :class:`Recorder`);
* ``otlp`` and ``console``: each batch is turned into the SDK's ``ReadableSpan`` objects and
  handed to the SDK's own ``OTLPSpanExporter`` / ``ConsoleSpanExporter`` (the wire format a
  collector sees is the SDK's).

A step of a span's own work (validation, predict, ...) can be a :class:`Stage`: it becomes
a child span on export, with the same data a :class:`Span` would have, but on the request path
it is two clock reads and a tuple kept by its parent (no ids, no context switch, no queueing).
A stage is not made current, so nothing inside it can be its child or pass it downstream: work
that calls another service (and sends it a `traceparent`) is a :class:`Span`.

Sampling is the SDK's ``ParentBased(TraceIdRatioBased(ratio))``: a remote or local parent's
decision is kept; a root is sampled when the low 64 bits of its trace id fall below
``ratio * 2**64``. Context lives in a :class:`contextvars.ContextVar` of its own (per asyncio
task, per thread), not in OTel's context: nothing else on the serving path reads OTel's.
"""

from __future__ import annotations

import atexit
import contextvars
import os
import random
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from mainsail.core.batching import Batcher
from mainsail.core.jsoncodec import orjson, stdlib_encoder

_TRACE_ID_LIMIT = (1 << 64) - 1
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def _encoders() -> tuple[Callable[[Any], str], Callable[[Any], bytes]]:
    stdlib = stdlib_encoder(str, allow_nan=True)
    if orjson is None:
        return stdlib, lambda value: (stdlib(value) + "\n").encode()
    dumps = orjson.dumps
    option = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
    line_option = option | orjson.OPT_APPEND_NEWLINE

    def encode(value: Any) -> str:
        try:
            return dumps(value, default=str, option=option).decode()
        except TypeError:  # what orjson refuses and json writes: an integer beyond 64 bits
            return stdlib(value)

    def encode_line(value: Any) -> bytes:
        try:
            return dumps(value, default=str, option=line_option)
        except TypeError:
            return (stdlib(value) + "\n").encode()

    return encode, encode_line


encode_json, encode_json_line = _encoders()
"""`encode_json`: compact JSON of `value` (no spaces), what is not JSON as its `str`; values
must hold no cycles. `encode_json_line`: the same as UTF-8 bytes with a newline. orjson where
the env has it (a telemetry line in a quarter of the time: this runs for every span and log
line of the serving path), json's C encoder otherwise: the same text except that orjson writes
a non-finite float as `null` (json: `NaN`, which is not JSON)."""

_getrandbits = random.getrandbits  # what the SDK's RandomIdGenerator uses
_time_ns = time.time_ns


class Remote:
    """A parent span context received from another process (`traceparent`)."""

    __slots__ = ("sampled", "span_id", "trace_id")

    def __init__(self, trace_id: str, span_id: str, sampled: bool) -> None:
        self.trace_id, self.span_id, self.sampled = trace_id, span_id, sampled


def parse_traceparent(value: str | None) -> Remote | None:
    """The parent in a W3C `traceparent` header, or None when it is absent or invalid (then a
    new trace starts, as OTel's propagator does)."""
    if not value:
        return None
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None:
        return None
    version, trace_id, span_id, flags = match.groups()
    if version == "ff" or trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return Remote(trace_id, span_id, bool(int(flags, 16) & 1))


_CURRENT: contextvars.ContextVar[Span | None] = contextvars.ContextVar(
    "mainsail_span", default=None
)


Finished = tuple[
    str,  # name
    str,  # trace id (32 hex digits)
    str,  # span id (16 hex digits)
    "str | None",  # parent span id
    int,  # start (ns since the epoch)
    int,  # end
    str,  # status: UNSET, OK or ERROR
    "str | None",  # status description
    dict[str, Any],  # attributes
    "list[tuple[str, int, dict[str, Any]]] | None",  # events: (name, time, attributes)
    bool,  # the parent is remote (came in a `traceparent`)
    "list[StageRecord] | None",  # its stages, exported as its children (see `expand`)
]
"""A finished span as queued for export: a plain tuple of strings, numbers, its attributes'
dict and its stages (the span object itself is freed when its block ends)."""


StageRecord = tuple[
    str,  # name
    int,  # start (ns since the epoch)
    int,  # end
    str,  # status: UNSET or ERROR
    "str | None",  # status description
    dict[str, Any],  # attributes
    "list[tuple[str, int, dict[str, Any]]] | None",  # events
]
"""A finished stage, kept by its span until the span is exported."""


def current() -> Span | None:
    """The span current in this task or thread."""
    return _CURRENT.get()


class Span:
    """One span, made current for a `with` block: the exception that escapes the block is
    recorded (status ERROR, an `exception` event), and the finished span is queued for export
    when it is sampled. An unsampled span only carries the ids and the decision downstream."""

    __slots__ = (
        "attributes",
        "end_ns",
        "events",
        "name",
        "parent",
        "recorder",
        "remote_parent",
        "sampled",
        "span_id",
        "stages",
        "start_ns",
        "status",
        "status_description",
        "token",
        "trace_id",
    )
    trace_id: str
    span_id: str
    sampled: bool

    def __init__(
        self,
        recorder: Recorder,
        name: str,
        parent: Span | Remote | None,
        attributes: dict[str, Any],
    ) -> None:
        self.recorder, self.name, self.attributes = recorder, name, attributes
        if parent is None:
            trace = _getrandbits(128) or 1
            self.trace_id = f"{trace:032x}"
            self.sampled = recorder.bound > _TRACE_ID_LIMIT or (
                trace & _TRACE_ID_LIMIT < recorder.bound
            )
            self.parent = None
        else:
            self.trace_id, self.sampled = parent.trace_id, parent.sampled
            self.parent = parent.span_id
        self.remote_parent = type(parent) is Remote
        self.span_id = f"{_getrandbits(64) or 1:016x}"
        self.status = "UNSET"
        self.status_description: str | None = None
        self.events: list[tuple[str, int, dict[str, Any]]] | None = None
        self.stages: list[StageRecord] | None = None
        self.end_ns = 0

    def __enter__(self) -> Span:
        self.token = _CURRENT.set(self)
        self.start_ns = _time_ns()
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        self.end_ns = _time_ns()
        _CURRENT.reset(self.token)
        if not self.sampled:
            return
        if isinstance(exc, Exception):
            self.events = [*(self.events or []), exception_event(exc, self.recorder.redact)]
            self.set_status("ERROR", self.recorder.redact(f"{type(exc).__name__}: {exc}"))
        self.recorder.record(
            (
                self.name,
                self.trace_id,
                self.span_id,
                self.parent,
                self.start_ns,
                self.end_ns,
                self.status,
                self.status_description,
                self.attributes,
                self.events,
                self.remote_parent,
                self.stages,
            )
        )

    # -- the parts of opentelemetry.trace.Span the serving path uses --------------------

    def is_recording(self) -> bool:
        return self.sampled

    def set_attribute(self, key: str, value: Any) -> None:
        if self.sampled:
            self.attributes[key] = value

    def set_status(self, status: str, description: str | None = None) -> None:
        self.status, self.status_description = status, description

    def record_exception(self, exc: BaseException) -> None:
        self.events = [*(self.events or []), exception_event(exc, self.recorder.redact)]

    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"


def exception_event(exc: BaseException, redact: Callable[[str], str]) -> tuple[str, int, dict]:
    """OTel's `exception` event (semantic conventions: type, message, stacktrace), its text
    passed through `redact`."""
    stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    event = {
        "exception.type": type(exc).__name__,
        "exception.message": redact(str(exc)),
        "exception.stacktrace": redact(stack),
        "exception.escaped": "False",
    }
    return ("exception", _time_ns(), event)


class Stage:
    """A step of a sampled span's own work, timed by a `with` block and kept by the span as a
    :data:`StageRecord`; exported as the span's child (its own span id, the span's request id),
    with the exception that escapes the block recorded as a span's would be. It is not made
    current (see the module's docstring); a stage that ends after its span is not exported."""

    __slots__ = ("attributes", "name", "span", "start_ns")

    def __init__(self, span: Span, name: str, attributes: dict[str, Any]) -> None:
        self.span, self.name, self.attributes = span, name, attributes

    def __enter__(self) -> Stage:
        self.start_ns = _time_ns()
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        end = _time_ns()
        if isinstance(exc, Exception):
            redact = self.span.recorder.redact
            done: StageRecord = (
                self.name,
                self.start_ns,
                end,
                "ERROR",
                redact(f"{type(exc).__name__}: {exc}"),
                self.attributes,
                [exception_event(exc, redact)],
            )
        else:
            done = (self.name, self.start_ns, end, "UNSET", None, self.attributes, None)
        stages = self.span.stages
        if stages is None:
            self.span.stages = [done]
        else:
            stages.append(done)

    def is_recording(self) -> bool:
        return True

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value


_REQUEST_ID_KEY = "mainsail.request_id"


def stage_spans(span: Finished) -> Iterator[Finished]:
    """The spans `span`'s stages are exported as: each a child of `span`, with a span id made
    here and `span`'s request id (`mainsail.request_id`)."""
    stages = span[11]
    if stages is None:
        return
    trace_id, parent, rid = span[1], span[2], span[8].get(_REQUEST_ID_KEY)
    for name, start, end, status, why, attributes, events in stages:
        if rid is not None:
            attributes[_REQUEST_ID_KEY] = rid
        span_id = f"{_getrandbits(64) or 1:016x}"
        yield (
            name,
            trace_id,
            span_id,
            parent,
            start,
            end,
            status,
            why,
            attributes,
            events,
            False,
            None,
        )


def expand(batch: list[Finished]) -> list[Finished]:
    """`batch` with each span's stages as spans of their own after it (:func:`stage_spans`)."""
    out: list[Finished] = []
    for span in batch:
        out.append(span)
        if span[11] is not None:
            out.extend(stage_spans(span))
    return out


class SpanLines:
    """Finished spans of one service as JSON lines (keys `name`, `service`, `trace_id`,
    `span_id`, `parent_id`, `start_ns`, `end_ns`, `status`, `attributes`; compact, as
    :data:`encode_json` writes), a span's stages after it as its children
    (:func:`stage_spans`). This runs for every span."""

    def __init__(self, service: str) -> None:
        self.service = service

    def line(self, span: Finished) -> bytes:
        """`span` alone (without its stages) as one line."""
        name, trace_id, span_id, parent, start, end, status, _, attributes, _, _, _ = span
        return encode_json_line(
            {
                "name": name,
                "service": self.service,
                "trace_id": trace_id,
                "span_id": span_id,
                "parent_id": parent,
                "start_ns": start,
                "end_ns": end,
                "status": status,
                "attributes": attributes,
            }
        )

    def __call__(self, span: Finished) -> bytes:
        if span[11] is None:
            return self.line(span)
        return b"".join([self.line(span), *map(self.line, stage_spans(span))])


class Recorder:
    """Finished spans of this process, exported in batches by a daemon thread within
    `interval_ms` of the first one waiting (:class:`~mainsail.core.batching.Batcher`); beyond
    `max_queue` waiting a span is dropped and counted (:attr:`dropped`); everything waiting is
    exported at exit. `redact` is applied to the text an exception brings into a span (its
    message, its stack). `loop_ok`: the export is a quick local write, which may run as a
    timer of the recording thread's asyncio loop instead of waking a thread. `encode`: each
    finished span is turned into what `export` takes as it is recorded (the `file` exporter's
    lines): while its data is still in the CPU's caches, where a batch's 200 ms later is not;
    measured on the serving path, a span line cost 0.7 µs made at once, 2-5 µs in the batch."""

    def __init__(
        self,
        service: str,
        export: Callable[[list[Any]], None],
        *,
        ratio: float = 1.0,
        interval_ms: float = 200,
        max_queue: int = 8192,
        close: Callable[[], None] | None = None,
        redact: Callable[[str], str] = str,
        loop_ok: bool = False,
        encode: Callable[[Finished], Any] | None = None,
    ) -> None:
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"sample ratio {ratio!r}: expected a share in (0, 1]")
        self.service, self.export, self.close, self.redact = service, export, close, redact
        self.bound = round(ratio * (_TRACE_ID_LIMIT + 1))
        self._batches: Batcher[Any] = Batcher(
            self._export,
            interval=interval_ms / 1000,
            limit=max_queue,
            name="mainsail-spans",
            overflow="drop",
            loop_ok=loop_ok,
        )
        self.record: Callable[[Finished], None] = self._batches.add
        if encode is not None:
            add = self._batches.add

            def record(span: Finished) -> None:
                add(encode(span))

            self.record = record
        self.flush = self._batches.flush
        atexit.register(self.shutdown)

    @property
    def dropped(self) -> int:
        """Spans dropped because `max_queue` were waiting."""
        return self._batches.dropped

    def _export(self, batch: list[Any]) -> None:
        try:
            self.export(batch)
        except Exception as err:  # an exporter's failure never reaches a request
            print(f"mainsail spans: export of {len(batch)} failed: {err}", file=sys.stderr)

    def shutdown(self) -> None:
        self.flush()
        if self.close is not None and os.getpid() == self._batches.pid:
            close, self.close = self.close, None
            close()


Exporter = tuple[
    Callable[[list[Any]], None], Callable[[], None], "Callable[[Finished], Any] | None"
]
"""A batch exporter, its closer and the encoder of a span as recorded (see :class:`Recorder`)."""


def file_exporter(path: Path, service: str) -> Exporter:
    """The `file` exporter: each span's JSON lines made as it is recorded (:class:`SpanLines`),
    each batch of them in one write; and its closer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    out = path.open("ab")

    def export(batch: list[bytes]) -> None:
        out.write(b"".join(batch))
        out.flush()

    return export, out.close, SpanLines(service)


def sdk_exporter(exporter: Any, service: str) -> Exporter:
    """An OpenTelemetry SDK exporter (OTLP, console) fed with the SDK's `ReadableSpan`s made
    from each batch, off the request path."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

    resource = Resource.create({"service.name": service})
    scope = InstrumentationScope("mainsail")
    sampled = TraceFlags(TraceFlags.SAMPLED)
    codes = {"UNSET": StatusCode.UNSET, "OK": StatusCode.OK, "ERROR": StatusCode.ERROR}

    def readable(s: Finished) -> Any:
        name, trace_hex, span_hex, parent_hex, start, end, status, why, attrs, events, remote, _ = s
        trace_id = int(trace_hex, 16)
        parent = None
        if parent_hex is not None:
            parent = SpanContext(trace_id, int(parent_hex, 16), remote, sampled)
        return ReadableSpan(
            name=name,
            context=SpanContext(trace_id, int(span_hex, 16), False, sampled),
            parent=parent,
            resource=resource,
            attributes=attrs,
            events=[Event(n, a, t) for n, t, a in events or ()],
            kind=SpanKind.INTERNAL,
            status=Status(codes[status], why),
            start_time=start,
            end_time=end,
            instrumentation_scope=scope,
        )

    def export(batch: list[Finished]) -> None:
        batch = expand(batch)
        for start in range(0, len(batch), 512):  # the SDK's default export batch size
            exporter.export([readable(s) for s in batch[start : start + 512]])

    return export, exporter.shutdown, None


def recorder_for(
    service: str,
    kind: str,
    environ: Mapping[str, str],
    *,
    ratio: float,
    interval_ms: float,
    max_queue: int,
    trace_dir: Path,
    redact: Callable[[str], str] = str,
) -> Recorder:
    """The recorder of exporter `kind` (`file`, `otlp`, `console`)."""
    if kind == "file":
        export, close, encode = file_exporter(trace_dir / f"{service}-{os.getpid()}.jsonl", service)
    elif kind == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError as err:
            raise RuntimeError(
                f"tracing exporter otlp needs opentelemetry-exporter-otlp-proto-grpc in this "
                f"environment (the pipeline and serving envs have it); use `file` here: {err}"
            ) from None
        endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
        export, close, encode = sdk_exporter(OTLPSpanExporter(endpoint=endpoint), service)
    elif kind == "console":
        try:
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter
        except ImportError as err:
            raise RuntimeError(
                f"tracing exporter console needs the OpenTelemetry SDK (opentelemetry-sdk) in "
                f"this environment; use `file` here: {err}"
            ) from None
        export, close, encode = sdk_exporter(ConsoleSpanExporter(out=sys.stderr), service)
    else:
        raise RuntimeError(f"tracing exporter {kind!r}: expected otlp, file or console")
    return Recorder(
        service,
        export,
        ratio=ratio,
        interval_ms=interval_ms,
        max_queue=max_queue,
        close=close,
        redact=redact,
        loop_ok=kind == "file",  # a network exporter (otlp) may block: its own thread
        encode=encode,
    )
