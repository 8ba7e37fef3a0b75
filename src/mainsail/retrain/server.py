"""The retrain trigger's HTTP face: `POST /alerts` (the Alertmanager webhook), `GET /v1/runs`,
`/metrics` and `/healthz`, on the JSON handler that the drift sidecar uses too.

`POST /alerts` and `GET /v1/runs` need `Authorization: Bearer <token>` (the variable
`monitor.trigger.token_env` names it; Alertmanager sends it from its webhook's
`http_config.authorization.credentials_file`); both are refused while no token is set."""

from __future__ import annotations

import contextlib
import threading
from http.server import ThreadingHTTPServer

from prometheus_client import generate_latest

from mainsail.core.http import JsonHandler
from mainsail.retrain.trigger import MAX_BODY_BYTES, PayloadError, RetrainTrigger, log

__all__ = ["TriggerServer"]


class TriggerServer:
    """`POST /alerts` (Alertmanager webhook), `GET /v1/runs`, `/metrics`, `/healthz`."""

    def __init__(self, trigger: RetrainTrigger, host: str = "127.0.0.1", port: int = 0) -> None:
        self.trigger = trigger
        handler = type("Handler", (_Handler,), {"trigger": trigger})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> TriggerServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        with contextlib.suppress(KeyboardInterrupt):
            self.httpd.serve_forever()
        self.httpd.server_close()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(JsonHandler):
    trigger: RetrainTrigger
    max_body_bytes = MAX_BODY_BYTES
    log = log

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path, _ = self.route()
        if path == "/metrics":
            self.send_body(
                200, generate_latest(self.trigger.metrics.registry), "text/plain; version=0.0.4"
            )
        elif path == "/healthz":
            self.send_json(200, {"status": "ok"})
        elif path == "/v1/runs":
            if self.authorized(self.trigger.token, self.trigger.cfg.token_env):
                self.send_json(200, {"runs": self.trigger.runs()})
        else:
            self.send_error_json(404, f"no such endpoint: GET {path}")

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        path, _ = self.route()
        raw = self.read_body()
        if raw is None:
            return
        if path not in ("/alerts", "/v1/alerts"):
            self.send_error_json(404, f"no such endpoint: POST {path}")
            return
        if not self.authorized(self.trigger.token, self.trigger.cfg.token_env):
            return
        ok, payload = self.parse_json(raw)
        if not ok:
            return
        try:
            decisions = self.trigger.handle(payload)
        except PayloadError as err:
            self.send_error_json(400, str(err))
            return
        except Exception:
            log.exception("webhook handling failed")
            self.send_error_json(500, "internal error (see the trigger's log)")
            return
        self.send_json(200, {"decisions": decisions})
