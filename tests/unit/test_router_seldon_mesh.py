"""Behind Seldon Core 2's mesh the gateway names each variant's Model in the `Seldon-Model`
header, the header Envoy routes by: on inference, health checks, metadata and after a restart
from its state file.

Real HTTP: the router and a stand-in for the mesh (one server that routes by that header to two
V2 model servers, and answers 404 without it, as Seldon's Envoy does) run on loopback.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from mainsail.serving.router.app import RouterSettings, create_router
from tests.support.router import LeanServerThread, ServerThread, V2Upstream, infer_body


class Mesh:
    """One upstream for every Model: dispatch on `seldon-model`, 404 without a known one."""

    def __init__(self, models: dict[str, V2Upstream]) -> None:
        self.models = models
        self.seen: Counter[str] = Counter()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            name = dict(scope["headers"]).get(b"seldon-model", b"").decode()
            self.seen[name] += 1
            if name in self.models:
                await self.models[name](scope, receive, send)
                return
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"no route"})
            return
        await V2Upstream()(scope, receive, send)  # lifespan


def _settings(url: str, state: Path) -> RouterSettings:
    return RouterSettings.model_validate(
        {
            "model_name": "churn",
            "seed": 7,
            "state_file": str(state),
            "router": {"health_interval_s": 0.1, "health_timeout_s": 0.5},
            "variants": [
                {
                    "role": role,
                    "url": url,
                    "model": model,
                    "version": version,
                    "weight": weight,
                    "headers": {"Seldon-Model": model},
                }
                for role, model, version, weight in [
                    ("champion", "churn-v1", "1", 50),
                    ("challenger", "churn-v2", "2", 50),
                ]
            ],
        }
    )


def test_each_variant_reaches_its_model_through_one_mesh(tmp_path: Path) -> None:
    v1, v2 = V2Upstream(model="churn-v1", label=0), V2Upstream(model="churn-v2", label=1)
    mesh = Mesh({"churn-v1": v1, "churn-v2": v2})
    upstream = ServerThread(mesh).start()
    state = tmp_path / "state.json"
    router = LeanServerThread(create_router(_settings(upstream.url, state), "s3cret")).start()
    try:
        with httpx.Client(base_url=router.url) as client:
            seen = Counter(
                client.post("/v2/models/churn/infer", json=infer_body()).headers[
                    "x-mainsail-variant"
                ]
                for _ in range(100)
            )
            assert seen["champion"] + seen["challenger"] == 100
            assert seen["champion"] > 0 and seen["challenger"] > 0
            assert len(v1.received) == seen["champion"]
            assert len(v2.received) == seen["challenger"]
            # an admin change is saved with the headers
            auth = {"authorization": "Bearer s3cret"}
            assert client.put("/admin/weights", json={"champion": 0}, headers=auth).is_success
        assert "" not in mesh.seen, "a request reached the mesh without Seldon-Model"
        saved = json.loads(state.read_text())["variants"]
        assert saved["challenger"]["headers"] == {"Seldon-Model": "churn-v2"}
    finally:
        router.stop()

    # a restarted gateway resumes the saved split, headers included
    again = LeanServerThread(create_router(_settings(upstream.url, state), "s3cret")).start()
    try:
        before = len(v2.received)
        with httpx.Client(base_url=again.url) as client:
            for _ in range(20):
                r = client.post("/v2/models/churn/infer", json=infer_body())
                assert r.status_code == 200 and r.headers["x-mainsail-variant"] == "challenger"
        assert len(v2.received) == before + 20
    finally:
        again.stop()
        upstream.stop()
