"""Structured logs and traces (`mainsail.core.telemetry`): nothing at all while off; JSON lines
with the request id and trace ids, redacted, and spans in files while on.

Each case runs in a fresh interpreter: `setup()` configures a process once, for good."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MAINSAIL_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "PYTHONPATH": str(SRC), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_off_by_default_imports_no_opentelemetry_and_writes_nothing() -> None:
    code = """
import logging, sys
import mainsail.serving.router.app, mainsail.serving.router.feedback, mainsail.drift.client
from mainsail.core import telemetry
telemetry.setup("mainsail-router")
assert telemetry.span("router.infer", model="m") is telemetry.span("predict")  # one no-op
with telemetry.span("predict") as current:
    assert current is None
telemetry.event(logging.getLogger("mainsail.router"), "request routed", request_id="r1")
assert telemetry.traceparent() is None and telemetry.current_ids() == {}
print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
"""
    done = _python(code, {})
    assert done.stdout.strip() == "[]"
    assert done.stderr == ""


def test_json_lines_carry_request_and_trace_ids_and_hide_personal_data(tmp_path: Path) -> None:
    code = """
import logging
from mainsail.core import telemetry
telemetry.setup("mainsail-router")
log = logging.getLogger("mainsail.router")
token = telemetry.REQUEST_ID.set("req-7")
with telemetry.span("router.infer", model="churn"):
    with telemetry.span("predict"):
        telemetry.event(log, "request routed", status=400, error="bad input jane@example.org")
        print(telemetry.traceparent())
telemetry.REQUEST_ID.reset(token)
log.warning("card 4111 1111 1111 1111 refused")
"""
    env = {"MAINSAIL_JSON_LOGS": "1", "MAINSAIL_TRACING": "file"}
    env["MAINSAIL_TRACE_DIR"] = str(tmp_path)
    env["MAINSAIL_REDACT"] = "drop"
    done = _python(code, env)
    parent = done.stdout.strip()
    routed, warning = (json.loads(line) for line in done.stderr.splitlines())
    assert routed["request_id"] == "req-7" and routed["service"] == "mainsail-router"
    assert routed["error"] == "bad input <email>" and routed["status"] == 400
    assert parent.startswith(f"00-{routed['trace_id']}-{routed['span_id']}-")  # W3C
    assert warning["msg"] == "card <card> refused" and warning["request_id"] is None
    (spans_file,) = tmp_path.glob("mainsail-router-*.jsonl")
    spans = {s["name"]: s for s in map(json.loads, spans_file.read_text().splitlines())}
    assert set(spans) == {"router.infer", "predict"}
    assert spans["predict"]["parent_id"] == spans["router.infer"]["span_id"]
    assert {s["attributes"]["mainsail.request_id"] for s in spans.values()} == {"req-7"}
    assert spans["router.infer"]["trace_id"] == routed["trace_id"]
    assert spans["router.infer"]["parent_id"] is None


def test_a_child_process_continues_the_trace_it_is_handed(tmp_path: Path) -> None:
    code = """
from mainsail.core import telemetry
telemetry.setup("mainsail-runtime")
parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
with telemetry.span("runtime.infer", {"traceparent": parent, "x-request-id": "r"}):
    print(telemetry.current_ids()["trace_id"])
"""
    env = {"MAINSAIL_TRACING": "file", "MAINSAIL_TRACE_DIR": str(tmp_path)}
    done = _python(code, env)
    assert done.stdout.strip() == "0af7651916cd43dd8448eb211c80319c"


def test_the_stack_hands_the_settings_to_the_serving_path(tmp_path: Path) -> None:
    from mainsail.config import parse_config
    from mainsail.stack.providers import StackContext, serving_path_env

    raw = {"name": "t", "data": {"path": "d.parquet", "target": "y"}}
    ctx = StackContext(parse_config(raw, source="<test>"), tmp_path)
    assert serving_path_env(ctx) == {"MAINSAIL_REDACT": "hash"}  # off: nothing but redaction
    raw["observability"] = {"json_logs": True, "tracing": True, "exporter": "otlp"}
    raw["privacy"] = {"redact": "drop"}
    ctx = StackContext(parse_config(raw, source="<test>"), tmp_path)
    assert serving_path_env(ctx) == {
        "MAINSAIL_REDACT": "drop",
        "MAINSAIL_JSON_LOGS": "1",
        "MAINSAIL_TRACING": "otlp",
        "MAINSAIL_TRACE_DIR": str(tmp_path / "traces"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
    }


def test_spans_and_lines_leave_the_request_path_and_are_all_written_at_exit(
    tmp_path: Path,
) -> None:
    code = """
import gc, logging, time
from mainsail.core import telemetry
telemetry.setup("mainsail-runtime")
log = logging.getLogger("mainsail.runtime")
for i in range(300):
    token = telemetry.REQUEST_ID.set(f"r{i}")
    with telemetry.span("runtime.infer", model="m"):
        with telemetry.span("predict", rows=1):
            pass
        telemetry.event(log, "request served", rows=1)
    telemetry.REQUEST_ID.reset(token)
try:
    with telemetry.span("validation"):
        raise ValueError("bad row")
except ValueError:
    pass
# Nothing written yet on the request path: a batch span processor and a line writer.
processors = telemetry.STATE.provider._active_span_processor._span_processors
print(type(processors[0]).__name__, gc.get_freeze_count() == 0)
telemetry.settle()
print(gc.get_freeze_count() > 0)
log.warning("a warning is written at once")
"""
    env = {"MAINSAIL_JSON_LOGS": "1", "MAINSAIL_TRACING": "file"}
    env["MAINSAIL_TRACE_DIR"] = str(tmp_path)
    env["OTEL_BSP_SCHEDULE_DELAY"] = "60000"  # only the exit can write them
    done = _python(code, env)
    assert done.stdout.split() == ["BatchSpanProcessor", "True", "True"]
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [ln["request_id"] for ln in lines[:300]] == [f"r{i}" for i in range(300)]
    assert lines[-1]["msg"] == "a warning is written at once" and len(lines) == 301
    (spans_file,) = tmp_path.glob("mainsail-runtime-*.jsonl")
    spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
    assert len(spans) == 601
    failed = [s for s in spans if s["name"] == "validation"]
    assert failed[0]["status"] == "ERROR" and failed[0]["parent_id"] is None


def test_a_span_line_is_what_json_dumps_writes() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from mainsail.core.telemetry import _span_line

    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    with (
        tracer.start_as_current_span('a "quoted" name', attributes={"k": "é", "n": 2}),
        tracer.start_as_current_span("child", attributes={"l": ["x", "y"]}),
    ):
        pass
    for s in memory.get_finished_spans():
        ctx, parent = s.context, s.parent
        expected = {
            "name": s.name,
            "service": "svc",
            "trace_id": f"{ctx.trace_id:032x}",
            "span_id": f"{ctx.span_id:016x}",
            "parent_id": f"{parent.span_id:016x}" if parent is not None else None,
            "start_ns": s.start_time,
            "end_ns": s.end_time,
            "status": s.status.status_code.name,
            "attributes": dict(s.attributes or {}),
        }
        assert _span_line(s, "svc") == json.dumps(expected, default=str) + "\n"


def test_a_sampled_out_request_makes_no_child_spans(tmp_path: Path) -> None:
    code = """
from mainsail.core import telemetry
telemetry.setup("mainsail-runtime")
out = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"  # the caller did not sample
kept = "00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
with telemetry.span("runtime.infer", {"traceparent": out}) as current:
    assert not current.is_recording()
    assert telemetry.span("validation") is telemetry.span("predict")  # the shared no-op
    assert telemetry.traceparent().endswith("-00")  # the decision still travels downstream
with telemetry.span("runtime.infer", {"traceparent": kept}):
    with telemetry.span("predict") as child:
        assert child.is_recording()
"""
    env = {"MAINSAIL_TRACING": "file", "MAINSAIL_TRACE_DIR": str(tmp_path)}
    _python(code, {**env, "MAINSAIL_TRACE_SAMPLE": "0.5"})
    (spans_file,) = tmp_path.glob("mainsail-runtime-*.jsonl")
    names = [json.loads(line)["name"] for line in spans_file.read_text().splitlines()]
    assert sorted(names) == ["predict", "runtime.infer"]
