"""A small keep-alive HTTP/1.1 client for the router's upstreams (asyncio streams + httptools).

Why not httpx: the router sits on the hot path of every prediction, and httpx's per-request
overhead was most of the router's CPU in the benchmark. This client does only what the router
needs: one upstream host per pool, keep-alive connections, Content-Length and chunked responses
(httptools decodes them), and errors that say whether the request could have reached the
server (:class:`ConnectError`: it did not, so a retry elsewhere is always safe).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httptools


class UpstreamError(Exception):
    """The upstream gave no usable response; `reason` is a short metric label."""

    reason = "error"


class ConnectError(UpstreamError):
    """No connection could be made: the request was not sent."""

    reason = "connect"


class ResponseError(UpstreamError):
    """The connection broke or the response was not valid HTTP after the request was sent."""

    reason = "response"


class UpstreamTimeoutError(UpstreamError):
    """No complete response within the timeout."""

    reason = "timeout"


@dataclass
class Response:
    """A complete upstream response."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass
class _Parse:
    """httptools callback target collecting one response."""

    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    done: bool = False
    keep_alive: bool = False
    parser: Any = None

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        # llhttp resets its flags once the message is done: read keep-alive here, not after.
        self.keep_alive = bool(self.parser.should_keep_alive())
        self.done = True


_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class UpstreamPool:
    """Keep-alive connections to one `http://host:port` upstream."""

    def __init__(self, base_url: str, max_idle: int = 64, connect_timeout: float = 2.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream URL must be http://host:port, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self._host_header = f"{self.host}:{self.port}".encode()
        self._idle: list[_Conn] = []

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: list[tuple[bytes, bytes]] | None = None,
        timeout: float = 10.0,
    ) -> Response:
        """Send one request and read the whole response within `timeout` seconds."""
        head = [f"{method} {path} HTTP/1.1\r\n".encode(), b"host: ", self._host_header, b"\r\n"]
        for name, value in headers or ():
            head += [name, b": ", value, b"\r\n"]
        head.append(b"content-length: %d\r\n\r\n" % len(body))
        raw = b"".join(head) + body
        try:
            async with asyncio.timeout(timeout):
                # A pooled connection may have been closed by the server while idle; such a
                # failure before any response byte is retried once on a fresh connection.
                while self._idle:
                    conn = self._idle.pop()
                    try:
                        return await self._exchange(conn, raw, reused=True)
                    except _StaleConnectionError:
                        continue
                conn = await self._connect()
                return await self._exchange(conn, raw, reused=False)
        except TimeoutError:
            raise UpstreamTimeoutError(
                f"{self.base_url}{path}: no response within {timeout}s"
            ) from None

    async def _connect(self) -> _Conn:
        try:
            async with asyncio.timeout(self.connect_timeout):
                return await asyncio.open_connection(self.host, self.port)
        except (OSError, TimeoutError) as err:
            raise ConnectError(f"cannot connect to {self.base_url}: {err}") from None

    async def _exchange(self, conn: _Conn, raw: bytes, reused: bool) -> Response:
        reader, writer = conn
        state = _Parse()
        parser = httptools.HttpResponseParser(state)
        state.parser = parser
        got_bytes = False
        try:
            writer.write(raw)
            await writer.drain()
            while not state.done:
                data = await reader.read(65536)
                if not data:
                    raise ConnectionResetError("connection closed by the upstream")
                got_bytes = True
                parser.feed_data(data)
        except (OSError, httptools.HttpParserError) as err:
            _close(writer)
            if reused and not got_bytes:
                raise _StaleConnectionError from None
            if not got_bytes and isinstance(err, ConnectionRefusedError):
                raise ConnectError(f"{self.base_url}: {err}") from None
            raise ResponseError(f"{self.base_url}: {type(err).__name__}: {err}") from None
        except BaseException:
            # Cancelled or timed out half-way: the connection's state is unknown.
            _close(writer)
            raise
        if state.keep_alive and len(self._idle) < self.max_idle:
            self._idle.append(conn)
        else:
            _close(writer)
        return Response(parser.get_status_code(), state.headers, b"".join(state.chunks))

    async def aclose(self) -> None:
        """Close every idle connection."""
        idle, self._idle = self._idle, []
        for _reader, writer in idle:
            _close(writer)


class _StaleConnectionError(Exception):
    """A reused keep-alive connection failed before any response byte arrived."""


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()
