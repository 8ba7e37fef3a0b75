"""A small keep-alive HTTP/1.1 client for the router's upstreams (asyncio protocol + httptools).

Why not httpx: the router sits on the hot path of every prediction, and httpx's per-request
overhead was most of the router's CPU in the benchmark. Why not asyncio streams: a stream
reader/writer pair, a fresh parser and an `asyncio.timeout` per request cost more than the
exchange itself. This client does only what the router needs: one upstream host per pool,
keep-alive connections (each keeps one parser for all its responses), Content-Length and
chunked responses (httptools decodes them), and errors that say whether the request could have
reached the server (:class:`ConnectError`: it did not, so a retry elsewhere is always safe).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import cast
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


class _StaleConnectionError(Exception):
    """A reused keep-alive connection failed before any response byte arrived."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one request in flight (no pipelining)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False
        self._waiter: asyncio.Future[Response] | None = None
        self._got_bytes = False
        self._headers: list[tuple[bytes, bytes]] = []
        self._chunks: list[bytes] = []
        self.keep_alive = False

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.close()  # bytes nobody asked for: the connection's state is unknown
            return
        self._got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as err:
            self._fail(ResponseError(f"invalid HTTP response: {err}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.reused and not self._got_bytes:
            self._fail(_StaleConnectionError())
        else:
            reason = f"{type(exc).__name__}: {exc}" if exc else "connection closed by the upstream"
            self._fail(ResponseError(reason))

    # -- httptools callbacks -----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        # llhttp resets its flags once the message is done: read keep-alive here, not after.
        self.keep_alive = bool(self.parser.should_keep_alive())
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(
                Response(self.parser.get_status_code(), self._headers, b"".join(self._chunks))
            )

    # -- client side -------------------------------------------------------------------------

    def send(self, raw: bytes, waiter: asyncio.Future[Response]) -> None:
        self._waiter = waiter
        self._got_bytes = False
        self._headers = []
        self._chunks = []
        assert self.transport is not None
        self.transport.write(raw)

    def done(self) -> None:
        """The exchange is over (answered, failed or abandoned)."""
        self._waiter = None
        self.reused = True

    def _fail(self, err: Exception) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(err)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            with contextlib.suppress(Exception):
                self.transport.close()


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
        self._idle: list[_Connection] = []

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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # A pooled connection may have been closed by the server while idle; such a failure
        # before any response byte is retried once on a fresh connection.
        while self._idle:
            conn = self._idle.pop()
            if conn.closed:
                continue
            try:
                return await self._exchange(loop, conn, raw, deadline, path, timeout)
            except _StaleConnectionError:
                continue
        conn = await self._connect(loop, deadline, path, timeout)
        try:
            return await self._exchange(loop, conn, raw, deadline, path, timeout)
        except _StaleConnectionError:  # cannot happen on a fresh connection; keep mypy honest
            raise ResponseError(f"{self.base_url}: connection closed before any answer") from None

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, deadline: float, path: str, timeout: float
    ) -> _Connection:
        limit = min(self.connect_timeout, max(deadline - loop.time(), 0.0))
        try:
            async with asyncio.timeout(limit):
                _transport, conn = await loop.create_connection(_Connection, self.host, self.port)
        except TimeoutError:
            if loop.time() >= deadline:
                raise UpstreamTimeoutError(
                    f"{self.base_url}{path}: no response within {timeout}s"
                ) from None
            raise ConnectError(f"cannot connect to {self.base_url}: timed out") from None
        except OSError as err:
            raise ConnectError(f"cannot connect to {self.base_url}: {err}") from None
        return conn

    async def _exchange(
        self,
        loop: asyncio.AbstractEventLoop,
        conn: _Connection,
        raw: bytes,
        deadline: float,
        path: str,
        timeout: float,
    ) -> Response:
        waiter: asyncio.Future[Response] = loop.create_future()
        # One timer handle per request, cheaper than an asyncio.timeout context.
        timer = loop.call_at(deadline, _expire, waiter)
        try:
            conn.send(raw, waiter)
            resp = await waiter
        except TimeoutError:
            conn.close()
            raise UpstreamTimeoutError(
                f"{self.base_url}{path}: no response within {timeout}s"
            ) from None
        except ResponseError as err:
            conn.close()
            raise ResponseError(f"{self.base_url}: {err}") from None
        except BaseException:
            # Stale, cancelled or failed half-way: the connection's state is unknown.
            conn.close()
            raise
        finally:
            timer.cancel()
            conn.done()
        if conn.keep_alive and not conn.closed and len(self._idle) < self.max_idle:
            self._idle.append(conn)
        else:
            conn.close()
        return resp

    async def aclose(self) -> None:
        """Close every idle connection."""
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _expire(waiter: asyncio.Future[Response]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
