"""Bounds on what clients send, shared by every service that takes a request (standard library).

The router, MLServer's guard (`mainsail.serving.guard`), the feedback endpoint, the retrain
trigger and the drift sidecar check the same things the same way, before a body reaches a
parser or a library that can crash on it:

* **request ids** (V2 `id`, `x-request-id`): 1-100 characters from `[A-Za-z0-9._:@+-]`,
  starting with a letter or digit. MLServer copies a V2 `id` into response headers; a newline,
  NUL or non-ASCII character there broke the connection or gave a 500, so anything else is a
  400 that names the field (the value is never echoed whole);
* **JSON nesting**: at most :data:`MAX_JSON_DEPTH` levels, measured on the raw bytes without
  parsing (Python's and pydantic's recursive parsers fail deep inside otherwise);
* **tokens**: compared in constant time; :func:`bearer_ok` reads an `Authorization` header.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from itertools import accumulate
from typing import Any

__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_REQUEST_ID",
    "LimitError",
    "bearer_ok",
    "check_request_id",
    "is_loopback",
    "json_depth",
    "load_json",
    "shown",
]

MAX_REQUEST_ID = 100
"""Longest request id accepted: the feedback store's column holds 128 characters, which leaves
room for the `#<row>` of a batch's rows and the `~<n>` of a reused id, so every id accepted at
prediction time can be labelled."""
MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects accepted in a JSON body. A V2 request needs 4
(body, inputs, tensor, a [rows, 1] data list); parameters leave room for more."""

_REQUEST_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:@+\-]{{0,{MAX_REQUEST_ID - 1}}}")
_STRUCTURE = b'[]{}"\\'
_DROP = bytes(b for b in range(256) if b not in _STRUCTURE)
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class LimitError(ValueError):
    """A client input outside the bounds; the message names the field and is safe to return."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def shown(value: Any, limit: int = 40) -> str:
    """`repr` of a client value cut to `limit` characters (errors never echo a huge value)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_request_id(value: Any, field: str = "id") -> str:
    """`value` when it is a valid request id; else :class:`LimitError` naming `field`."""
    if not isinstance(value, str):
        raise LimitError(f"{field}: expected a string, got {type(value).__name__}")
    if len(value) > MAX_REQUEST_ID:
        raise LimitError(f"{field}: {len(value)} characters; at most {MAX_REQUEST_ID} allowed")
    if _REQUEST_ID.fullmatch(value) is None:
        raise LimitError(
            f"{field}: {shown(value)} is not a valid request id (1-{MAX_REQUEST_ID} of "
            "A-Z a-z 0-9 . _ : @ + -, starting with a letter or digit)"
        )
    if "@" in value:
        from mainsail.core.privacy import EMAIL

        if EMAIL.search(value) is not None:
            # Ids are stored (feedback store), logged and traced: never personal data.
            raise LimitError(
                f"{field}: holds an email address; request ids are stored and logged, so use "
                "an opaque id"
            )
    return value


def json_depth(raw: bytes) -> int:
    """Deepest nesting of arrays/objects in a JSON text, without parsing it (linear, in C for
    the most part: everything but brackets, quotes and backslashes is dropped first)."""
    skeleton = raw.translate(None, _DROP)
    if b"\\" in skeleton:
        # Escaped backslashes, then escaped quotes, then any other escape's lone backslash.
        skeleton = skeleton.replace(b"\\\\", b"").replace(b'\\"', b"").replace(b"\\", b"")
    outside = b"".join(skeleton.split(b'"')[::2])  # even parts lie outside strings
    if not outside:
        return 0
    return max(0, max(accumulate(_STEP[c] for c in outside)))


def load_json(raw: bytes, *, max_depth: int = MAX_JSON_DEPTH, what: str = "body") -> Any:
    """Parse a JSON body after checking its depth; :class:`LimitError` (400) when it is too
    deep, not UTF-8 or not JSON. `NaN`/`Infinity` are refused (not JSON)."""
    depth = json_depth(raw)
    if depth > max_depth:
        raise LimitError(f"{what}: JSON nested too deeply ({depth} levels; at most {max_depth})")
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise LimitError(f"{what} is not valid JSON: {shown(str(err), 120)}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON; send null for a missing value")


def bearer_ok(authorization: str | bytes | None, token: str | bytes) -> bool:
    """Whether an `Authorization` header carries `Bearer <token>` (constant-time compare)."""
    if not authorization or not token:
        return False
    if isinstance(authorization, bytes):
        authorization = authorization.decode("latin-1")
    scheme, _, given = authorization.partition(" ")
    expected = token.encode() if isinstance(token, str) else token
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode("latin-1"), expected
    )


def is_loopback(host: str | None) -> bool:
    """Whether a peer address is on the loopback interface (127.0.0.0/8, ::1)."""
    if not host:
        return False
    host = host.removeprefix("ipv4:").removeprefix("ipv6:").strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def read_body(
    receive: Callable[[], Awaitable[Any]], headers: Mapping[bytes, bytes], limit: int
) -> bytes | None:
    """An ASGI request's whole body, or None as soon as it is known to exceed `limit` bytes
    (a declared Content-Length over it is refused before a byte is read)."""
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
