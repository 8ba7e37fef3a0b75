"""Structured logs and traces (`mainsail.core.telemetry`): nothing at all while off; JSON lines
with the request id and trace ids, redacted, and spans in files while on.

Each case runs in a fresh interpreter: `setup()` configures a process once, for good."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.encoders import with_and_without_orjson

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
import gc
telemetry.settle()  # nothing queued while off: the process is left to the collector
assert gc.get_freeze_count() == 0
print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
"""
    done = _python(code, {})
    assert done.stdout.strip() == "[]"
    assert done.stderr == ""


def test_with_json_lines_alone_the_loaded_process_is_frozen_too() -> None:
    # Queued lines reach the oldest generation as queued spans do: without the freeze, full
    # collections of the loaded heap (a third of the in-process benchmark's runs cost 2x).
    code = """
import gc
from mainsail.core import telemetry
telemetry.setup("mainsail-runtime")
telemetry.settle()
print(gc.get_freeze_count() > 0)
"""
    assert _python(code, {"MAINSAIL_JSON_LOGS": "1"}).stdout.split() == ["True"]


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
        with telemetry.stage("predict", rows=1):  # a stage: exported as the span's child
            pass
        telemetry.event(log, "request served", rows=1)
    telemetry.REQUEST_ID.reset(token)
try:
    with telemetry.span("validation"):
        raise ValueError("bad row")
except ValueError:
    pass
# Nothing written yet on the request path: the recorder's queue and the line writer's.
import glob, os
written = sum(os.path.getsize(f) for f in glob.glob(os.environ["MAINSAIL_TRACE_DIR"] + "/*"))
print(type(telemetry.STATE.tracer).__name__, written, gc.get_freeze_count() == 0)
telemetry.settle()
print(gc.get_freeze_count() > 0)
log.warning("a warning is written at once")
"""
    env = {"MAINSAIL_JSON_LOGS": "1", "MAINSAIL_TRACING": "file"}
    env["MAINSAIL_TRACE_DIR"] = str(tmp_path)
    env["OTEL_BSP_SCHEDULE_DELAY"] = "60000"  # only the exit can write them
    done = _python(code, env)
    assert done.stdout.split() == ["Recorder", "0", "True", "True"]
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [ln["request_id"] for ln in lines[:300]] == [f"r{i}" for i in range(300)]
    assert lines[-1]["msg"] == "a warning is written at once" and len(lines) == 301
    (spans_file,) = tmp_path.glob("mainsail-runtime-*.jsonl")
    spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
    assert len(spans) == 601
    failed = [s for s in spans if s["name"] == "validation"]
    assert failed[0]["status"] == "ERROR" and failed[0]["parent_id"] is None
    parents = {s["span_id"]: s for s in spans if s["name"] == "runtime.infer"}
    stages = [s for s in spans if s["name"] == "predict"]
    assert len(parents) == len(stages) == 300
    for stage in stages:  # each stage under its own request's span, with its request id
        parent = parents[stage["parent_id"]]
        assert stage["trace_id"] == parent["trace_id"]
        assert stage["attributes"] == {
            "rows": 1,
            "mainsail.request_id": parent["attributes"]["mainsail.request_id"],
        }
        assert parent["start_ns"] <= stage["start_ns"] <= stage["end_ns"] <= parent["end_ns"]
    # each line's trace and span ids are those of the request's span
    for line in lines[:300]:
        (parent,) = [
            p
            for p in parents.values()
            if p["attributes"]["mainsail.request_id"] == line["request_id"]
        ]
        assert (line["trace_id"], line["span_id"]) == (parent["trace_id"], parent["span_id"])


COMPACT = {"default": str, "separators": (",", ":"), "ensure_ascii": False}


def test_a_span_line_is_what_json_dumps_writes() -> None:
    from mainsail.core import spans

    finished: list[spans.Finished] = []
    recorder = spans.Recorder("svc", finished.extend)
    with (
        spans.Span(recorder, 'a "quoted" name', None, {"k": "é", "n": 2}),
        # entered inside the first: its parent is the current span
        spans.Span(recorder, "child", spans.current(), {"l": ["x", "y"], "f": 0.5}),
    ):
        pass
    recorder.flush()
    line = spans.SpanLines("svc")
    for s in finished:
        name, trace_id, span_id, parent, start, end, status, _, attributes, _, _, _ = s
        expected = {
            "name": name,
            "service": "svc",
            "trace_id": trace_id,
            "span_id": span_id,
            "parent_id": parent,
            "start_ns": start,
            "end_ns": end,
            "status": status,
            "attributes": attributes,
        }
        assert line(s) == (json.dumps(expected, **COMPACT) + "\n").encode()
    child, root = finished
    assert child[3] == root[2] and child[1] == root[1]  # parent and trace
    assert len(root[1]) == 32 and len(root[2]) == 16 and root[3] is None
    assert root[4] <= child[4] <= child[5] <= root[5]  # start and end nest


def test_span_and_log_lines_are_the_same_json_with_orjson_and_without() -> None:
    # orjson is pinned in every runtime env; a process without it, or a value orjson refuses
    # (an integer beyond 64 bits, a lone surrogate), gets json's encoder: the same values.
    code = """
import json, pathlib, numpy
from mainsail.core import spans
values = [
    {"text": "é \\\\ \\"q\\" \\n", "keys": {1: "int key"}, "float": 0.1,
     "np": numpy.float64(1.5), "other": pathlib.Path("/x"), "list": [1, None, True]},
    {"big": 2**70},
    {"lone": "\\ud800"},
]
print(json.dumps({
    "orjson": spans.orjson is not None,
    "texts": [spans.encode_json(v) for v in values],
    "lines": [spans.encode_json_line(v).decode() for v in values],
}))
"""
    runs = with_and_without_orjson(code)
    assert runs["with"]["orjson"] and not runs["without"]["orjson"]
    with_values = [json.loads(t) for t in runs["with"]["texts"]]
    assert with_values == [json.loads(t) for t in runs["without"]["texts"]]
    for run in runs.values():  # a line is its text and a newline
        assert [json.loads(line) for line in run["lines"]] == with_values
        assert all(line.endswith("\n") and line.count("\n") == 1 for line in run["lines"])
    assert with_values[0] == {
        "text": 'é \\ "q" \n',
        "keys": {"1": "int key"},
        "float": 0.1,
        "np": 1.5,
        "other": "/x",
        "list": [1, None, True],
    }
    assert with_values[1:] == [{"big": 2**70}, {"lone": "\ud800"}]
    # compact both ways; orjson writes UTF-8, json's encoder escapes (ASCII: safe for any text)
    assert runs["with"]["texts"][0].startswith('{"text":"é ')
    assert runs["without"]["texts"][0].startswith('{"text":"\\u00e9 ')


def test_a_stage_is_written_as_a_child_span_with_its_parents_request_id() -> None:
    from mainsail.core import spans

    finished: list[spans.Finished] = []
    recorder = spans.Recorder("svc", finished.extend, redact=lambda text: text.upper())
    with spans.Span(recorder, "runtime.infer", None, {"mainsail.request_id": "r-1"}) as span:
        with spans.Stage(span, "validation", {}):
            pass
        try:
            with spans.Stage(span, 'predict "x"', {"rows": 2}):
                raise ValueError("bad row")
        except ValueError:
            pass
    recorder.flush()
    (root,) = finished
    text = spans.SpanLines("svc")(root)
    lines = [json.loads(line) for line in text.splitlines()]
    # what json.dumps writes
    assert text == "".join(json.dumps(line, **COMPACT) + "\n" for line in lines).encode()
    parent, validation, predict = lines
    assert [ln["name"] for ln in lines] == ["runtime.infer", "validation", 'predict "x"']
    for child in (validation, predict):
        assert (child["trace_id"], child["parent_id"]) == (parent["trace_id"], parent["span_id"])
        assert len(child["span_id"]) == 16 and child["span_id"] != parent["span_id"]
        assert parent["start_ns"] <= child["start_ns"] <= child["end_ns"] <= parent["end_ns"]
    assert validation["attributes"] == {"mainsail.request_id": "r-1"}
    assert predict["attributes"] == {"rows": 2, "mainsail.request_id": "r-1"}
    assert (validation["status"], predict["status"]) == ("UNSET", "ERROR")
    # for the SDK's exporters: the same children, with the redacted exception event
    expanded = spans.expand(finished)
    assert [s[0] for s in expanded] == ["runtime.infer", "validation", 'predict "x"']
    assert expanded[2][7] == "VALUEERROR: BAD ROW"
    assert expanded[2][9][0][2]["exception.message"] == "BAD ROW"


def test_root_sampling_decides_as_the_sdks_trace_id_ratio_sampler() -> None:
    # Same trace id, same decision as OpenTelemetry's TraceIdRatioBased: a trace sampled by one
    # process is sampled by every process that samples at the same ratio.
    from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased

    from mainsail.core import spans

    recorder = spans.Recorder("svc", lambda batch: None, ratio=0.25)
    sdk = TraceIdRatioBased(0.25)
    decisions = []
    for _ in range(2000):
        root = spans.Span(recorder, "r", None, {})
        wanted = sdk.should_sample(None, int(root.trace_id, 16), "r").decision
        assert root.sampled == (wanted == Decision.RECORD_AND_SAMPLE)
        decisions.append(root.sampled)
    assert 0.2 < sum(decisions) / len(decisions) < 0.3
    # A remote parent's decision is kept whatever the ratio (parent-based).
    for flags, sampled in (("01", True), ("00", False)):
        parent = spans.parse_traceparent(f"00-{'a' * 32}-{'b' * 16}-{flags}")
        assert spans.Span(recorder, "c", parent, {}).sampled is sampled
    for bad in ("", "00-zz", f"00-{'0' * 32}-{'b' * 16}-01", f"ff-{'a' * 32}-{'b' * 16}-01"):
        assert spans.parse_traceparent(bad) is None


def test_spans_reach_an_otlp_receiver_through_the_sdks_exporter(tmp_path: Path) -> None:
    # A real OTLP/gRPC receiver (opentelemetry-proto's TraceService) in the serving env, where
    # the exporter is installed; the spans go through the SDK's OTLPSpanExporter.
    serving = Path(__file__).resolve().parents[2] / ".venv" / "serving" / "bin" / "python"
    code = """
from concurrent import futures
import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as rpc
got = []
class Receiver(rpc.TraceServiceServicer):
    def Export(self, request, context):
        got.append(request)
        return pb.ExportTraceServiceResponse()
server = grpc.server(futures.ThreadPoolExecutor(2))
rpc.add_TraceServiceServicer_to_server(Receiver(), server)
port = server.add_insecure_port("127.0.0.1:0")
server.start()
import os
os.environ.update({"MAINSAIL_TRACING": "otlp",
                   "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"})
from mainsail.core import telemetry
telemetry.setup("mainsail-runtime")
token = telemetry.REQUEST_ID.set("req-9")
parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
with telemetry.span("runtime.infer", {"traceparent": parent}, model="churn"):
    try:
        with telemetry.stage("predict", rows=1):
            raise ValueError("bad row of jane@example.org")
    except ValueError:
        pass
telemetry.shutdown()
(request,) = got
(rs,) = request.resource_spans
print({a.key: a.value.string_value for a in rs.resource.attributes}["service.name"])
for s in rs.scope_spans[0].spans:
    attrs = {a.key: a.value for a in s.attributes}
    rid = attrs["mainsail.request_id"].string_value
    print(s.name, s.trace_id.hex(), s.parent_span_id.hex(), rid,
          s.status.code, s.span_id.hex(), s.status.message or "-", [e.name for e in s.events])
server.stop(0)
"""
    done = subprocess.run(
        [str(serving), "-c", code],
        env={**os.environ, "PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    resource, root, predict = done.stdout.splitlines()
    assert resource == "mainsail-runtime"
    trace = "0af7651916cd43dd8448eb211c80319c"
    assert root.split()[:5] == ["runtime.infer", trace, "b7ad6b7169203331", "req-9", "0"]
    root_id = root.split()[5]
    name, trace_id, parent_id, rid, code_, span_id, *rest = predict.split(maxsplit=6)
    assert (name, trace_id, rid, code_) == ("predict", trace, "req-9", "2")  # 2: ERROR
    assert "ValueError: bad row of <email:" in rest[0] and "['exception']" in rest[0]
    assert "jane@" not in done.stdout  # an exception's text is redacted before it leaves
    assert parent_id == root_id != span_id  # the stage is the runtime.infer span's child


def test_a_sampled_out_request_makes_no_child_spans(tmp_path: Path) -> None:
    code = """
from mainsail.core import telemetry
telemetry.setup("mainsail-runtime")
out = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"  # the caller did not sample
kept = "00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
with telemetry.span("runtime.infer", {"traceparent": out}) as current:
    assert not current.is_recording()
    assert telemetry.span("validation") is telemetry.span("predict")  # the shared no-op
    assert telemetry.stage("validation") is telemetry.span("predict")
    assert telemetry.traceparent().endswith("-00")  # the decision still travels downstream
with telemetry.span("runtime.infer", {"traceparent": kept}):
    with telemetry.stage("predict") as child:
        assert child.is_recording()
assert telemetry.stage("outside any span") is telemetry.stage("validation")  # no-ops
"""
    env = {"MAINSAIL_TRACING": "file", "MAINSAIL_TRACE_DIR": str(tmp_path)}
    _python(code, {**env, "MAINSAIL_TRACE_SAMPLE": "0.5"})
    (spans_file,) = tmp_path.glob("mainsail-runtime-*.jsonl")
    names = [json.loads(line)["name"] for line in spans_file.read_text().splitlines()]
    assert sorted(names) == ["predict", "runtime.infer"]


def test_on_an_event_loop_batches_are_flushed_by_a_timer_of_the_loop_not_a_thread() -> None:
    # A thread in the serving process costs more than its work (GIL wake-ups); a quick local
    # sink runs between the loop's requests instead. A slow sink (loop_ok False) keeps a thread.
    import asyncio

    from mainsail.core.batching import Batcher

    got: list[list[int]] = []
    quick = Batcher(got.append, interval=0.01, limit=100, name="t", overflow="drop", loop_ok=True)
    slow = Batcher(got.append, interval=0.01, limit=100, name="t", overflow="drop")

    async def serve() -> None:
        for i in range(5):
            quick.add(i)
        slow.add(99)
        await asyncio.sleep(0.1)

    asyncio.run(serve())
    assert quick._thread is None and slow._thread is not None
    assert sorted(got) == [[0, 1, 2, 3, 4], [99]]
    quick.add(5)  # no loop running any more: the thread takes over
    quick.flush()
    assert got[-1] == [5]


def test_the_router_freezes_its_loaded_heap_even_with_telemetry_off(tmp_path: Path) -> None:
    # Under an open-loop load, the router's full collections of its loaded heap took 10-40 ms
    # each, in the tail of its added p99; it loads no model, so nothing is ever unloaded.
    settings = tmp_path / "router.json"
    variant = {"role": "champion", "url": "http://127.0.0.1:9", "model": "churn", "version": "1"}
    settings.write_text(json.dumps({"model_name": "churn", "variants": [variant]}))
    code = f"""
import gc, sys
import mainsail.serving.router.server as server
server.run = lambda router, host, port: print(gc.get_freeze_count() > 0)
from mainsail.serving.router.__main__ import main
sys.exit(main(["--settings", {str(settings)!r}]))
"""
    assert _python(code, {}).stdout.split() == ["True"]


def test_the_router_hands_the_gil_to_its_loop_sooner_than_pythons_default(
    tmp_path: Path,
) -> None:
    # The feedback writer's thread holds the GIL in bursts of Python (SQLAlchemy's insert); with
    # the default 5 ms switch interval a request arriving meanwhile waited up to 5 ms.
    settings = tmp_path / "router.json"
    variant = {"role": "champion", "url": "http://127.0.0.1:9", "model": "churn", "version": "1"}
    settings.write_text(json.dumps({"model_name": "churn", "variants": [variant]}))
    code = f"""
import sys
import mainsail.serving.router.server as server
server.run = lambda router, host, port: print(sys.getswitchinterval())
from mainsail.serving.router.__main__ import main
sys.exit(main(["--settings", {str(settings)!r}]))
"""
    assert float(_python(code, {}).stdout.split()[0]) <= 0.001
