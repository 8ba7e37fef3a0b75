"""The base of Mainsail's small JSON HTTP services (the drift sidecar, the retrain trigger).

:class:`JsonHandler` is a `BaseHTTPRequestHandler` that speaks JSON: keep-alive with Nagle off,
one place for sending bodies and errors, path and query parsing, a request body read that
answers 411 without a Content-Length and 413 above the service's limit, JSON parsing bounded in
depth (`mainsail.core.limits`), and a bearer-token check (:meth:`JsonHandler.authorized`).
Subclasses implement `do_GET` / `do_POST` with these helpers. Standard library only.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from http.server import BaseHTTPRequestHandler
from typing import Any

from mainsail.core.limits import LimitError, bearer_ok, load_json

__all__ = ["JsonHandler"]


class JsonHandler(BaseHTTPRequestHandler):
    """JSON request handling shared by the services; see the module docstring."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate writes: without this, Nagle and delayed ACKs add
    # ~40 ms to every keep-alive request.
    disable_nagle_algorithm = True
    #: Largest request body accepted (413 above it).
    max_body_bytes = 8 * 1024 * 1024
    #: Where access lines go (at DEBUG).
    log = logging.getLogger("mainsail.http")

    def log_message(self, format: str, *args: Any) -> None:
        self.log.debug("%s " + format, self.address_string(), *args)

    def send_body(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        """Send a complete response."""
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, code: int, obj: Any) -> None:
        """Send `obj` as JSON."""
        self.send_body(code, json.dumps(obj).encode())

    def send_error_json(self, code: int, message: str) -> None:
        """Send `{"error": message}`, personal data in it (an echoed input) redacted."""
        from mainsail.core.privacy import redact
        from mainsail.core.telemetry import STATE

        self.send_json(code, {"error": redact(message, STATE.redact)})

    def route(self) -> tuple[str, dict[str, str]]:
        """The request's path and its query parameters (the last value of each)."""
        parsed = urllib.parse.urlsplit(self.path)
        return parsed.path, {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query).items()}

    def on_body_too_large(self, length: int) -> None:
        """Hook called before a 413 (e.g. to count the rejection)."""

    def read_body(self) -> bytes | None:
        """The request body, or None after answering 411 (no length) or 413 (too large)."""
        length_header = self.headers.get("Content-Length")
        if length_header is None or not length_header.isdigit():
            self.send_error_json(411, "a Content-Length header is required")
            return None
        length = int(length_header)
        if length > self.max_body_bytes:
            self.on_body_too_large(length)
            self.close_connection = True
            self.send_error_json(
                413, f"body of {length} bytes exceeds the limit of {self.max_body_bytes}"
            )
            return None
        return self.rfile.read(length)

    def parse_json(self, raw: bytes) -> tuple[bool, Any]:
        """`(True, value)`, or `(False, None)` after answering 400 for a body that is not JSON
        or is nested too deeply."""
        try:
            return True, load_json(raw)
        except LimitError as err:
            self.send_error_json(400, str(err))
            return False, None

    def authorized(self, token: str | None, env_name: str) -> bool:
        """Whether the request carries `Authorization: Bearer <token>`; answers 401 (wrong or
        missing token) or 403 (no token configured: the endpoint stays closed) when not."""
        if not token:
            self.send_error_json(403, f"this endpoint is disabled: set {env_name} and restart")
            return False
        if not bearer_ok(self.headers.get("Authorization"), token):
            self.send_response(401)
            body = json.dumps({"error": "missing or wrong bearer token"}).encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("WWW-Authenticate", 'Bearer realm="mainsail"')
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return False
        return True
