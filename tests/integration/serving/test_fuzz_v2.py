"""An independent fuzz suite: malformed V2 requests against MLServer-with-runtime and the router.

Hypothesis generates the requests (derandomized: the same ones on every run) in ten
categories: bad request ids, random JSON, a valid request with one field replaced by random
JSON, deep nesting anywhere, raw bytes, truncated JSON, the binary tensor extension with lying
sizes, non-JSON numbers (NaN, 1e400), gzip bodies (a bomb among them) and odd headers. They go
over plain sockets (HTTP/1.1, keep-alive, reconnecting when the server closes), to MLServer
alone (the guarded server as the chart runs it) and to the router (a subprocess, as the stack
runs it) in front of it, and over gRPC to MLServer. Every answer must be a 4xx: no 5xx, no
connection reset, the processes still up, and their memory within 10% of where it was after
a warm-up. Counts and figures are printed (`-s`) and written to `fuzz-figures.json` in the
test's folder. Marker `fuzz`: `make test` runs it (about 2-3 minutes).
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mainsail.data.schema import FeatureSchema
from mainsail.serving.mlserver import MLServerProcess, free_port
from mainsail.serving.v2client import v2_inputs
from tests.support.serving import churn_frame

pytestmark = [pytest.mark.integration, pytest.mark.fuzz]

MODEL = "churn-local"
PER_TARGET = int(os.environ.get("MAINSAIL_FUZZ_REQUESTS", "5000"))
# Malformed requests sent before the memory baseline is taken (see _fuzz).
WARM_UP_EXAMPLES = 500
GRPC_REQUESTS = int(os.environ.get("MAINSAIL_FUZZ_GRPC_REQUESTS", "1500"))
FIGURES: dict[str, Any] = {}


# -- the valid request the mutations start from -----------------------------------------------


@pytest.fixture(scope="module")
def valid(sealed_artifact: Path) -> dict[str, Any]:
    schema = FeatureSchema.load(sealed_artifact / "feature_schema.json")
    return {"inputs": v2_inputs(churn_frame(2, seed=11), schema)}


# -- strategies -------------------------------------------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=25,
)
BAD_ID_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\ud800"), min_size=0, max_size=200
).filter(lambda s: not s or not s.isascii() or not all(c.isalnum() or c in "._:@+-" for c in s))


def _request(body: bytes, **headers: str | bytes) -> tuple[dict[str, str | bytes], bytes]:
    base: dict[str, str | bytes] = {"content-type": "application/json"}
    base.update(headers)
    return base, body


@st.composite
def malformed(draw: Any, valid: dict[str, Any]) -> tuple[str, dict[str, str | bytes], bytes]:
    """(category, headers, body) of one malformed request."""
    category = draw(
        st.sampled_from(
            [
                "bad_id",
                "random_json",
                "mutated_field",
                "deep_nesting",
                "raw_bytes",
                "truncated_json",
                "binary_extension",
                "non_json_numbers",
                "gzip",
                "odd_headers",
            ]
        )
    )
    good = json.dumps(valid)
    if category == "bad_id":
        rid = draw(
            BAD_ID_TEXT
            | st.sampled_from(["a\nb", "a\r\nb", "a\x00b", "é", "-x", " "])
            | st.integers(101, 1_000_000).map(lambda n: "x" * n)
        )
        return category, *_request(json.dumps({**valid, "id": rid}).encode())
    if category == "random_json":
        return category, *_request(json.dumps(draw(JSON)).encode())
    if category == "mutated_field":
        body = json.loads(good)
        target = draw(
            st.sampled_from(
                ["name", "shape", "datatype", "data", "parameters", "outputs", "top", "extra"]
            )
        )
        value = draw(JSON)
        tensor = body["inputs"][draw(st.integers(0, len(body["inputs"]) - 1))]
        if target in ("name", "shape", "datatype", "data", "parameters"):
            tensor[target] = value
        elif target == "outputs":
            body["outputs"] = value
        elif target == "top":
            body = value
        else:
            body[draw(st.text(min_size=1, max_size=20))] = value
        return category, *_request(json.dumps(body).encode())
    if category == "deep_nesting":
        depth = draw(st.integers(33, 20_000))
        where = draw(st.sampled_from(["outputs", "parameters", "data", "tensor_params", "whole"]))
        nest = "[" * depth + "]" * depth
        body = json.loads(good)
        marker = '"__DEEP__"'
        if where == "outputs":
            body["outputs"] = [{"name": "label", "parameters": {"x": "__DEEP__"}}]
        elif where == "parameters":
            body["parameters"] = {"x": "__DEEP__"}
        elif where == "data":
            body["inputs"][0]["data"] = "__DEEP__"
        elif where == "tensor_params":
            body["inputs"][0]["parameters"] = {"x": "__DEEP__"}
        else:
            return category, *_request(nest.encode())
        return category, *_request(json.dumps(body).replace(marker, nest).encode())
    if category == "raw_bytes":
        return category, *_request(draw(st.binary(min_size=0, max_size=3000)))
    if category == "truncated_json":
        raw = good.encode()
        cut = draw(st.integers(0, len(raw) - 1))
        junk = draw(st.binary(max_size=8))
        return category, *_request(raw[:cut] + junk)
    if category == "binary_extension":
        header = json.loads(good)
        for tensor in header["inputs"]:
            tensor.pop("data")
            tensor.setdefault("parameters", {})["binary_data_size"] = draw(
                st.integers(-3, 200) | st.text(max_size=3)
            )
        head = json.dumps(header).encode()
        blob = draw(st.binary(max_size=600))
        length = draw(
            st.sampled_from([str(len(head)), "-1", "abc", "99999999", str(len(head) - 1)])
        )
        return category, *_request(
            head + blob,
            **{
                "inference-header-content-length": length,
                "content-type": "application/octet-stream",
            },
        )
    if category == "non_json_numbers":
        token = draw(
            st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e999", "01", "+1", ".5"])
        )
        body = json.loads(good)
        tensor = body["inputs"][draw(st.integers(0, len(body["inputs"]) - 1))]
        tensor["data"][draw(st.integers(0, len(tensor["data"]) - 1))] = "__NUM__"
        return category, *_request(json.dumps(body).replace('"__NUM__"', token).encode())
    if category == "gzip":
        kind = draw(st.sampled_from(["garbage", "bomb", "valid", "not_gzip"]))
        if kind == "garbage":
            payload = b"\x1f\x8b\x08\x00" + draw(st.binary(max_size=200))
        elif kind == "bomb":
            payload = BOMB
        elif kind == "valid":
            payload = gzip.compress(json.dumps({**valid, "id": draw(BAD_ID_TEXT)}).encode())
        else:
            payload = good.encode()
        encoding = draw(st.sampled_from(["gzip", "gzip", "br", "deflate, gzip"]))
        return category, *_request(payload, **{"content-encoding": encoding})
    # odd headers: non-ASCII bytes and odd values in the ids, content types and lengths
    value = draw(
        st.binary(min_size=1, max_size=150).filter(lambda b: b"\r" not in b and b"\n" not in b)
    )
    name = draw(
        st.sampled_from(["x-request-id", "content-type", "x-mainsail-session", "authorization"])
    )
    return category, *_request(good.encode(), **{name: value})


BOMB = gzip.compress(b"0" * (80 * 1024 * 1024), compresslevel=9)  # 80 MiB of zeros, ~80 KiB


# -- transport --------------------------------------------------------------------------------


class Wire:
    """HTTP/1.1 over one keep-alive socket, any header bytes allowed; reconnects when the
    server closed the connection after an answer (that is not a reset)."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.address = (host, int(port))
        self.sock: socket.socket | None = None
        self.buffer = b""

    def _connect(self) -> socket.socket:
        if self.sock is None:
            self.sock = socket.create_connection(self.address, timeout=30)
            self.buffer = b""
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None

    def post(self, path: str, headers: dict[str, str | bytes], body: bytes) -> tuple[int, bytes]:
        """(status, body); raises ConnectionError when the server reset or dropped the
        connection without an answer."""
        head = [f"POST {path} HTTP/1.1".encode(), b"host: fuzz"]
        for name, value in headers.items():
            head.append(
                name.encode()
                + b": "
                + (value if isinstance(value, bytes) else value.encode("latin-1", "replace"))
            )
        head.append(b"content-length: %d" % len(body))
        raw = b"\r\n".join(head) + b"\r\n\r\n" + body
        sock = self._connect()
        try:
            sock.sendall(raw)
            return self._read()
        except (OSError, ConnectionError) as err:
            self.close()
            raise ConnectionError(f"{type(err).__name__}: {err}") from None

    def _recv(self) -> bytes:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed without an answer")
        return chunk

    def _read(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
            body = b""
            while True:
                while b"\r\n" not in rest:
                    rest += self._recv()
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                while len(rest) < size + 2:
                    rest += self._recv()
                body, rest = body + rest[:size], rest[size + 2 :]
                if size == 0:
                    break
        else:
            length = int(fields.get(b"content-length", b"0"))
            while len(rest) < length:
                rest += self._recv()
            body, rest = rest[:length], rest[length:]
        self.buffer = rest
        if fields.get(b"connection", b"").lower() == b"close":
            self.close()
        return status, body


class Tally:
    def __init__(self) -> None:
        self.by_category: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.resets: list[str] = []
        self.server_errors: list[str] = []
        self.tracebacks: list[str] = []

    def record(self, category: str, status: int | None, body: bytes, note: str = "") -> None:
        self.by_category[category] += 1
        if status is None:
            self.resets.append(f"{category}: {note}")
            return
        self.by_status[status] += 1
        if status >= 500:
            self.server_errors.append(f"{category} {status}: {body[:200]!r}")
        if b"Traceback" in body:
            self.tracebacks.append(f"{category}: {body[:200]!r}")

    def summary(self) -> dict[str, Any]:
        return {
            "requests": sum(self.by_category.values()),
            "by_category": dict(sorted(self.by_category.items())),
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "5xx": len(self.server_errors),
            "resets": len(self.resets),
            "tracebacks": len(self.tracebacks),
            "examples_of_failures": (self.server_errors + self.resets + self.tracebacks)[:5],
        }


def _rss(pid: int) -> int:
    proc = psutil.Process(pid)
    return int(proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(True)))


@pytest.fixture(scope="module")
def router_process(
    mlserver: MLServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The router as the stack runs it (`python -m mainsail.serving.router`), both variants
    on the guarded MLServer."""
    folder = tmp_path_factory.mktemp("fuzz-router")
    port = free_port()
    settings = {
        "model_name": MODEL,
        "router": {"health_interval_s": 0.5, "upstream_timeout_s": 5.0},
        "variants": [
            {"role": "champion", "url": mlserver.url, "model": MODEL, "weight": 50},
            {"role": "challenger", "url": mlserver.url, "model": MODEL, "weight": 50},
        ],
    }
    (folder / "router.json").write_text(json.dumps(settings))
    log = (folder / "router.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mainsail.serving.router",
            "--settings",
            str(folder / "router.json"),
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, (
            folder / "router.log"
        ).read_text()
        time.sleep(0.2)
    yield url, proc
    proc.terminate()
    proc.wait(10)
    log.close()


def _warm_up(url: str, valid: dict[str, Any], path: str) -> None:
    wire = Wire(url)
    body = json.dumps(valid).encode()
    for i in range(400):
        status, answer = wire.post(
            path, {"content-type": "application/json"}, body if i % 2 else b"{"
        )
        assert status in (200, 400), answer[:300]
    wire.close()


def _fuzz(target: str, url: str, pid: int, valid: dict[str, Any], out: Path) -> dict[str, Any]:
    path = f"/v2/models/{MODEL}/infer"
    _warm_up(url, valid, path)
    wire = Wire(url)

    def send(tally: Tally, examples: int) -> None:
        @settings(
            max_examples=examples,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=malformed(valid))
        def run(case: tuple[str, dict[str, str | bytes], bytes]) -> None:
            category, headers, body = case
            try:
                status, answer = wire.post(path, headers, body)
            except ConnectionError as err:
                tally.record(category, None, b"", str(err))
                return
            tally.record(category, status, answer)

        run()

    # Every kind of malformed request once before the memory is measured: the first gzip body,
    # binary tensor or error answer loads code and fills allocator arenas once (some 15 MiB in
    # the router); what must not grow is the memory over the thousands that follow.
    send(Tally(), WARM_UP_EXAMPLES)
    before = _rss(pid)
    tally = Tally()
    started = time.monotonic()
    send(tally, PER_TARGET)
    wire.close()
    elapsed = time.monotonic() - started
    time.sleep(1.0)
    after = _rss(pid)
    figures = {
        **tally.summary(),
        "seconds": round(elapsed, 1),
        "rss_before_mib": round(before / 2**20, 1),
        "rss_after_mib": round(after / 2**20, 1),
        "rss_growth_pct": round(100 * (after - before) / before, 2),
        "process_alive": psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie",
    }
    _publish(f"fuzz {target}", target, figures, out)
    return figures


def _publish(title: str, key: str, figures: dict[str, Any], out: Path) -> None:
    """Keep the figures (printed with `-s`, and in fuzz-figures.json beside the test)."""
    FIGURES[key] = figures
    (out / "fuzz-figures.json").write_text(json.dumps(FIGURES, indent=2))
    print(f"\n{title}: {json.dumps(figures)}")


def _check(figures: dict[str, Any]) -> None:
    assert figures["requests"] >= PER_TARGET * 0.98, figures  # hypothesis may skip a few repeats
    assert figures["5xx"] == 0 and figures["resets"] == 0 and figures["tracebacks"] == 0, figures
    assert figures["process_alive"], figures
    assert figures["rss_growth_pct"] < 10, figures
    assert len(figures["by_category"]) == 10, figures


def test_mlserver_with_the_runtime_answers_every_malformed_request_with_a_4xx(
    mlserver: MLServerProcess, valid: dict[str, Any], tmp_path: Path
) -> None:
    assert mlserver.proc is not None
    figures = _fuzz("mlserver", mlserver.url, mlserver.proc.pid, valid, tmp_path)
    _check(figures)
    assert httpx.post(f"{mlserver.url}/v2/models/{MODEL}/infer", json=valid).status_code == 200


def test_the_router_answers_every_malformed_request_with_a_4xx(
    router_process: tuple[str, subprocess.Popen[bytes]],
    mlserver: MLServerProcess,
    valid: dict[str, Any],
    tmp_path: Path,
) -> None:
    url, proc = router_process
    figures = _fuzz("router", url, proc.pid, valid, tmp_path)
    _check(figures)
    # Client errors never took a variant out of rotation nor counted as its errors.
    state = httpx.get(f"{url}/v2/health/ready").json()
    assert all(v["healthy"] for v in state["variants"]), state
    metrics = httpx.get(f"{url}/metrics").text
    assert "mainsail_router_errors_total{" not in metrics
    assert httpx.post(f"{url}/v2/models/{MODEL}/infer", json=valid).status_code == 200


# -- gRPC -------------------------------------------------------------------------------------

DATATYPES = [
    "BOOL",
    "BYTES",
    "FP16",
    "FP32",
    "FP64",
    "INT8",
    "INT32",
    "INT64",
    "UINT8",
    "UINT64",
    "STRING",
    "",
    "fp64",
]
FIELDS = [
    "bool_contents",
    "int_contents",
    "int64_contents",
    "uint_contents",
    "uint64_contents",
    "fp32_contents",
    "fp64_contents",
    "bytes_contents",
]


@st.composite
def grpc_request(draw: Any, names: list[str]) -> Any:
    from tritonclient.grpc import service_pb2 as pb

    request = pb.ModelInferRequest(model_name=MODEL)
    request.id = draw(st.sampled_from(["", "ok-1"]) | BAD_ID_TEXT.filter(lambda s: "\x00" not in s))
    raw_mode = draw(st.booleans())
    for _ in range(draw(st.integers(0, 4))):
        tensor = request.inputs.add()
        tensor.name = draw(st.sampled_from(names) | st.text(max_size=12))
        tensor.datatype = draw(st.sampled_from(DATATYPES))
        tensor.shape.extend(draw(st.lists(st.integers(-2, 6), max_size=3)))
        if raw_mode:
            request.raw_input_contents.append(draw(st.binary(max_size=64)))
        else:
            field = draw(st.sampled_from(FIELDS))
            values = draw(st.lists(st.integers(0, 3), max_size=6))
            target = getattr(tensor.contents, field)
            if field == "bytes_contents":
                target.extend(draw(st.lists(st.binary(max_size=8), max_size=6)))
            elif field == "bool_contents":
                target.extend(bool(v) for v in values)
            elif field in ("fp32_contents", "fp64_contents"):
                target.extend(float(v) for v in values)
            else:
                target.extend(values)
    if raw_mode and draw(st.booleans()):
        request.raw_input_contents.append(draw(st.binary(max_size=16)))  # one too many
    for _ in range(draw(st.integers(0, 2))):
        out = request.outputs.add()
        out.name = draw(st.sampled_from(["label", "probability", "probabilities", "nope"]))
    return request


def test_grpc_answers_every_malformed_request_with_invalid_argument(
    mlserver: MLServerProcess, valid: dict[str, Any], tmp_path: Path
) -> None:
    import grpc
    from tritonclient.grpc import service_pb2_grpc as pbg

    names = [t["name"] for t in valid["inputs"]]
    channel = grpc.insecure_channel(mlserver.grpc_address)
    stub = pbg.GRPCInferenceServiceStub(channel)
    codes: Counter[str] = Counter()
    bad: list[str] = []

    @settings(
        max_examples=GRPC_REQUESTS,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(request=grpc_request(names))
    def run(request: Any) -> None:
        try:
            stub.ModelInfer(request, timeout=30)
            codes["OK"] += 1
        except grpc.RpcError as err:
            code = err.code().name
            codes[code] += 1
            if code in ("INTERNAL", "UNKNOWN", "UNAVAILABLE", "DEADLINE_EXCEEDED"):
                bad.append(f"{code}: {err.details()[:200]}")

    run()
    channel.close()
    figures = {"requests": sum(codes.values()), "by_code": dict(codes), "failures": bad[:5]}
    _publish("fuzz grpc", "grpc", figures, tmp_path)
    assert bad == [], bad[:5]
    assert sum(codes.values()) >= GRPC_REQUESTS * 0.95
    assert mlserver.alive()


# -- steady load with malformed requests mixed in ------------------------------------------------

LOAD_SECONDS = float(os.environ.get("MAINSAIL_FUZZ_LOAD_SECONDS", "30"))


def _nasty(valid: dict[str, Any]) -> list[tuple[dict[str, str | bytes], bytes]]:
    """The requests that broke the service before (issue 19), sent once a second in turn."""
    good = json.dumps(valid)
    deep = json.dumps({**valid, "outputs": [{"name": "label", "parameters": {"x": "D"}}]})
    return [
        _request(json.dumps({**valid, "id": "a\nb"}).encode()),
        _request(json.dumps({**valid, "id": "a\r\nb"}).encode()),
        _request(json.dumps({**valid, "id": "a\x00b"}).encode()),
        _request(json.dumps({**valid, "id": "é"}).encode()),
        _request(json.dumps({**valid, "id": "x" * 1_000_000}).encode()),
        _request(deep.replace('"D"', "[" * 900 + "]" * 900).encode()),
        _request(b"\x00\xff" * 100, **{"inference-header-content-length": "7"}),
        _request(BOMB, **{"content-encoding": "gzip"}),
        _request(good.encode(), **{"x-request-id": b"\xe9\xff"}),
        _request(good.replace("[", "[NaN, ", 1).encode()),
    ]


def test_malformed_requests_at_one_a_second_do_not_hurt_other_clients(
    router_process: tuple[str, subprocess.Popen[bytes]],
    mlserver: MLServerProcess,
    valid: dict[str, Any],
    tmp_path: Path,
) -> None:
    import threading

    url, proc = router_process
    path = f"/v2/models/{MODEL}/infer"
    body = json.dumps(valid).encode()
    stop = threading.Event()
    results: list[tuple[int, int]] = []  # (ok, failed) per worker
    failures: list[str] = []
    malformed_answers: Counter[int] = Counter()

    def steady(worker: int) -> None:
        wire = Wire(url)
        ok = failed = 0
        while not stop.is_set():
            try:
                status, answer = wire.post(path, {"content-type": "application/json"}, body)
            except ConnectionError as err:
                failed += 1
                failures.append(f"worker {worker}: {err}")
                continue
            if status == 200:
                ok += 1
            else:
                failed += 1
                failures.append(f"worker {worker}: {status} {answer[:150]!r}")
        wire.close()
        results.append((ok, failed))

    def attacker() -> None:
        nasty = _nasty(valid)
        i = 0
        while not stop.wait(1.0):
            wire = Wire(url)
            headers, payload = nasty[i % len(nasty)]
            try:
                status, _ = wire.post(path, headers, payload)
                malformed_answers[status] += 1
            except ConnectionError:
                malformed_answers[0] += 1
            wire.close()
            i += 1

    workers = [threading.Thread(target=steady, args=(w,)) for w in range(4)]
    bad = threading.Thread(target=attacker)
    for thread in [*workers, bad]:
        thread.start()
    time.sleep(LOAD_SECONDS)
    stop.set()
    for thread in [*workers, bad]:
        thread.join(60)
    ok = sum(r[0] for r in results)
    failed = sum(r[1] for r in results)
    figures = {
        "seconds": LOAD_SECONDS,
        "valid_requests": ok + failed,
        "valid_failed": failed,
        "error_rate_pct": round(100 * failed / max(1, ok + failed), 4),
        "malformed_sent": sum(malformed_answers.values()),
        "malformed_answers": {str(k): v for k, v in sorted(malformed_answers.items())},
        "failures": failures[:5],
    }
    _publish("load with malformed traffic", "load", figures, tmp_path)
    assert ok + failed >= 1000, figures  # enough requests for a 0.1% bound to mean something
    assert failed / (ok + failed) <= 0.001, figures
    assert figures["malformed_sent"] >= LOAD_SECONDS * 0.8
    assert set(malformed_answers) <= {400, 413, 415}, figures
    assert proc.poll() is None and mlserver.alive()
