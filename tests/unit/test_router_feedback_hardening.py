"""Ground truth through the router: labels checked against the model, reused ids kept (issue 19)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from mainsail.feedback.store import FeedbackStore
from mainsail.serving.router.app import RouterSettings, create_router
from tests.support.router import LeanServerThread, ServerThread, V2Upstream, infer_body


class ClassUpstream(V2Upstream):
    """Answers like the Mainsail runtime: `label` (BYTES), `probability`, and `classes`."""

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        async def runtime_like(message):  # type: ignore[no-untyped-def]
            if message["type"] == "http.response.body" and b'"outputs"' in message["body"]:
                answer = {
                    "model_name": "churn",
                    "parameters": {"classes": ["0", "1"]},
                    "outputs": [
                        {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["1"]},
                        {"name": "probability", "datatype": "FP64", "shape": [1], "data": [0.8]},
                    ],
                }
                message = {**message, "body": json.dumps(answer).encode()}
            await send(message)

        await super().__call__(scope, receive, runtime_like)


@pytest.fixture
def router(tmp_path: Path):  # type: ignore[no-untyped-def]
    upstream = ServerThread(ClassUpstream()).start()
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    settings = RouterSettings.model_validate(
        {
            "model_name": "churn",
            "router": {"health_interval_s": 0.1},
            "feedback_url": url,
            "variants": [{"role": "champion", "url": upstream.url, "model": "churn", "weight": 1}],
        }
    )
    server = LeanServerThread(create_router(settings, "t0ken")).start()
    try:
        yield server, url
    finally:
        server.stop()
        upstream.stop()


def _predict(server: LeanServerThread, rid: str) -> None:
    r = httpx.post(
        f"{server.url}/v2/models/churn/infer", json=infer_body(), headers={"x-request-id": rid}
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("label", [{"a": 1}, [1, 0], "banana", "x" * 100_000, True, 0.5, None])
def test_a_label_that_is_not_a_class_is_a_400_naming_the_request(router, label) -> None:  # type: ignore[no-untyped-def]
    server, _ = router
    _predict(server, "req-1")
    r = httpx.post(f"{server.url}/feedback", json={"labels": {"req-1": label}})
    assert r.status_code == 400, r.text
    assert "req-1" in r.json()["error"] and len(r.text) < 600
    ok = httpx.post(f"{server.url}/feedback", json={"labels": {"req-1": "1"}})
    assert ok.status_code == 200 and ok.json()["accepted"] == 1, ok.text


def test_deep_feedback_json_is_a_400(router) -> None:  # type: ignore[no-untyped-def]
    server, _ = router
    raw = '{"labels": {"a": ' + "[" * 5000 + "]" * 5000 + "}}"
    r = httpx.post(f"{server.url}/feedback", content=raw)
    assert r.status_code == 400 and "nested too deeply" in r.json()["error"]


def test_a_reused_request_id_is_kept_under_a_new_name_not_hidden(router) -> None:  # type: ignore[no-untyped-def]
    server, url = router
    for _ in range(3):
        _predict(server, "same-id")
    store = FeedbackStore(url)
    labels = {"same-id": "0", "same-id~2": "1", "same-id~3": "1"}
    accepted = 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the router writes its queue every 0.2 s
        answer = store.record_feedback(labels)
        accepted += answer["accepted"]
        if answer["unknown"] == 0:
            break
        time.sleep(0.2)
    assert accepted == 3 and answer["unknown"] == 0  # three predictions, three labels
    deadline = time.monotonic() + 5
    while True:  # counted right after the write that renamed them
        metrics = httpx.get(f"{server.url}/metrics").text
        if "mainsail_feedback_reused_ids_total 2.0" in metrics or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert "mainsail_feedback_reused_ids_total 2.0" in metrics, metrics
    store.close()


def test_an_id_over_the_limit_is_refused_at_prediction_time(router) -> None:  # type: ignore[no-untyped-def]
    server, _ = router
    r = httpx.post(
        f"{server.url}/v2/models/churn/infer",
        json=infer_body(),
        headers={"x-request-id": "r" * 101},
    )
    assert r.status_code == 400 and "at most 100" in r.json()["error"]
