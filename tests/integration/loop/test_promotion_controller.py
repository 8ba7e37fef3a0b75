"""The promotion controller on a real SQLite feedback store.

The traffic backend here is a small in-process recorder; the real backends (router admin API,
Seldon Experiment) are exercised by the loop end-to-end test and the deploy tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mainsail.feedback.store import FeedbackStore, PredictionRecord
from mainsail.promotion.ab import ABPolicy
from mainsail.promotion.controller import PromotionController


class RecordingBackend:
    def __init__(self) -> None:
        self.champion, self.challenger, self.weight = "1", "2", 10
        self.calls: list[tuple[str, int | None]] = []

    def current(self, model: str) -> tuple[str, str | None, int]:
        return self.champion, self.challenger, self.weight

    def set_weight(self, model: str, weight: int) -> None:
        self.weight = weight
        self.calls.append(("set_weight", weight))

    def promote(self, model: str) -> None:
        self.champion, self.challenger, self.weight = self.challenger or self.champion, None, 0
        self.calls.append(("promote", None))

    def rollback(self, model: str) -> None:
        self.challenger, self.weight = None, 0
        self.calls.append(("rollback", None))


def feed(
    store: FeedbackStore,
    backend: RecordingBackend,
    rng: np.random.Generator,
    n: int,
    err: dict[str, float],
    start: int,
) -> None:
    """Simulate n requests split by the backend's weight, each later labelled."""
    records, labels = [], {}
    for i in range(start, start + n):
        variant = "challenger" if rng.random() * 100 < backend.weight else "champion"
        truth = int(rng.random() < 0.5)
        # A variant with error rate e gives the true class a low score with probability e.
        wrong = rng.random() < err[variant]
        p_true = 0.2 if wrong else 0.8
        score = p_true if truth == 1 else 1 - p_true
        rid = f"req-{i}"
        records.append(
            PredictionRecord(rid, "churn", variant, "v", str(int(score > 0.5)), score, 0.01)
        )
        labels[rid] = truth
    store.record_predictions(records)
    store.record_feedback(labels)


def test_better_challenger_is_ramped_then_promoted_and_survives_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fb.db'}"
    rng = np.random.default_rng(11)
    backend = RecordingBackend()
    policy = ABPolicy(min_samples=100, step_samples=100, tau=0.1)
    errs = {"champion": 0.30, "challenger": 0.15}

    store = FeedbackStore(url)
    controller = PromotionController("churn", store, backend, policy, "classification")
    seen = 0
    for _ in range(3):
        feed(store, backend, rng, 600, errs, seen)
        seen += 600
        controller.step()
    store.close()  # the controller restarts mid-experiment

    store = FeedbackStore(url)
    controller = PromotionController("churn", store, backend, policy, "classification")
    final = None
    for _ in range(40):
        feed(store, backend, rng, 600, errs, seen)
        seen += 600
        final = controller.step()
        if final is None or final.action in ("promote", "rollback"):
            break
    assert backend.calls[-1] == ("promote", None)
    assert [c for c in backend.calls if c[0] == "set_weight"], "expected at least one ramp step"
    history = store.decisions("churn")
    assert history[-1]["action"] == "promote"
    assert history[-1]["evidence"]["quality"]["ci_high"] < 0
    # No decision repeated after the restart: the weights only ever go up.
    weights = [d["evidence"]["next_weight"] for d in history if d["action"] == "ramp"]
    assert weights == sorted(set(weights))


def test_worse_challenger_is_rolled_back(tmp_path: Path) -> None:
    store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.db'}")
    rng = np.random.default_rng(12)
    backend = RecordingBackend()
    backend.weight = 50
    controller = PromotionController(
        "churn",
        store,
        backend,
        ABPolicy(min_samples=100, step_samples=10**6, tau=0.1),
        "classification",
    )
    decision = None
    for k in range(30):
        feed(store, backend, rng, 400, {"champion": 0.15, "challenger": 0.35}, k * 400)
        decision = controller.step()
        if decision is None or decision.action == "rollback":
            break
    assert backend.calls == [("rollback", None)]
    assert store.decisions("churn")[-1]["reason"].startswith("challenger loss higher")


def test_no_challenger_means_nothing_to_decide(tmp_path: Path) -> None:
    backend = RecordingBackend()
    backend.challenger = None
    store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.db'}")
    assert PromotionController("churn", store, backend, ABPolicy(), "classification").step() is None
