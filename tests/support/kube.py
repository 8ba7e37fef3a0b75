"""A recorded fake of the Kubernetes API's custom-object endpoints (a real HTTP server).

`make test` runs without a cluster, so there the deployer's kubernetes-client calls are tested
against this stand-in (tests/cluster makes the same calls against the kind cluster's real API
server, `make kind-e2e`): it implements create (POST, 409 when the object exists), get
(GET, 404 when absent) and replace (PUT, 409 on a stale resourceVersion) for namespaced custom
objects, stores the objects, and records every request.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.support.router import read_body

_PATH = re.compile(
    r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)"
    r"(?:/(?P<name>[^/]+))?$"
)


class FakeKubeAPI:
    """ASGI app; `objects` maps (plural, namespace, name) -> stored object."""

    def __init__(
        self, forbidden_namespaces: tuple[str, ...] = (), concurrent_writes: int = 0
    ) -> None:
        self.forbidden = set(forbidden_namespaces)
        #: The next this-many GETs of a stored object are each followed by another client's
        #: write (its resourceVersion moves on), as a race with a controller would do.
        self.concurrent_writes = concurrent_writes
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self._rv = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        method, path = scope["method"], scope["path"]
        self.requests.append((method, path))
        match = _PATH.match(path)
        if match is None:
            await self._send(send, 404, _status(404, "NotFound", f"no route {path}"))
            return
        plural, ns, name = match["plural"], match["ns"], match["name"]
        if ns in self.forbidden:  # what RBAC answers a service account without the verb
            await self._send(send, 403, _status(403, "Forbidden", f"namespace {ns}"))
            return
        if method == "POST" and name is None:
            obj = json.loads(body)
            key = (plural, ns, obj["metadata"]["name"])
            if key in self.objects:
                await self._send(send, 409, _status(409, "AlreadyExists", "exists"))
                return
            await self._send(send, 201, self._store(key, obj))
        elif method == "GET" and name is not None:
            stored = self.objects.get((plural, ns, name))
            if stored is None:
                await self._send(send, 404, _status(404, "NotFound", name))
                return
            await self._send(send, 200, stored)
            if self.concurrent_writes > 0:
                self.concurrent_writes -= 1
                self._store((plural, ns, name), stored)
        elif method == "PUT" and name is not None:
            obj = json.loads(body)
            key = (plural, ns, name)
            current = self.objects.get(key)
            given = obj.get("metadata", {}).get("resourceVersion")
            if current is None or given != current["metadata"]["resourceVersion"]:
                await self._send(send, 409, _status(409, "Conflict", "stale resourceVersion"))
                return
            await self._send(send, 200, self._store(key, obj))
        else:
            await self._send(send, 405, _status(405, "MethodNotAllowed", method))

    def _store(self, key: tuple[str, str, str], obj: dict[str, Any]) -> dict[str, Any]:
        self._rv += 1
        obj = json.loads(json.dumps(obj))
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self.objects[key] = obj
        return obj

    @staticmethod
    async def _send(send: Any, status: int, payload: dict[str, Any]) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }
