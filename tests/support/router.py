"""Real HTTP servers for the router tests, each on a free loopback port in a thread.

`ServerThread` serves any ASGI app with uvicorn; `LeanServerThread` serves a router with its own
lean HTTP server (`mainsail.serving.router.server`, what `python -m mainsail.serving.router`
runs). `V2Upstream` is a tiny V2 model server (a real HTTP server, not a mock of one) whose
readiness, answer, delay and status the test controls, and which records what it received.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from mainsail.core.ports import free_port


async def read_body(receive: Any) -> bytes:
    """The whole request body of an ASGI HTTP request."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


class ServerThread:
    """Serve an ASGI app with uvicorn in a background thread."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            loop="asyncio",
            log_level="error",
            access_log=False,
            lifespan="auto",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"server on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class LeanServerThread:
    """Serve a router with its lean HTTP server on a uvloop loop in a background thread."""

    def __init__(self, router: Any, port: int | None = None) -> None:
        import uvloop

        self.router = router
        self.port = port or free_port()
        self.loop = uvloop.new_event_loop()
        self.server: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from mainsail.serving.router.server import RouterServer

        asyncio.set_event_loop(self.loop)
        self.server = RouterServer(self.router, "127.0.0.1", self.port)
        try:
            self.loop.run_until_complete(self.server.serve(install_signal_handlers=False))
        except BaseException as err:  # surfaced by start() / stop()
            self.error = err
        finally:
            self.loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LeanServerThread:
        self.thread.start()
        deadline = time.monotonic() + 15
        while self.server is None or not self.server.started.is_set():
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(
                    f"lean router server on port {self.port} did not start: {self.error!r}"
                )
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.server.stop)
        self.thread.join(10)
        assert not self.thread.is_alive(), "lean router server did not stop within 10 s"
        if self.error is not None:
            raise self.error


@dataclass
class V2Upstream:
    """A minimal V2 server for one model whose behaviour the test sets."""

    model: str = "churn"
    label: int = 0
    ready: bool = True
    status: int = 200
    delay_s: float = 0.0
    received: list[dict[str, Any]] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)
    answer: Callable[[dict[str, Any]], list[dict[str, Any]]] | None = None
    """Outputs of the answer, computed from the request (default: `label` and 0.25)."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = await read_body(receive)
        path = scope["path"]
        if path == f"/v2/models/{self.model}/ready":
            await _answer(send, 200 if self.ready else 503, {"ready": self.ready})
        elif path == f"/v2/models/{self.model}/infer" and scope["method"] == "POST":
            headers = dict(scope["headers"])
            self.request_ids.append(headers.get(b"x-request-id", b"").decode())
            self.received.append(json.loads(body))
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            payload = {
                "model_name": self.model,
                "outputs": self.answer(self.received[-1])
                if self.answer is not None
                else [
                    {"name": "predict", "datatype": "INT64", "shape": [1], "data": [self.label]},
                    {"name": "proba", "datatype": "FP64", "shape": [1], "data": [0.25]},
                ],
            }
            await _answer(send, self.status, payload if self.status == 200 else {"error": "boom"})
        else:
            await _answer(send, 404, {"error": f"no route {path}"})


async def _answer(send: Any, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def infer_body(value: float = 1.0, customer: str | None = None) -> dict[str, Any]:
    """A valid V2 infer request with one FP64 row of four features."""
    body: dict[str, Any] = {
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [value] * 4}]
    }
    if customer is not None:
        body["inputs"].append(
            {"name": "customer_id", "shape": [1], "datatype": "BYTES", "data": [customer]}
        )
    return body


def start_router(
    upstreams: dict[str, ServerThread],
    weights: dict[str, int],
    token: str | None = "s3cret",
    server: str = "lean",
    **router_cfg: Any,
) -> tuple[ServerThread | LeanServerThread, Any]:
    """A router in front of `upstreams` (role -> server); returns (server, Router).

    `server`: "lean" (the router's own HTTP server, as shipped) or "uvicorn" (the router as a
    plain ASGI app)."""
    from mainsail.serving.router.app import RouterSettings, create_router

    settings = RouterSettings.model_validate(
        {
            "model_name": "churn",
            "seed": 7,
            "router": {"health_interval_s": 0.1, "health_timeout_s": 0.5, **router_cfg},
            "variants": [
                {
                    "role": role,
                    "url": server.url,
                    "model": "churn",
                    "version": f"v-{role}",
                    "weight": weights.get(role, 0),
                }
                for role, server in upstreams.items()
            ],
        }
    )
    router = create_router(settings, token)
    if server == "lean":
        return LeanServerThread(router).start(), router
    if server == "uvicorn":
        return ServerThread(router).start(), router
    raise ValueError(f"unknown server {server!r}; use lean or uvicorn")
