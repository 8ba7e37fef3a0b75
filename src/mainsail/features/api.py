"""Mainsail's online feature server: Feast's `POST /get-online-features`, read straight from
the online store (pipeline env: needs Feast).

`feast serve` answers a lookup through gunicorn, FastAPI, a worker thread and
`get_online_features`' per-call planning: about 9 ms for one entity on a 2-core machine. This
server answers the same request body with the same JSON answer (so
:class:`~mainsail.features.http.HttpLookup`, and any client of Feast's REST API that names
the feature service or its features, works against either) from
:meth:`SdkLookup.columns <mainsail.features.online.SdkLookup.columns>`: one `online_read`
per view, inline on one event loop (uvicorn with httptools and uvloop).

It serves data, so every lookup needs the bearer token the server was started with
(`Authorization: Bearer ...`, compared in constant time); `/health` needs none. A malformed
request gets a 4xx naming what is wrong (the field, the position, what was expected); an
unreachable store a 503.
"""

from __future__ import annotations

import hmac
import json
from datetime import UTC, datetime
from typing import Any

from mainsail.core.asgi import JSON, Receive, Scope, Send, send_body
from mainsail.features.freshness import check_entity_ids
from mainsail.features.online import MAX_BATCH, SdkLookup

MAX_BODY = 1 << 20
"""Largest request body read (1 MiB: 1,000 ids of 1 KiB each)."""


class RefusedError(Exception):
    """A request the server refuses: HTTP `status` and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _iso(epoch: float) -> str | None:
    if not epoch:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FeatureApi:
    """The ASGI app: `GET /health`, `POST /get-online-features` (see the module docstring)."""

    def __init__(self, lookup: SdkLookup, token: str) -> None:
        if not token:
            raise ValueError("the feature server needs a bearer token (it serves data)")
        self.lookup, self.spec = lookup, lookup.spec
        self._auth = f"Bearer {token}".encode()
        self._refs = {f"{view}:{name}": name for view, name in self.spec.features}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        try:
            if path == "/health":
                if method != "GET":
                    raise RefusedError(405, "/health: use GET")
                await _answer(send, 200, b'{"status": "ok"}')
                return
            if path != "/get-online-features":
                raise RefusedError(404, f"{path}: not found (POST /get-online-features)")
            if method != "POST":
                raise RefusedError(405, "/get-online-features: use POST")
            self._authorize(scope)
            body = await _body(receive)
            await _answer(send, 200, self.answer(body))
        except RefusedError as err:
            await _answer(send, err.status, json.dumps({"error": str(err)}).encode())

    def _authorize(self, scope: Scope) -> None:
        given = b""
        for key, value in scope["headers"]:
            if key == b"authorization":
                given = value
        if not hmac.compare_digest(given, self._auth):
            raise RefusedError(401, "a valid 'Authorization: Bearer <token>' header is needed")

    def answer(self, body: bytes) -> bytes:
        """The JSON answer to one request body (Feast's format); RefusedError otherwise."""
        request = _parse(body)
        names = self._features(request)
        entities = request.get("entities")
        key = self.spec.entity_key
        if not isinstance(entities, dict) or set(entities) != {key}:
            found = sorted(entities) if isinstance(entities, dict) else type(entities).__name__
            raise RefusedError(400, f"entities: expected {{{key!r}: [ids]}}, got {found}")
        raw = entities[key]
        if not isinstance(raw, list):
            raise RefusedError(400, f"entities.{key}: expected a list of ids")
        if len(raw) > MAX_BATCH:
            raise RefusedError(400, f"entities.{key}: {len(raw)} ids, at most {MAX_BATCH}")
        try:
            ids = check_entity_ids(self.spec, raw)
        except ValueError as err:
            raise RefusedError(400, f"entities.{key}: {err}") from None
        try:
            values, present, stamps = self.lookup.columns(ids, every_stamp=True)
        except self.lookup.unavailable as err:
            raise RefusedError(503, f"online store unreachable: {err}") from None
        full = bool(request.get("full_feature_names"))
        results: list[dict[str, Any]] = [
            {
                "values": ids,
                "statuses": ["PRESENT"] * len(ids),
                "event_timestamps": [None] * len(ids),
            }
        ]
        out_names = [key]
        # A view's features share one list of event times: each list is formatted once.
        formatted: dict[int, list[str | None]] = {}
        for view, name in names:
            col, times = values[name], stamps[name]
            iso = formatted.get(id(times))
            if iso is None:
                iso = formatted[id(times)] = [_iso(t) for t in times]
            results.append(
                {
                    "values": col,
                    "statuses": ["PRESENT" if p else "NOT_FOUND" for p in present[name]],
                    "event_timestamps": iso,
                }
            )
            out_names.append(f"{view}__{name}" if full else name)
        return json.dumps(
            {"metadata": {"feature_names": out_names}, "results": results}, default=str
        ).encode()

    def _features(self, request: dict[str, Any]) -> list[tuple[str, str]]:
        """(view, feature) pairs the request names: the service, or some of its features."""
        service, refs = request.get("feature_service"), request.get("features")
        if (service is None) == (refs is None):
            raise RefusedError(400, "name either 'feature_service' or 'features', not both")
        if service is not None:
            if service != self.spec.service:
                raise RefusedError(
                    404,
                    f"feature_service: {service!r} is not served here ({self.spec.service!r} is)",
                )
            return list(self.spec.features)
        if not isinstance(refs, list) or not refs:
            raise RefusedError(400, "features: expected a non-empty list of 'view:feature'")
        pairs = []
        for i, ref in enumerate(refs):
            if ref not in self._refs:
                raise RefusedError(
                    400,
                    f"features[{i}]: {ref!r} is not a feature of service {self.spec.service!r} "
                    f"(expected 'view:feature', e.g. {next(iter(self._refs))!r})",
                )
            view = ref.split(":", 1)[0]
            pairs.append((view, self._refs[ref]))
        return pairs


def _parse(body: bytes) -> dict[str, Any]:
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise RefusedError(400, f"body: not JSON ({err})") from None
    if not isinstance(request, dict):
        raise RefusedError(400, f"body: expected a JSON object, got {type(request).__name__}")
    return request


async def _body(receive: Receive) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RefusedError(400, "client disconnected before the body ended")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise RefusedError(413, f"body: larger than {MAX_BODY} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send_body(send, status, body, [JSON])


def main(argv: list[str] | None = None) -> int:
    """`python -m mainsail.features.api --config C [--repo R] [--host H] [--port P]`: serve
    until stopped; the token comes from $MAINSAIL_FEATURES_TOKEN (never the command line)."""
    import argparse
    import os
    import sys
    from pathlib import Path

    import uvicorn

    from mainsail.config import load_config
    from mainsail.core import naming
    from mainsail.features.errors import FeatureStoreError
    from mainsail.features.layout import resolve_repo_dir

    parser = argparse.ArgumentParser(prog="mainsail.features.api", description=__doc__)
    parser.add_argument("--config", type=Path, required=True, help="project config (YAML)")
    parser.add_argument("--repo", type=Path, default=None, help="feature repository")
    parser.add_argument("--host", default=None, help="bind host (features.server_host)")
    parser.add_argument("--port", type=int, default=None, help="port (features.server_port)")
    args = parser.parse_args(argv)
    token = os.environ.get(naming.ENV_FEATURES_TOKEN, "")
    if not token:
        print(
            f"{naming.ENV_FEATURES_TOKEN} is not set: the feature server serves data and needs a "
            "bearer token",
            file=sys.stderr,
        )
        return 2
    cfg = load_config(args.config)
    try:
        repo = args.repo.resolve() if args.repo else None
        lookup = SdkLookup.from_config(
            cfg, repo or resolve_repo_dir(cfg, args.config.resolve().parent)
        )
    except FeatureStoreError as err:
        print(f"feature server: {err}", file=sys.stderr)
        return 2
    # One read of a key that does not exist: Feast's lazy imports and the store's connection
    # are paid before the first real request, not by it.
    probe: Any = 0 if lookup.spec.entity_type == "int64" else "__warmup__"
    try:
        lookup.columns([probe])
    except lookup.unavailable as err:
        print(f"feature server: online store unreachable: {err}", file=sys.stderr)
        return 2
    uvicorn.run(
        FeatureApi(lookup, token),
        host=args.host or cfg.features.server_host,
        port=args.port or cfg.features.server_port,
        http="httptools",
        loop="uvloop",
        log_level="warning",
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
