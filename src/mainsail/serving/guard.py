"""MLServer with Mainsail's guards: every client input bounded and checked before MLServer sees it.

Serving env. `python -m mainsail.serving.guard start FOLDER` is `mlserver start FOLDER` with:

* an ASGI middleware around MLServer's REST app (:class:`GuardMiddleware`):
  - bodies above `MAINSAIL_MAX_BODY_BYTES` (default 64 MiB) -> 413, gzip bodies inflated with the
    same bound, JSON nested deeper than `mainsail.core.limits.MAX_JSON_DEPTH` or not JSON -> 400;
  - a V2 `id` outside the request-id rules (`mainsail.core.limits`) -> 400 naming `id`: MLServer
    copies it into `ce-id` response headers, where a newline reset the connection;
  - the binary tensor extension (`Inference-Header-Content-Length`, what tritonclient and the
    kserve client send by default) decoded into plain V2 JSON (a NaN float becomes `null`, a
    missing value), or a 400 naming the input whose bytes do not fit its shape;
  - `GET /v2/health/live|ready` and `/v2/models/{m}/ready` answered with a JSON body
    (`{"live": true}`, `{"ready": true}`) as V2 clients expect, not an empty one;
  - the repository API (`/v2/repository/...`: index, load, unload) refused unless the caller
    presents `Authorization: Bearer $MAINSAIL_REPOSITORY_TOKEN`, or, when no token is set, comes
    from loopback (Seldon's agent in the same pod). 401/403 otherwise.
* the gRPC servicers replaced by checked ones: `ModelInfer` answers INVALID_ARGUMENT naming the
  field for a bad id, an unknown datatype, a shape and contents that disagree, or
  `raw_input_contents` that do not decode; BYTES outputs are sent as bytes and the response
  parameter `classes` (a list, which V2 gRPC parameters cannot hold) as a JSON string; the
  model repository service follows the REST rule (token in the `authorization` metadata, else
  loopback peers only).
* `debug` off unless settings say otherwise (MLServer's default `debug: true` puts tracebacks in
  500 bodies and access logs on).

The patches are installed by :func:`install`, before MLServer builds its servers; they depend on
MLServer 1.7.1's structure (`mlserver.rest.server.create_app`, `mlserver.grpc.server`'s
servicer classes), which `tests/unit/test_guard.py` checks.
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from mainsail.core.asgi import JSON, ASGIApp, Message, Receive, Scope, Send, send_body
from mainsail.core.limits import (
    LimitError,
    bearer_ok,
    check_request_id,
    is_loopback,
    load_json,
    read_body,
    shown,
)

ENV_REPOSITORY_TOKEN = "MAINSAIL_REPOSITORY_TOKEN"
ENV_MAX_BODY = "MAINSAIL_MAX_BODY_BYTES"
DEFAULT_MAX_BODY = 64 * 1024 * 1024
BINARY_HEADER = b"inference-header-content-length"
MAX_ELEMENTS = 10_000_000
"""Largest tensor (elements) a request may announce."""

# struct codes and sizes of V2 datatypes in the binary extension (little-endian).
_CODES = {
    "BOOL": "?",
    "UINT8": "B",
    "UINT16": "H",
    "UINT32": "I",
    "UINT64": "Q",
    "INT8": "b",
    "INT16": "h",
    "INT32": "i",
    "INT64": "q",
    "FP16": "e",
    "FP32": "f",
    "FP64": "d",
}
DATATYPES = frozenset({*_CODES, "BYTES"})
_FLOATS = frozenset({"FP16", "FP32", "FP64"})


class GuardError(LimitError):
    """A request refused by the guard (status and message for the client)."""


# -- tensors ---------------------------------------------------------------------------------


def _elements(shape: Any, where: str) -> int:
    if not isinstance(shape, list | tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise GuardError(f"{where}.shape: expected a list of integers >= 0")
    n = math.prod(shape)
    if n > MAX_ELEMENTS:
        raise GuardError(f"{where}.shape: {n} elements exceed the limit {MAX_ELEMENTS}")
    return n


def unpack_tensor(datatype: str, shape: Any, raw: bytes, where: str) -> list[Any]:
    """Decode one tensor of the binary extension (or gRPC raw contents) into a flat list;
    :class:`GuardError` naming `where` when the bytes do not fit the datatype and shape.
    BYTES elements are decoded as UTF-8 text; NaN floats become None (missing)."""
    if datatype not in DATATYPES:
        raise GuardError(f"{where}.datatype: {shown(datatype)} is not a V2 datatype")
    n = _elements(shape, where)
    if datatype == "BYTES":
        out: list[Any] = []
        offset = 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise GuardError(f"{where}: truncated BYTES element length at byte {offset}")
            (size,) = struct.unpack_from("<I", raw, offset)
            offset += 4
            if offset + size > len(raw):
                raise GuardError(f"{where}: BYTES element of {size} bytes runs past the data")
            try:
                out.append(raw[offset : offset + size].decode("utf-8"))
            except UnicodeDecodeError:
                raise GuardError(f"{where}: element {len(out)} is not UTF-8 text") from None
            offset += size
            if len(out) > n:
                break
        if len(out) != n:
            raise GuardError(f"{where}: shape {list(shape)} needs {n} elements, got {len(out)}")
        return out
    code = _CODES[datatype]
    size = struct.calcsize("<" + code)
    if len(raw) != n * size:
        raise GuardError(
            f"{where}: shape {list(shape)} of {datatype} needs {n * size} bytes, got {len(raw)}"
        )
    values = list(struct.unpack(f"<{n}{code}", raw))
    if datatype in _FLOATS:
        values = [None if math.isnan(v) else v for v in values]
        if any(v is not None and math.isinf(v) for v in values):
            raise GuardError(f"{where}: infinite values are not accepted")
    return values


def decode_binary_request(body: bytes, json_length: int) -> dict[str, Any]:
    """A V2 request in the binary tensor extension turned into plain JSON."""
    if json_length < 0 or json_length > len(body):
        raise GuardError(
            f"Inference-Header-Content-Length: {json_length} does not fit a body of "
            f"{len(body)} bytes"
        )
    payload = load_json(body[:json_length], what="request JSON header")
    if not isinstance(payload, dict):
        raise GuardError("body: expected a JSON object")
    blob = body[json_length:]
    offset = 0
    inputs = payload.get("inputs")
    if not isinstance(inputs, list):
        raise GuardError("inputs: expected a list of tensors")
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, dict):
            raise GuardError(f"inputs[{i}]: expected a JSON object")
        params = tensor.get("parameters")
        if not isinstance(params, dict) or "binary_data_size" not in params:
            continue
        where = f"inputs[{i}] ({shown(tensor.get('name'))})"
        size = params.pop("binary_data_size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise GuardError(f"{where}.parameters.binary_data_size: expected an integer >= 0")
        if offset + size > len(blob):
            raise GuardError(f"{where}.parameters.binary_data_size: {size} bytes run past the body")
        tensor["data"] = unpack_tensor(
            str(tensor.get("datatype")), tensor.get("shape"), blob[offset : offset + size], where
        )
        offset += size
        if not params:
            tensor.pop("parameters")
    if offset != len(blob):
        raise GuardError(f"body: {len(blob) - offset} bytes of binary data belong to no input")
    _drop_binary_output_flags(payload)
    return payload


def _drop_binary_output_flags(payload: dict[str, Any]) -> None:
    """Answers are JSON: the binary-output flags are removed (clients read JSON answers)."""
    params = payload.get("parameters")
    if isinstance(params, dict):
        params.pop("binary_data_output", None)
    for out in payload.get("outputs") or ():
        if isinstance(out, dict) and isinstance(out.get("parameters"), dict):
            out["parameters"].pop("binary_data", None)


def check_infer_body(payload: Any) -> None:
    """What the guard checks in a V2 infer body before MLServer parses it (the rest is the
    runtime's schema validation): an object, a valid `id`."""
    if not isinstance(payload, dict):
        raise GuardError(f"body: expected a JSON object, got {type(payload).__name__}")
    if "id" in payload and payload["id"] is not None:
        check_request_id(payload["id"], "id")


# -- REST ------------------------------------------------------------------------------------


class GuardMiddleware:
    """The ASGI guard in front of MLServer's REST app (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None = None,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self.app = app
        self.token = token or None
        self.max_body = max_body

    def __getattr__(self, name: str) -> Any:
        # MLServer adds custom handlers' routes to its FastAPI app after creating it.
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        method: str = scope.get("method", "GET")
        try:
            if path.startswith("/v2/repository"):
                self._authorize(scope)
            if method in ("POST", "PUT", "PATCH"):
                receive, scope = await self._checked_body(scope, receive, path)
        except LimitError as err:
            await _send_json(send, err.status, {"error": str(err)}, _auth_header(err.status))
            return
        if method in ("GET", "HEAD") and _health_key(path) is not None:
            await self.app(scope, receive, _health_send(send, _health_key(path) or ""))
            return
        await self.app(scope, receive, send)

    def _authorize(self, scope: Scope) -> None:
        headers = dict(scope.get("headers") or [])
        if self.token is not None:
            if not bearer_ok(headers.get(b"authorization"), self.token):
                raise GuardError(
                    "the repository API needs Authorization: Bearer <MAINSAIL_REPOSITORY_TOKEN>",
                    401,
                )
            return
        client = scope.get("client")
        if not is_loopback(client[0] if client else None):
            raise GuardError(
                "the repository API answers loopback callers only (set "
                f"{ENV_REPOSITORY_TOKEN} to allow token holders)",
                403,
            )

    async def _checked_body(self, scope: Scope, receive: Receive, path: str) -> tuple[Any, Scope]:
        headers = dict(scope.get("headers") or [])
        read = await read_body(receive, headers, self.max_body)
        if read is None:
            raise GuardError(f"request body exceeds {self.max_body} bytes", 413)
        body = read
        changed = False
        encoding = headers.get(b"content-encoding", b"").lower()
        if encoding:
            if encoding != b"gzip":
                raise GuardError(f"content-encoding {shown(encoding.decode('latin-1'))}", 415)
            body = gunzip_bounded(body, self.max_body)
            changed = True
        if path.startswith("/v2/models/") or path.startswith("/v2/repository"):
            binary = headers.get(BINARY_HEADER)
            if binary is not None:
                if not binary.isdigit():
                    raise GuardError("Inference-Header-Content-Length: expected a byte count")
                payload = decode_binary_request(body, int(binary))
                changed = True
            elif body:
                payload = load_json(body)
            else:
                payload = None
            if payload is not None and path.startswith("/v2/models/"):
                check_infer_body(payload)
                params = payload.get("parameters")
                if isinstance(params, dict) and "binary_data_output" in params:
                    _drop_binary_output_flags(payload)
                    changed = True
            if changed:
                body = json.dumps(payload).encode()
        if changed:
            drop = {b"content-length", b"content-encoding", b"content-type", BINARY_HEADER}
            scope = dict(scope)
            scope["headers"] = [
                (k, v) for k, v in scope.get("headers") or [] if k.lower() not in drop
            ] + [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
        return _replay(body, receive), scope


def gunzip_bounded(body: bytes, limit: int) -> bytes:
    """Inflate a gzip body, refusing (413) one that inflates past `limit` bytes."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as err:
        raise GuardError(f"body is not valid gzip: {err}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise GuardError(f"inflated request body exceeds {limit} bytes", 413)
    return out


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _health_key(path: str) -> str | None:
    if path == "/v2/health/live":
        return "live"
    if path == "/v2/health/ready" or (path.startswith("/v2/models/") and path.endswith("/ready")):
        return "ready"
    return None


def _health_send(send: Send, key: str) -> Send:
    """Give an empty health answer a V2 JSON body (`{"live": true}` / `{"ready": false}`)."""
    start: Message | None = None

    async def wrapped(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
            return
        if message["type"] == "http.response.body" and start is not None:
            body = message.get("body", b"")
            status = int(start["status"])
            if not body and not message.get("more_body", False) and status in (200, 400, 503):
                body = json.dumps({key: status == 200}).encode()
                headers = [
                    (k, v)
                    for k, v in start.get("headers", [])
                    if k.lower() not in (b"content-length", b"content-type")
                ]
                start = {
                    **start,
                    "headers": [
                        *headers,
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
                message = {**message, "body": body}
            await send(start)
            start = None
        await send(message)

    return wrapped


def _auth_header(status: int) -> list[tuple[bytes, bytes]]:
    return [(b"www-authenticate", b'Bearer realm="mainsail-mlserver"')] if status == 401 else []


async def _send_json(
    send: Send, status: int, payload: Any, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send_body(send, status, json.dumps(payload).encode(), [JSON, *(extra or [])])


# -- gRPC ------------------------------------------------------------------------------------

# Typed contents field per datatype (V2 gRPC); FP16 has none (raw contents only).
_GRPC_FIELDS = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def check_grpc_request(request: Any) -> None:
    """Check a `ModelInferRequest` before MLServer converts it; :class:`GuardError` names the
    field at fault."""
    if request.id:
        check_request_id(request.id, "id")
    raw = list(request.raw_input_contents)
    if not request.inputs:
        raise GuardError("inputs: the request has no inputs")
    without: list[tuple[int, Any]] = []
    for i, tensor in enumerate(request.inputs):
        where = f"inputs[{i}] ({shown(tensor.name)})"
        if tensor.datatype not in DATATYPES:
            raise GuardError(f"{where}.datatype: {shown(tensor.datatype)} is not a V2 datatype")
        n = _elements(list(tensor.shape), where)
        set_fields = [f.name for f, _ in tensor.contents.ListFields()]
        if not set_fields:
            without.append((i, tensor))
            continue
        expected = _GRPC_FIELDS.get(tensor.datatype, "")
        if set_fields != [expected]:
            raise GuardError(
                f"{where}.contents: {tensor.datatype} data goes in "
                f"{expected or 'raw_input_contents'}, got {', '.join(set_fields)}"
            )
        count = len(getattr(tensor.contents, expected))
        if count != n:
            raise GuardError(f"{where}.contents: shape {list(tensor.shape)} needs {n}, got {count}")
        if tensor.datatype == "BYTES":
            for j, item in enumerate(tensor.contents.bytes_contents):
                try:
                    item.decode("utf-8")
                except UnicodeDecodeError:
                    raise GuardError(f"{where}.contents: element {j} is not UTF-8") from None
    if raw and len(raw) != len(without):
        raise GuardError(
            f"raw_input_contents: {len(raw)} entries for {len(without)} inputs without contents"
        )
    if not raw and without:
        i, tensor = without[0]
        raise GuardError(f"inputs[{i}] ({shown(tensor.name)}): no contents")
    for (i, tensor), blob in zip(without, raw, strict=True):
        unpack_tensor(tensor.datatype, list(tensor.shape), blob, f"raw_input_contents[{i}]")


def _grpc_token_ok(context: Any, token: str | None) -> bool:
    if token is not None:
        metadata = dict(context.invocation_metadata() or ())
        return bearer_ok(metadata.get("authorization"), token)
    peer = str(context.peer() or "")
    host = peer.rsplit(":", 1)[0] if peer.startswith(("ipv4:", "ipv6:")) else peer
    return is_loopback(host)


def _guarded_servicers(token: str | None) -> tuple[type, type]:
    """MLServer's inference and repository servicers with the checks above."""
    import grpc
    from mlserver.grpc import model_repository as repo_module
    from mlserver.grpc import servicers
    from mlserver.grpc.converters import ModelInferResponseConverter
    from mlserver.grpc.utils import handle_mlserver_error

    class InferenceServicer(servicers.InferenceServicer):
        @handle_mlserver_error
        async def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802
            try:
                check_grpc_request(request)
            except LimitError as err:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
            use_raw = bool(request.raw_input_contents)
            payload = self._InsertHeaders(request, context)
            result = await self._data_plane.infer(
                payload=payload, name=request.model_name, version=request.model_version
            )
            self._SetTrailingMetadata(result, context)
            classes = None
            if result.parameters is not None:
                extra = result.parameters.model_extra or {}
                classes = extra.get("classes")
                if classes is not None:
                    delattr(result.parameters, "classes")
            for out in result.outputs:
                if out.datatype == "BYTES":
                    out.data.root = [v.encode() if isinstance(v, str) else v for v in out.data.root]
            response = ModelInferResponseConverter.from_types(result, use_raw=use_raw)
            if classes is not None:
                response.parameters["classes"].string_param = json.dumps(classes)
            return response

    base = repo_module.ModelRepositoryServicer

    def guarded(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def call(self: Any, request: Any, context: Any) -> Any:
            if not _grpc_token_ok(context, token):
                status = grpc.StatusCode
                code = status.UNAUTHENTICATED if token else status.PERMISSION_DENIED
                await context.abort(
                    code,
                    "the repository API needs the repository token (authorization metadata)"
                    if token
                    else "the repository API answers loopback callers only",
                )
            return await method(self, request, context)

        return call

    methods = {
        name: guarded(getattr(base, name))
        for name in ("RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload")
        if hasattr(base, name)
    }
    repository = type("ModelRepositoryServicer", (base,), methods)

    # The inference service also exposes RepositoryIndex (MLServer's extension).
    async def index(self: Any, request: Any, context: Any) -> Any:
        if not _grpc_token_ok(context, token):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "repository API refused")
        return await servicers.InferenceServicer.RepositoryIndex(self, request, context)

    InferenceServicer.RepositoryIndex = index
    return InferenceServicer, repository


def install(environ: MutableMapping[str, str] | None = None) -> None:
    """Patch MLServer (in this process) so the servers it builds carry the guards."""
    env = os.environ if environ is None else environ
    token = env.get(ENV_REPOSITORY_TOKEN) or None
    max_body = int(env.get(ENV_MAX_BODY) or DEFAULT_MAX_BODY)
    env.setdefault("MLSERVER_DEBUG", "false")

    import mlserver.grpc.server as grpc_server
    import mlserver.rest.server as rest_server

    original = rest_server.create_app
    if getattr(original, "_mainsail_guard", False):
        return

    def create_app(*args: Any, **kwargs: Any) -> Any:
        return GuardMiddleware(original(*args, **kwargs), token=token, max_body=max_body)

    create_app._mainsail_guard = True  # type: ignore[attr-defined]
    rest_server.create_app = create_app
    inference, repository = _guarded_servicers(token)
    grpc_server.InferenceServicer = inference
    grpc_server.ModelRepositoryServicer = repository


def main(argv: list[str] | None = None) -> None:
    """`python -m mainsail.serving.guard start FOLDER`: MLServer's CLI with the guards."""
    install()
    from mlserver.cli.main import root

    root(args=sys.argv[1:] if argv is None else argv, prog_name="mlserver")


__all__ = [
    "GuardError",
    "GuardMiddleware",
    "check_grpc_request",
    "check_infer_body",
    "decode_binary_request",
    "gunzip_bounded",
    "install",
    "main",
    "unpack_tensor",
]

if __name__ == "__main__":
    main()
