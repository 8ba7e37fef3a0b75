"""The bounds on client input (`mainsail.core.limits`) and MLServer's guard
(`mainsail.serving.guard`): pure functions here, the patch of MLServer in the serving env."""

from __future__ import annotations

import json
import re
import struct
import subprocess
from pathlib import Path

import httpx
import pytest

from mainsail.core.limits import (
    MAX_REQUEST_ID,
    LimitError,
    bearer_ok,
    check_request_id,
    is_loopback,
    json_depth,
    load_json,
)
from mainsail.serving.guard import (
    GuardError,
    check_grpc_request,
    decode_binary_request,
    unpack_tensor,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("raw", "depth"),
    [
        (b"{}", 1),
        (b'{"a": [1, [2, {"b": 3}]]}', 4),
        (b'"[[[[[["', 0),
        (b'["\\"[[[", {"x": "\\\\"}]', 2),
        (b"[" * 5000 + b"]" * 5000, 5000),
        (b"12", 0),
    ],
)
def test_json_depth_counts_brackets_outside_strings(raw: bytes, depth: int) -> None:
    assert json_depth(raw) == depth


def test_load_json_refuses_deep_invalid_and_non_json_numbers() -> None:
    assert load_json(b'{"a": [1]}') == {"a": [1]}
    for raw, message in [
        (b"[" * 33 + b"]" * 33, "nested too deeply"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[NaN]", "not valid JSON"),
        (b"[Infinity]", "not valid JSON"),
    ]:
        with pytest.raises(LimitError, match=message):
            load_json(raw)


@pytest.mark.parametrize("rid", ["a", "0", "req-1.2:3@x+y_z", "a" * MAX_REQUEST_ID])
def test_valid_request_ids(rid: str) -> None:
    assert check_request_id(rid) == rid


@pytest.mark.parametrize(
    "rid", ["", "a\nb", "a\r\nb", "a\x00b", "é", "-a", " a", "a b", "a" * (MAX_REQUEST_ID + 1), 7]
)
def test_invalid_request_ids_name_the_field_and_never_echo_a_huge_value(rid: object) -> None:
    with pytest.raises(LimitError) as err:
        check_request_id(rid, "x-request-id")
    assert str(err.value).startswith("x-request-id:") and len(str(err.value)) < 200


def test_an_email_is_refused_as_a_request_id_without_being_echoed() -> None:
    with pytest.raises(LimitError) as err:
        check_request_id("jane.doe@example.org", "x-request-id")
    assert "email address" in str(err.value) and "jane" not in str(err.value)


def test_tokens_and_peers() -> None:
    assert bearer_ok("Bearer s3cret", "s3cret") and bearer_ok(b"bearer  s3cret ", "s3cret")
    assert not bearer_ok("Bearer s3cre", "s3cret") and not bearer_ok(None, "s3cret")
    assert not bearer_ok("Basic s3cret", "s3cret") and not bearer_ok("Bearer x", "")
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("ipv6:[::1]")
    assert not is_loopback("10.0.0.1") and not is_loopback(None) and not is_loopback("nope")


def _binary(tensors: list[tuple[str, str, list[int], bytes]]) -> tuple[bytes, int]:
    header = {
        "inputs": [
            {"name": n, "datatype": d, "shape": s, "parameters": {"binary_data_size": len(b)}}
            for n, d, s, b in tensors
        ],
        "parameters": {"binary_data_output": True},
    }
    head = json.dumps(header).encode()
    return head + b"".join(t[3] for t in tensors), len(head)


def test_the_binary_extension_decodes_to_v2_json() -> None:
    words = b"".join(struct.pack("<I", len(w)) + w for w in (b"gold", "é".encode()))
    body, length = _binary(
        [
            ("x", "FP64", [3], struct.pack("<3d", 1.5, float("nan"), -2.0)),
            ("c", "BYTES", [2], words),
            ("b", "BOOL", [2], b"\x01\x00"),
            ("i", "INT64", [1, 1], struct.pack("<q", -7)),
        ]
    )
    payload = decode_binary_request(body, length)
    data = {t["name"]: t["data"] for t in payload["inputs"]}
    assert data == {"x": [1.5, None, -2.0], "c": ["gold", "é"], "b": [True, False], "i": [-7]}
    assert "parameters" not in payload or "binary_data_output" not in payload["parameters"]


@pytest.mark.parametrize(
    ("tensors", "length_delta", "message"),
    [
        ([("x", "FP64", [3], b"\0" * 23)], 0, "needs 24 bytes"),
        ([("x", "BYTES", [1], b"\x05\0\0\0ab")], 0, "runs past"),
        ([("x", "BYTES", [1], b"\x02\0\0\0\xff\xfe")], 0, "not UTF-8"),
        ([("x", "FP32", [1], struct.pack("<f", float("inf")))], 0, "infinite"),
        ([("x", "NOPE", [1], b"\0")], 0, "not a V2 datatype"),
        ([("x", "FP64", [10**9], b"")], 0, "exceed the limit"),
        ([("x", "FP64", [1], b"\0" * 8)], 1, "not valid JSON"),
        ([("x", "FP64", [1], b"\0" * 8)], 10**6, "does not fit"),
    ],
)
def test_a_lying_binary_request_is_a_guard_error_naming_the_input(
    tensors: list[tuple[str, str, list[int], bytes]], length_delta: int, message: str
) -> None:
    body, length = _binary(tensors)
    with pytest.raises(LimitError, match=message):  # GuardError, or LimitError for the JSON
        decode_binary_request(body, length + length_delta)


def test_unpack_tensor_counts_bytes_elements() -> None:
    with pytest.raises(GuardError, match="needs 2 elements, got 1"):
        unpack_tensor("BYTES", [2], b"\x01\0\0\0a", "inputs[0]")


def test_grpc_requests_are_checked_before_mlserver_converts_them() -> None:
    from tritonclient.grpc import service_pb2 as pb

    def request(**kwargs: object) -> pb.ModelInferRequest:
        req = pb.ModelInferRequest(model_name="m", **kwargs)  # type: ignore[arg-type]
        return req

    ok = request()
    t = ok.inputs.add(name="x", datatype="FP64", shape=[2])
    t.contents.fp64_contents.extend([1.0, 2.0])
    check_grpc_request(ok)
    cases: list[tuple[pb.ModelInferRequest, str]] = []
    bad_id = request(id="a\nb")
    bad_id.inputs.extend(ok.inputs)
    cases.append((bad_id, "id:"))
    wrong_field = request()
    w = wrong_field.inputs.add(name="x", datatype="BYTES", shape=[1])
    w.contents.fp64_contents.append(1.0)
    cases.append((wrong_field, "goes in bytes_contents"))
    short = request()
    s = short.inputs.add(name="x", datatype="INT64", shape=[3])
    s.contents.int64_contents.extend([1])
    cases.append((short, "needs 3, got 1"))
    raw = request()
    raw.inputs.add(name="x", datatype="FP32", shape=[2])
    raw.raw_input_contents.append(b"\0" * 7)
    cases.append((raw, "raw_input_contents[0]"))
    extra = request()
    extra.inputs.add(name="x", datatype="FP32", shape=[1])
    extra.raw_input_contents.extend([b"\0" * 4, b"\0" * 4])
    cases.append((extra, "2 entries for 1 inputs"))
    empty = request()
    empty.inputs.add(name="x", datatype="FP32", shape=[1])
    cases.append((empty, "no contents"))
    unknown = request()
    unknown.inputs.add(name="x", datatype="STRING", shape=[1])
    cases.append((unknown, "not a V2 datatype"))
    for req, message in cases:
        with pytest.raises(LimitError, match=re.escape(message)):
            check_grpc_request(req)


def test_the_guard_patches_mlserver_in_the_serving_env() -> None:
    """The patch relies on MLServer 1.7.1's structure: `create_app` in mlserver.rest.server
    and the servicer classes in mlserver.grpc.server. If an upgrade moves them, this fails."""
    code = (
        "import os; os.environ.pop('MLSERVER_DEBUG', None)\n"
        "from mainsail.serving import guard; guard.install()\n"
        "import mlserver.rest.server as r, mlserver.grpc.server as g\n"
        "assert r.create_app._mainsail_guard\n"
        "assert g.InferenceServicer.__module__ == 'mainsail.serving.guard'\n"
        "assert 'RepositoryModelLoad' in vars(g.ModelRepositoryServicer)\n"
        "assert os.environ['MLSERVER_DEBUG'] == 'false'\n"
        "print('patched')\n"
    )
    python = REPO / ".venv" / "serving" / "bin" / "python"
    out = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0 and "patched" in out.stdout, out.stderr[-2000:]


async def _echo(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
    """A stand-in for MLServer's app: answers 200 with the body it got, or an empty health."""
    body = b""
    while True:
        message = await receive()  # type: ignore[operator]
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"].endswith(("/live", "/ready")):
        body = b""
    await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": body})  # type: ignore[operator]


def _run(coro_factory: object) -> object:
    import asyncio

    return asyncio.run(coro_factory())  # type: ignore[operator]


@pytest.mark.parametrize("path", ["/v2/repository/index", "/v2/repository/models/m/load"])
def test_the_repository_api_refuses_unauthenticated_callers(path: str) -> None:
    from mainsail.serving.guard import GuardMiddleware

    async def call(token: str | None, peer: str, auth: str | None) -> httpx.Response:
        transport = httpx.ASGITransport(GuardMiddleware(_echo, token=token), client=(peer, 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://mlserver") as c:
            headers = {"authorization": auth} if auth else {}
            return await c.post(path, content=b"{}", headers=headers)

    # No token configured: loopback only (Seldon's agent in the pod).
    assert _run(lambda: call(None, "10.1.2.3", None)).status_code == 403  # type: ignore[attr-defined]
    assert _run(lambda: call(None, "127.0.0.1", None)).status_code == 200  # type: ignore[attr-defined]
    # A token configured: everyone needs it, loopback too.
    for peer in ("10.1.2.3", "127.0.0.1"):
        for auth, status in ((None, 401), ("Bearer nope", 401), ("Bearer t0k", 200)):
            answer = _run(lambda p=peer, a=auth: call("t0k", p, a))  # type: ignore[misc]
            assert answer.status_code == status  # type: ignore[attr-defined]


def test_health_answers_get_json_bodies() -> None:
    from mainsail.serving.guard import GuardMiddleware

    async def get(path: str) -> httpx.Response:
        transport = httpx.ASGITransport(GuardMiddleware(_echo), client=("127.0.0.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://mlserver") as c:
            return await c.get(path)

    live = _run(lambda: get("/v2/health/live"))
    assert live.json() == {"live": True}  # type: ignore[attr-defined]
    ready = _run(lambda: get("/v2/models/churn/ready"))
    assert ready.json() == {"ready": True}  # type: ignore[attr-defined]


def test_the_guard_grpc_peer_rule() -> None:
    from mainsail.serving.guard import _grpc_token_ok

    class Context:
        def __init__(self, peer: str, metadata: tuple[tuple[str, str], ...] = ()) -> None:
            self._peer, self._metadata = peer, metadata

        def peer(self) -> str:
            return self._peer

        def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
            return self._metadata

    assert _grpc_token_ok(Context("ipv4:127.0.0.1:5000"), None)
    assert _grpc_token_ok(Context("ipv6:[::1]:5000"), None)
    assert not _grpc_token_ok(Context("ipv4:10.0.0.7:5000"), None)
    assert not _grpc_token_ok(Context("ipv4:127.0.0.1:5000"), "t0k")
    assert _grpc_token_ok(Context("ipv4:10.0.0.7:1", (("authorization", "Bearer t0k"),)), "t0k")
