"""A lean HTTP/1.1 server for the router: one asyncio protocol over httptools.

Why not uvicorn on the hot path: in the micro-benchmark (bench/bench_router.py --micro-only)
uvicorn's per-request work (ASGI scope, task and message events, header checks) plus its two
writes per answer (head, then body: two loopback sends) were a large part of the router's CPU
per request. Here `POST /v2/models/{name}/infer` goes straight to :meth:`Router.answer_infer`
and each answer leaves in one write. Every other request (health, metrics, admin, feedback,
model metadata: small and rare) goes to the router's ASGI app through a buffered bridge.

HTTP handled: 1.0 and 1.1, keep-alive, pipelined requests (answered one at a time, in order),
chunked request bodies (httptools decodes them), `Expect: 100-continue`, a body limit (a larger
body is read and dropped, then answered 413), an idle keep-alive timeout and a graceful stop
(stop accepting, let answers in progress finish, close). Upgrades (WebSocket, h2c) are refused.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import re
import signal
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, cast
from urllib.parse import unquote_to_bytes

import httptools

from mainsail.core.asgi import ASGIApp, Message, Scope

if TYPE_CHECKING:
    from mainsail.serving.router.app import Router

log = logging.getLogger("mainsail.router.server")

Headers = list[tuple[bytes, bytes]]
Answer = tuple[int, Headers, bytes]

KEEP_ALIVE_S = 5.0
"""Idle seconds before a keep-alive connection is closed (uvicorn's default too)."""
MAX_PIPELINED = 16
"""Requests parsed ahead of their answers before the connection stops reading."""
LINGER_S = 2.0
"""How long a connection that sent a malformed request is drained before it is closed."""
MAX_HEAD_BYTES = 64 * 1024
"""Largest request line plus headers accepted (llhttp itself sets no limit)."""
_INFER = re.compile(rb"^/v2/models/([^/]+)/infer$")
_JSON_ERROR = [(b"content-type", b"application/json")]


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode()


_STATUS_LINES = {s.value: _status_line(s.value) for s in HTTPStatus}


@dataclass(slots=True)
class _Request:
    method: bytes
    target: bytes
    headers: Headers
    body: bytes | None  # None: larger than the limit
    keep_alive: bool


class _Connection(asyncio.Protocol):
    """One client connection: parse requests, answer them in order."""

    def __init__(self, server: RouterServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()  # protocols are built on the serving loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: collections.deque[_Request] = collections.deque()
        self.busy = False
        self.paused = False
        self.closed = False
        self.failed = False
        self.pending_fail: tuple[int, str] | None = None
        self.lost: asyncio.Future[None] = self.loop.create_future()
        # When the connection last went idle (None while a request is in progress); the
        # server's sweep closes it after KEEP_ALIVE_S (cheaper than a timer per request).
        self.idle_since: float | None = self.loop.time()
        self._reset()

    def _reset(self) -> None:
        self.target = b""
        self.headers: Headers = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.head_size = 0

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.failed:
            return  # lingering after a malformed request: drop the rest
        self.idle_since = None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as err:
            if self.head_size > MAX_HEAD_BYTES:
                self._fail(431, f"request line and headers exceed {MAX_HEAD_BYTES} bytes")
            else:
                self._fail(400, f"malformed HTTP request: {err}")

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset()

    def on_url(self, url: bytes) -> None:
        self.target += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))
        self._count_head(len(name) + len(value))

    def _count_head(self, size: int) -> None:
        self.head_size += size
        if self.head_size > MAX_HEAD_BYTES:
            # Raised inside a parser callback: feed_data turns it into an HttpParserError.
            raise ValueError("request head too large")

    def on_headers_complete(self) -> None:
        for name, value in self.headers:
            if name == b"expect" and value.lower() == b"100-continue" and self.transport:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.server.max_body_bytes:
            self.chunks.clear()  # read and drop the rest: answering early would reset the client
        else:
            self.chunks.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self.chunks) if self.size <= self.server.max_body_bytes else None
        request = _Request(
            self.parser.get_method(),
            self.target,
            self.headers,
            body,
            bool(self.parser.should_keep_alive()),
        )
        self._reset()
        self.queue.append(request)
        if len(self.queue) >= MAX_PIPELINED and self.transport and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        if not self.busy:
            self._next()

    # -- answering ---------------------------------------------------------------------------

    def _next(self) -> None:
        if self.closed:
            return
        if not self.queue:
            self.busy = False
            if self.pending_fail is not None:
                self._flush_fail()
                return
            if self.paused and self.transport is not None:
                self.paused = False
                self.transport.resume_reading()
            self.idle_since = self.loop.time()
            return
        self.busy = True
        request = self.queue.popleft()
        task = self.loop.create_task(self._answer(request))
        self.server.tasks.add(task)
        task.add_done_callback(self.server.tasks.discard)

    async def _answer(self, request: _Request) -> None:
        try:
            status, headers, body = await self.server.dispatch(request, self)
        except Exception:
            log.exception("unhandled error answering %s", request.target[:200])
            status, headers, body = 500, _JSON_ERROR, b'{"error": "internal router error"}'
        if self.closed or self.transport is None or self.transport.is_closing():
            return  # the client went away meanwhile
        keep_alive = request.keep_alive and not self.server.stopping
        head = [_STATUS_LINES.get(status) or _status_line(status)]
        for name, value in headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"content-length: %d\r\n" % len(body))
        if not keep_alive:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        if request.method != b"HEAD":
            head.append(body)
        self.transport.write(b"".join(head))  # one write: one loopback send per answer
        if keep_alive:
            self._next()
        else:
            self.close()

    def _fail(self, status: int, message: str) -> None:
        """A request could not be parsed: answer it after the requests before it, then close
        (the byte stream is out of step, nothing after it can be read)."""
        self.failed = True
        self.pending_fail = (status, message)
        if not self.busy:
            self._flush_fail()

    def _flush_fail(self) -> None:
        """Write the error answer and close lingering: closing with unread bytes would reset
        the connection and the client could lose the answer, so the write side is shut and
        what the client still sends is dropped until it closes (at most LINGER_S)."""
        status, message = self.pending_fail or (400, "malformed HTTP request")
        self.pending_fail = None
        if self.transport is None or self.closed or self.transport.is_closing():
            return
        body = json.dumps({"error": message[:200]}).encode()
        self.transport.write(
            _STATUS_LINES[status]
            + b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body)
            + b"connection: close\r\n\r\n"
            + body
        )
        if self.paused:
            self.paused = False
            self.transport.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_S, self.close)
        else:
            self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class RouterServer:
    """Serves a :class:`Router` on one host and port; see the module docstring."""

    def __init__(self, router: Router, host: str, port: int) -> None:
        self.router = router
        self.host = host
        self.port = port
        self.max_body_bytes = router.cfg.max_body_bytes
        self.connections: set[_Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = False
        self.started = asyncio.Event()
        self._stop = asyncio.Event()

    async def dispatch(self, request: _Request, conn: _Connection) -> Answer:
        path, _, query = request.target.partition(b"?")
        if b"%" in path:
            path = unquote_to_bytes(path)
        match = _INFER.match(path)
        if match is not None:
            headers = dict(request.headers)
            name = match.group(1).decode("utf-8", "replace")
            return await self.router.answer_infer(
                request.method.decode("latin-1"), name, headers, request.body
            )
        if request.body is None:
            return 413, _JSON_ERROR, b'{"error": "request body too large"}'
        return await _call_asgi(self.router, request, path, query, conn)

    async def _sweep_idle(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            limit = loop.time() - KEEP_ALIVE_S
            for conn in list(self.connections):
                if conn.idle_since is not None and conn.idle_since < limit and not conn.busy:
                    conn.close()

    def stop(self) -> None:
        """Ask :meth:`serve` to stop (thread-unsafe: call it on the server's loop)."""
        self._stop.set()

    async def serve(self, install_signal_handlers: bool = True) -> None:
        """Run the router's start-up, serve until :meth:`stop` (or SIGINT/SIGTERM), shut down."""
        loop = asyncio.get_running_loop()
        if install_signal_handlers:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.stop)
        async with self.router.lifespan():
            server = await loop.create_server(
                lambda: _Connection(self), self.host, self.port, backlog=2048
            )
            if self.port == 0:
                self.port = server.sockets[0].getsockname()[1]
            self.started.set()
            sweep = asyncio.create_task(self._sweep_idle())
            try:
                await self._stop.wait()
            finally:
                sweep.cancel()
                self.stopping = True
                server.close()
                for conn in list(self.connections):
                    if not conn.busy:
                        conn.close()
                if self.tasks:
                    await asyncio.wait(list(self.tasks), timeout=5.0)
                for conn in list(self.connections):
                    conn.close()
                await server.wait_closed()


# -- the ASGI bridge for the rare routes ------------------------------------------------------


async def _call_asgi(
    app: ASGIApp, request: _Request, path: bytes, query: bytes, conn: _Connection
) -> Answer:
    """Run one buffered request through an ASGI app and collect its whole answer."""
    transport = conn.transport
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method.decode("latin-1"),
        "scheme": "http",
        "path": path.decode("utf-8", "replace"),
        "raw_path": request.target.partition(b"?")[0],
        "query_string": query,
        "root_path": "",
        "headers": request.headers,
        "client": transport.get_extra_info("peername") if transport else None,
        "server": transport.get_extra_info("sockname") if transport else None,
        "state": {},
    }
    sent_body = False
    status: int | None = None
    headers: Headers = []
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": request.body or b"", "more_body": False}
        await conn.lost  # nothing more to read: wait for the client to go away
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = int(message["status"])
            headers = [
                (bytes(k).lower(), bytes(v))
                for k, v in message.get("headers", [])
                if bytes(k).lower() not in (b"content-length", b"transfer-encoding", b"connection")
            ]
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))

    await app(scope, receive, send)
    if status is None:
        raise RuntimeError(f"the app sent no answer to {scope['method']} {scope['path']}")
    return status, headers, b"".join(chunks)


def run(router: Router, host: str, port: int) -> None:
    """Serve `router` until SIGINT or SIGTERM (uvloop when installed)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in the pipeline env
        asyncio.run(RouterServer(router, host, port).serve())
        return

    async def main() -> None:
        await RouterServer(router, host, port).serve()

    uvloop.run(main())


__all__ = ["RouterServer", "run"]
