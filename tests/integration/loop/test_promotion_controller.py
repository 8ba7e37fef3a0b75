"""The promotion controller on a real SQLite feedback store.

The traffic backend here is a small in-process recorder; the real backends (router admin API,
Seldon Experiment) are exercised by the loop end-to-end test and the deploy tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from mainsail.feedback.store import FeedbackStore, PredictionRecord
from mainsail.promotion.ab import ABPolicy, Decision
from mainsail.promotion.controller import PromotionController
from tests.support.promotion import RecordingBackend


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


def test_a_biased_split_pauses_the_experiment_until_resumed(tmp_path: Path) -> None:
    """50/50 configured, 48% observed over 20,000 requests, a slightly better challenger: the
    controller pauses instead of going on, says so in the decision log, the model card and its
    metrics, keeps the split as it is, and starts afresh only when resumed."""
    from prometheus_client import generate_latest

    from mainsail.config import parse_config
    from mainsail.evaluate.card import deployed_card_path
    from mainsail.promotion.backends import append_decision_to_card
    from mainsail.promotion.metrics import PromotionMetrics

    cfg = parse_config(
        {
            "name": "churn",
            "data": {"path": "x.parquet", "target": "churned"},
            "stack": {"data_dir": str(tmp_path / "stack")},
        }
    )
    card = deployed_card_path(cfg, "2")
    card.parent.mkdir(parents=True)
    card.write_text("model_name: churn\n")
    store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.db'}")
    backend = RecordingBackend()
    backend.weight = 50
    metrics = PromotionMetrics()
    controller = PromotionController(
        "churn",
        store,
        backend,
        ABPolicy(min_samples=100, step_samples=10**6, tau=0.1),
        "classification",
        on_decision=lambda _m, version, d: append_decision_to_card(cfg, None, version, d),  # type: ignore[arg-type]
        metrics=metrics,
    )
    controller.step()  # opens the stage
    rng = np.random.default_rng(13)
    errs = {"champion": 0.25, "challenger": 0.24}
    actions = []
    for k in range(10):
        records, labels = [], {}
        for i in range(k * 2000, (k + 1) * 2000):
            variant = "challenger" if rng.random() < 0.48 else "champion"
            truth = int(rng.random() < 0.5)
            p_true = 0.2 if rng.random() < errs[variant] else 0.8
            score = p_true if truth else 1 - p_true
            records.append(
                PredictionRecord(f"r{i}", "churn", variant, "v", str(int(score > 0.5)), score, 0.01)
            )
            labels[f"r{i}"] = truth
        store.record_predictions(records)
        store.record_feedback(labels)
        decision = controller.step()
        assert decision is not None
        actions.append(decision.action)
    assert "pause" in actions and "promote" not in actions and "rollback" not in actions
    assert backend.calls == []  # the split was left alone
    logged = store.decisions("churn")
    assert [d["action"] for d in logged] == ["pause"]  # logged once, not at every look
    srm = logged[0]["evidence"]["srm"]
    assert srm["mismatch"] and srm["p_value"] <= 0.001 and 0.46 < srm["observed_share"] < 0.5
    history = yaml.safe_load(card.read_text())["promotion_history"]
    assert history[-1]["action"] == "pause" and history[-1]["srm"]["mismatch"] is True
    text = generate_latest(metrics.registry).decode()
    assert 'mainsail_ab_srm_mismatch{model="churn",version="2"} 1.0' in text
    assert 'mainsail_ab_paused{model="churn",version="2"} 1.0' in text
    # Resumed after the cause is fixed: a fresh experiment, the pause is in the log.
    assert controller.resume()
    assert [d["action"] for d in store.decisions("churn")] == ["pause", "resume"]
    after = controller.step()
    assert after is not None and after.action == "keep_testing"
    assert not controller.resume()  # nothing paused any more


def test_a_challenger_outage_is_no_sample_ratio_mismatch_and_the_experiment_decides(
    tmp_path: Path,
) -> None:
    """The challenger's pod is down for two looks of a 25% canary: its requests fail over to the
    champion. The split is tested on the assignment (no pause), the failovers are reported in
    the decisions and exported, the comparison uses only answered-by-assigned requests, and the
    better challenger is still ramped and promoted."""
    from prometheus_client import generate_latest

    from mainsail.promotion.metrics import PromotionMetrics

    store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.db'}")
    rng = np.random.default_rng(21)
    backend = RecordingBackend()
    backend.weight = 25
    metrics = PromotionMetrics()
    controller = PromotionController(
        "churn",
        store,
        backend,
        ABPolicy(min_samples=100, step_samples=100, tau=0.1),
        "classification",
        metrics=metrics,
    )
    controller.step()  # opens the stage
    errs = {"champion": 0.30, "challenger": 0.15}
    looks = []
    for k in range(40):
        down = k in (1, 2)
        records, labels = [], {}
        for i in range(k * 600, (k + 1) * 600):
            assigned = "challenger" if rng.random() * 100 < backend.weight else "champion"
            answering = "champion" if down else assigned
            truth = int(rng.random() < 0.5)
            p_true = 0.2 if rng.random() < errs[answering] else 0.8
            score = p_true if truth else 1 - p_true
            rid = f"req-{i}"
            records.append(
                PredictionRecord(
                    rid,
                    "churn",
                    answering,
                    "v",
                    str(int(score > 0.5)),
                    score,
                    0.01,
                    assigned=assigned,
                    failover="out_of_rotation" if answering != assigned else None,
                )
            )
            labels[rid] = truth
        store.record_predictions(records)
        store.record_feedback(labels)
        decision = controller.step()
        assert decision is not None
        looks.append(decision)
        if down:
            moved = decision.failovers["challenger"]  # type: ignore[index]
            assert moved["failed_over"] == moved["assigned"] > 100, moved
            assert moved["reasons"] == {"out_of_rotation": moved["failed_over"]}
            text = generate_latest(metrics.registry).decode()
            assert 'mainsail_ab_failovers{model="churn",variant="challenger",version="2"}' in text
        if decision.action in ("promote", "rollback"):
            break
    actions = [d.action for d in looks]
    assert "pause" not in actions, [d.reason for d in looks]
    assert backend.calls[-1] == ("promote", None), [d.reason for d in looks]
    logged = store.decisions("churn")
    assert all(d["evidence"]["srm"]["mismatch"] is False for d in logged if d["evidence"]["srm"])
    assert all("failovers" in d["evidence"] for d in logged)


def test_a_watch_that_runs_for_good_rides_out_a_failed_look_and_goes_on_after_a_rollback(
    tmp_path: Path,
) -> None:
    """`mainsail promote --watch --forever` (the chart's controller pod): a look that raises is
    reported and the next look comes; a rollback does not end the watch, and the challenger
    deployed next is looked at. Only the timeout ends it."""
    store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.db'}")
    rng = np.random.default_rng(13)
    backend = RecordingBackend()
    backend.weight = 50
    policy = ABPolicy(min_samples=100, step_samples=10**6, tau=0.1)
    controller = PromotionController("churn", store, backend, policy, "classification")
    looks: list[str | None] = []
    errors: list[str] = []
    current = backend.current
    sent = [0]

    def traffic_then_current(model: str) -> tuple[str, str | None, int]:
        if not errors:
            errors.append("blink")
            raise ConnectionError("the gateway blinked")
        if backend.challenger is None and "rollback" in looks:
            backend.challenger, backend.weight = "3", 50  # the next challenger is deployed
        if backend.challenger is not None:  # labelled traffic between two looks
            feed(store, backend, rng, 400, {"champion": 0.15, "challenger": 0.35}, sent[0])
            sent[0] += 400
        return current(model)

    backend.current = traffic_then_current  # type: ignore[method-assign]
    controller.watch(
        0.01,
        until_final=False,
        timeout_s=3.0,
        report=lambda d: looks.append(None if d is None else d.action),
        on_error=lambda err: errors.append(str(err)),
    )
    assert errors == ["blink", "the gateway blinked"]
    assert "rollback" in looks and backend.calls[0] == ("rollback", None)
    # After the first rollback the watch went on and took up the next challenger's experiment.
    after = looks[looks.index("rollback") + 1 :]
    assert after and all(a is not None for a in after), looks
    experiments = [d["evidence"]["experiment"] for d in store.decisions("churn")]
    assert experiments[0] == "churn:1->2" and "churn:1->3" in experiments, experiments


def test_a_stop_ends_the_watch_after_the_look_in_progress_and_cuts_the_wait_short(
    tmp_path: Path,
) -> None:
    """The stop a SIGTERM sets: the look that is running finishes (its decision stored and
    reported), no look starts after it, and a long wait for the next one is cut short."""
    store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.db'}")
    controller = PromotionController(
        "churn", store, RecordingBackend(), ABPolicy(min_samples=100), "classification"
    )
    stop = threading.Event()
    looks: list[str | None] = []

    def stop_during_the_first_look(decision: Decision | None) -> None:
        looks.append(None if decision is None else decision.action)
        stop.set()

    started = time.monotonic()
    controller.watch(600.0, until_final=False, report=stop_during_the_first_look, stop=stop)
    assert looks == ["keep_testing"] and time.monotonic() - started < 60

    # Set while the watch waits between looks: it returns well before the interval.
    looks.clear()
    stop.clear()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    controller.watch(600.0, until_final=False, report=looks.append, stop=stop)
    assert len(looks) == 1 and time.monotonic() - started < 60


def test_the_controller_pods_command_stops_on_sigterm_between_looks(tmp_path: Path) -> None:
    """`mainsail promote --watch --forever`, the chart's controller pod, ends on SIGTERM with
    status 0 and says so, in a fraction of its interval. In the pod it is PID 1, which the kernel
    gives no default action for SIGTERM: without a handler the pod went on deciding beside its
    replacement until the grace period's SIGKILL (seen on kind). Here, not PID 1, a process with
    no handler would die by the signal (status -15) and print nothing: the test fails on that."""
    data = tmp_path / "data"
    data.mkdir()
    command = [
        str(Path(sys.executable).parent / "mainsail"),
        *("promote", "configs/churn.yaml", "--watch", "--forever"),
        *("--set", f"stack.data_dir={data}", "--set", "promotion.metrics_port=null"),
        *("--set", "promotion.interval_s=600"),
    ]
    env = {**os.environ, "MAINSAIL_ROUTER_TOKEN": "t" * 32}
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
    )
    try:
        assert proc.stdout is not None
        # No router runs: the first look fails and is reported, then the watch waits 600 s.
        first = proc.stdout.readline()
        assert "look failed" in first or "nothing to decide" in first, first
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, (proc.returncode, rest)
    assert "stopped on SIGTERM" in rest and time.monotonic() - sent < 60
