"""The Kubernetes deployer (mainsail.deploy.kubernetes) and the chart fit together: its Seldon
objects match the CRDs and land on the chart's Server, and every API request it makes is
allowed by the chart's least-privilege Role.

There is no Kubernetes API server here, so the RBAC test runs the deployer's real kubernetes
client against a small local HTTP stand-in that answers the custom-object endpoints like the API
server (201 on create, 409 when the object exists, 200 on get and replace) and records each
request. That stand-in is the only mock in this file.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mainsail.config import ProjectConfig, load_config
from mainsail.core import naming

from . import checks

pytestmark = pytest.mark.k8s

VERBS = {"POST": "create", "GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@pytest.fixture(scope="module")
def cfg() -> ProjectConfig:
    return load_config(checks.ROOT / "configs" / "churn.yaml")


@pytest.fixture(scope="module")
def deployed(cfg: ProjectConfig) -> list[checks.Obj]:
    from mainsail.deploy import kubernetes as k8s

    return k8s.render(cfg, champion=1, challenger=2, canary=10)


def test_deployer_objects_match_the_seldon_crds(
    deployed: list[checks.Obj], crds: checks.CrdSchemas
) -> None:
    assert [o["kind"] for o in deployed] == ["Model", "Model", "Experiment"]
    assert [p for o in deployed for p in checks.validate_object(o, crds)] == []
    for obj in deployed:
        labels = obj["metadata"]["labels"]
        assert [k for k in checks.REQUIRED_LABELS if not labels.get(k)] == []
        assert labels[naming.LABEL_COMPONENT] in naming.COMPONENTS


def test_deployer_models_land_on_the_charts_server(
    deployed: list[checks.Obj], default_objects: list[checks.Obj]
) -> None:
    server = next(o for o in default_objects if o["kind"] == "Server")
    bucket = next(
        o
        for o in default_objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "mainsail-feast"
    )["data"]["feature_store.yaml"]
    for model in deployed[:2]:
        assert model["metadata"]["namespace"] == server["metadata"]["namespace"]
        # Seldon places a Model on a Server that offers every capability it requires.
        assert set(model["spec"]["requirements"]) <= set(server["spec"]["extraCapabilities"])
        uri = model["spec"]["storageUri"]
        assert uri.startswith("s3://") and f"s3://{uri.split('/')[2]}/" in bucket


def test_examples_follow_the_deployer_layout(
    deployed: list[checks.Obj], example_objects: dict[str, list[checks.Obj]]
) -> None:
    examples = {o["metadata"]["name"]: o for o in example_objects["canary"]}
    for obj in deployed:
        example = examples[obj["metadata"]["name"]]
        assert example["kind"] == obj["kind"]
        if obj["kind"] == "Model":
            assert example["spec"]["storageUri"] == obj["spec"]["storageUri"]
        else:
            assert example["spec"]["default"] == obj["spec"]["default"]


class _FakeApiServer(BaseHTTPRequestHandler):
    """Custom-object endpoints of an API server, in memory; records (method, path)."""

    store: dict[str, dict[str, Any]]
    calls: list[tuple[str, str]]

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def do_POST(self) -> None:
        self.calls.append(("POST", self.path))
        obj = self._body()
        key = f"{self.path}/{obj['metadata']['name']}"
        if key in self.store:
            self._send(409, {"kind": "Status", "reason": "AlreadyExists", "code": 409})
            return
        obj["metadata"]["resourceVersion"] = "1"
        self.store[key] = obj
        self._send(201, obj)

    def do_GET(self) -> None:
        self.calls.append(("GET", self.path))
        if self.path in self.store:
            self._send(200, self.store[self.path])
        else:
            self._send(404, {"kind": "Status", "reason": "NotFound", "code": 404})

    def do_PUT(self) -> None:
        self.calls.append(("PUT", self.path))
        obj = self._body()
        obj["metadata"]["resourceVersion"] = "2"
        self.store[self.path] = obj
        self._send(200, obj)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_api() -> Iterator[tuple[str, list[tuple[str, str]]]]:
    calls: list[tuple[str, str]] = []
    handler = type("Handler", (_FakeApiServer,), {"store": {}, "calls": calls})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", calls
    finally:
        server.shutdown()
        server.server_close()


def allowed(role: checks.Obj, method: str, path: str, namespace: str) -> bool:
    """Whether the Role permits a request `method path` (namespaced custom object)."""
    parts = path.split("?")[0].strip("/").split("/")
    # /apis/<group>/<version>/namespaces/<ns>/<plural>[/<name>]
    if parts[0] != "apis" or parts[3] != "namespaces" or parts[4] != namespace:
        return False
    group, plural = parts[1], parts[5]
    verb = VERBS[method]
    if method == "GET" and len(parts) == 6:
        verb = "list"
    return any(
        group in r["apiGroups"] and plural in r["resources"] and verb in r["verbs"]
        for r in role["rules"]
    )


def test_every_request_of_the_deployer_is_allowed_by_the_charts_role(
    deployed: list[checks.Obj],
    default_objects: list[checks.Obj],
    fake_api: tuple[str, list[tuple[str, str]]],
) -> None:
    from kubernetes import client

    from mainsail.deploy import kubernetes as k8s

    url, calls = fake_api
    api_client = client.ApiClient(client.Configuration(host=url))
    first = k8s.apply(deployed, api_client)
    again = k8s.apply(deployed, api_client)  # a redeploy replaces what exists
    assert all(line.startswith("created") for line in first)
    assert all(line.startswith("replaced") for line in again)
    assert {m for m, _ in calls} == {"POST", "GET", "PUT"}

    role = next(o for o in default_objects if o["kind"] == "Role")
    ns = role["metadata"]["namespace"]
    assert [(m, p) for m, p in calls if not allowed(role, m, p, ns)] == []
    # The check itself refuses what the Role does not grant.
    assert not allowed(
        role, "DELETE", f"/apis/mlops.seldon.io/v1alpha1/namespaces/{ns}/models/x", ns
    )
    assert not allowed(role, "POST", f"/apis/mlops.seldon.io/v1alpha1/namespaces/{ns}/servers", ns)
    assert not allowed(role, "POST", "/apis/mlops.seldon.io/v1alpha1/namespaces/other/models", ns)
