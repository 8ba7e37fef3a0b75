"""The shadow stage on real parts: the router mirrors every request to the shadowed challenger,
records both answers in a real SQLite feedback store, and the promotion controller (built by
`build_controller`, acting through the router's admin API) pairs them by request id, reports,
and either stops the challenger at shadow or moves it to the first canary step.

The two V2 servers are real HTTP servers whose answers the test controls: the champion predicts
class 1 when the row's first value is at least 0.5; the challenger agrees except on a fixed
share of rows (chosen by the row's value), where it predicts the other class.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from prometheus_client import generate_latest

from mainsail.config import ProjectConfig, load_config
from mainsail.evaluate.card import deployed_card_path
from mainsail.feedback.store import FeedbackStore
from mainsail.promotion.controller import build_controller
from mainsail.promotion.metrics import PromotionMetrics
from mainsail.serving.router.app import RouterSettings, create_router
from tests.support.router import LeanServerThread, ServerThread, V2Upstream

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
TOKEN = "shadow-s3cret"
ROWS = 50


def answers(flip_share: float) -> Any:
    """A classifier's V2 outputs: class 1 when x >= 0.5, flipped on `flip_share` of the rows."""

    def outputs(request: dict[str, Any]) -> list[dict[str, Any]]:
        x = np.asarray(request["inputs"][0]["data"], dtype=float).reshape(-1, 4)[:, 0]
        label = (x >= 0.5).astype(int)
        flip = (x * 1000) % 1.0 < flip_share
        label = np.where(flip, 1 - label, label)
        p_one = np.where(flip, 1 - x, x)
        prob = np.where(label == 1, p_one, 1 - p_one)
        n = len(x)
        return [
            {"name": "label", "datatype": "BYTES", "shape": [n], "data": [str(v) for v in label]},
            {"name": "probability", "datatype": "FP64", "shape": [n], "data": prob.tolist()},
        ]

    return outputs


class Shadow:
    """Champion and challenger servers, the router mirroring to the challenger, the config."""

    def __init__(
        self,
        tmp: Path,
        flip_share: float,
        monkeypatch: pytest.MonkeyPatch,
        champion_flip: float = 0.0,
    ) -> None:
        self.champ = ServerThread(V2Upstream(answer=answers(champion_flip))).start()
        self.chall = ServerThread(V2Upstream(answer=answers(flip_share))).start()
        store_url = f"sqlite:///{tmp / 'feedback.db'}"
        settings = RouterSettings.model_validate(
            {
                "model_name": "churn",
                "router": {"health_interval_s": 0.1},
                "feedback_url": store_url,
                "variants": [
                    {
                        "role": "champion",
                        "url": self.champ.url,
                        "model": "churn",
                        "version": "1",
                        "weight": 100,
                    },
                    {
                        "role": "challenger",
                        "url": self.chall.url,
                        "model": "churn",
                        "version": "2",
                        "weight": 0,
                    },
                    {
                        "role": "mirror",
                        "url": self.chall.url,
                        "model": "churn",
                        "version": "2",
                        "weight": 100,
                    },
                ],
            }
        )
        self.router = LeanServerThread(create_router(settings, TOKEN)).start()
        monkeypatch.setenv("MAINSAIL_ROUTER_TOKEN", TOKEN)
        monkeypatch.setenv("MAINSAIL_S3_ACCESS_KEY", "unused")
        monkeypatch.setenv("MAINSAIL_S3_SECRET_KEY", "unused")
        self.cfg: ProjectConfig = load_config(
            REPO / "configs" / "churn.yaml",
            {
                "stack.router.port": self.router.port,
                "stack.data_dir": str(tmp / "stack"),
                "promotion.store_url": store_url,
                "registry.endpoint": "127.0.0.1:9",  # never contacted: the card exists
            },
        )
        # The deployed card exists (as after `mainsail deploy`): decisions are appended to it.
        card = deployed_card_path(self.cfg, "2")
        card.parent.mkdir(parents=True)
        card.write_text(yaml.safe_dump({"model_name": "churn", "version": "2"}))
        self.card = card
        self.store = FeedbackStore(store_url)
        self.rng = np.random.default_rng(5)
        self.sent = 0

    def traffic(self, requests: int, labels: bool, shadow: bool = True) -> None:
        truth: dict[str, str] = {}
        with httpx.Client(base_url=self.router.url, timeout=30) as client:
            for _ in range(requests):
                x = self.rng.random(ROWS)
                rid = uuid.uuid4().hex
                body = {
                    "inputs": [
                        {
                            "name": "x",
                            "shape": [ROWS, 4],
                            "datatype": "FP64",
                            "data": np.repeat(x, 4).tolist(),
                        }
                    ]
                }
                r = client.post("/v2/models/churn/infer", json=body, headers={"x-request-id": rid})
                assert r.status_code == 200
                assert r.headers["x-mainsail-variant"] == "champion" or not shadow
                truth.update(
                    {f"{rid}#{i}": str(int(self.rng.random() < v)) for i, v in enumerate(x)}
                )
            self.sent += requests
            deadline = time.monotonic() + 15
            # The router writes the store in the background: wait for its answers (and the
            # mirrored ones) to be there before the controller looks.
            while sum(self.store.requests_per_variant("churn").values()) < self.sent or (
                shadow and self.store.shadow_pairs("churn").rows < len(truth) * 0.95
            ):
                assert time.monotonic() < deadline, "answers did not reach the store"
                time.sleep(0.1)
            if labels:
                client.post("/feedback", json={"labels": truth}).raise_for_status()

    def state(self) -> dict[str, Any]:
        r = httpx.get(
            f"{self.router.url}/admin/state", headers={"authorization": f"Bearer {TOKEN}"}
        )
        return dict(r.json()["variants"])

    def stop(self) -> None:
        self.store.close()
        self.router.stop()
        self.champ.stop()
        self.chall.stop()


@pytest.fixture
def shadow_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    made: list[Shadow] = []

    def make(flip_share: float, champion_flip: float = 0.0) -> Shadow:
        made.append(Shadow(tmp_path, flip_share, monkeypatch, champion_flip))
        return made[-1]

    yield make
    for s in made:
        s.stop()


def _metric(metrics: PromotionMetrics, line_start: str) -> float:
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no series {line_start}")


def test_a_challenger_disagreeing_on_30_percent_is_stopped_at_shadow(shadow_factory: Any) -> None:
    s = shadow_factory(0.30)
    metrics = PromotionMetrics()
    controller = build_controller(s.cfg, metrics=metrics)
    assert controller.step() is not None  # the first look opens the stage
    s.traffic(130, labels=False)
    decision = controller.step()
    assert decision is not None and decision.action == "rollback", decision
    assert decision.reason.startswith("stopped at shadow")
    report = decision.shadow
    assert report is not None and report["gate"] == "fail"
    assert report["pairs"] >= 6000 and report["labelled"] == 0
    rate = report["disagreement"]
    assert abs(rate["estimate"] - 0.30) < 0.05 and rate["ci_low"] > 0.15
    # The challenger never served anyone and is out of the router: no weight, no mirror.
    state = s.state()
    assert state["challenger"]["weight"] == 0 and "mirror" not in state
    assert controller.step() is None  # nothing left to decide
    # Prometheus series, decision log, model card, report with its plot.
    assert _metric(metrics, 'mainsail_shadow_gate{model="churn",version="2"}') == -1
    est = _metric(
        metrics, 'mainsail_shadow_disagreement{model="churn",stat="estimate",version="2"}'
    )
    assert est == pytest.approx(rate["estimate"])
    logged = s.store.decisions("churn")[-1]
    assert logged["action"] == "rollback" and logged["evidence"]["stage"] == "shadow"
    assert logged["evidence"]["shadow"]["disagreement"]["estimate"] == rate["estimate"]
    card = yaml.safe_load(s.card.read_text())
    entry = card["promotion_history"][-1]
    assert entry["action"] == "rollback" and entry["shadow"]["gate"] == "fail"
    page = Path(entry["shadow"]["report"]).read_text()
    assert "data:image/png;base64," in page and "stopped at shadow" in page


def test_an_agreeing_better_challenger_passes_the_gate_and_starts_the_canary(
    shadow_factory: Any,
) -> None:
    # The champion answers the wrong class on 8% of the rows; the challenger never does: they
    # disagree on those 8%, and the labelled pairs show whose answers are right.
    s = shadow_factory(0.0, champion_flip=0.08)
    metrics = PromotionMetrics()
    controller = build_controller(s.cfg, metrics=metrics)
    controller.step()
    s.traffic(130, labels=True)
    decision = controller.step()
    assert decision is not None and decision.action == "ramp", decision
    assert decision.next_weight == s.cfg.promotion.ramp[0] == 10
    report = decision.shadow
    assert report is not None and report["gate"] == "pass"
    assert report["disagreement"]["ci_high"] <= s.cfg.promotion.shadow.max_disagreement
    assert report["labelled"] >= 6000  # ground truth joined to the pairs by request id
    assert report["latency_s"]["challenger"]["p99"] > 0
    assert report["error_rate"] == {"champion": 0.0, "challenger": 0.0}
    state = s.state()
    assert state["challenger"]["weight"] == 10 and state["champion"]["weight"] == 90
    assert "mirror" not in state
    assert _metric(metrics, 'mainsail_shadow_gate{model="churn",version="2"}') == 1
    # The next look is a canary look: the split is checked at 10%.
    s.traffic(10, labels=False, shadow=False)
    nxt = controller.step()
    assert nxt is not None and nxt.srm is not None and nxt.srm.expected_share == 0.1
    assert nxt.action != "pause"
