"""The whole loop on the real local stack: champion → drift → alert → retrain → canary →
feedback → always-valid A/B analysis → promote, or roll back a deliberately worse challenger.

Real processes throughout: SeaweedFS, two MLServers with the mainsail runtime, the router with
its feedback store, the drift sidecar (drift env), Prometheus, Alertmanager, the retrain
trigger running `mainsail run`, and the promotion controller.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mainsail.demos.loop import run_loop_demo

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.integration]


def check_common(outcome: dict, workdir: Path) -> None:
    # Failure isolation: with the sidecar stopped, every request was still answered (the demo
    # raises on any non-200) and the sidecar-down alert fired.
    assert outcome["sidecar_outage"]["alert_fired"]
    assert sum(outcome["sidecar_outage"]["served"].values()) == 400
    decisions = outcome["decisions"]
    assert decisions, "the controller made no decision"
    # Every acted-on decision carries its evidence and is in the deployed model card.
    card = yaml.safe_load(
        (
            workdir / "stack" / "deployments" / f"churn-v{outcome['challenger']}-model_card.yaml"
        ).read_text()
    )
    acted = [d for d in decisions if d["action"] != "keep_testing"]
    # The controller deployed the retrained candidate itself, in the shadow (its first entry).
    deployed, *history = card["promotion_history"]
    assert deployed["action"] == outcome["deployed"]["action"] == "deploy"
    assert (
        f"candidate v{outcome['challenger']} deployed as challenger (shadow)"
        in (outcome["deployed"]["reason"])
    )
    assert [h["action"] for h in history] == [d["action"] for d in acted]
    # The next acted-on decision is the shadow gate's: its report (numbers, plot) is in the
    # card, the decision log and Prometheus; the canary decisions carry the A/B evidence.
    shadow, *canary = history
    assert shadow["shadow"]["gate"] == outcome["shadow"]["gate"]
    assert shadow["shadow"]["pairs"] >= 200 and shadow["shadow"]["labelled"] >= 100
    assert "data:image/png;base64," in Path(shadow["shadow"]["report"]).read_text()
    series = outcome["shadow_series"]
    assert series["gate"] == (1 if outcome["shadow"]["gate"] == "pass" else -1)
    assert series["pairs"] == outcome["shadow"]["pairs"]
    for entry in canary:
        assert entry["quality"]["p_value"] is not None
        assert entry["srm"] is not None and not entry["srm"]["mismatch"]


def test_better_challenger_is_promoted(tmp_path: Path) -> None:
    outcome = run_loop_demo(workdir=tmp_path, rows=4000, timeout_s=600)
    # The shadow gate passed (the drift makes the retrained model disagree with the stale
    # champion, but the labelled pairs show it is the champion that is wrong), then the canary.
    assert outcome["shadow"]["gate"] == "pass"
    assert outcome["decisions"][0]["shadow"]["gate"] in ("pass", "pending")
    assert outcome["final"] == "promote"
    assert outcome["aliases"]["champion"] == outcome["challenger"]
    last = outcome["decisions"][-1]
    assert last["quality"]["ci_high"] < 0  # challenger's loss is lower, with confidence
    assert any(d["action"] == "ramp" for d in outcome["decisions"])
    # The router and the controller were restarted after the first ramp: the split, the
    # experiment and every labelled outcome survived.
    restart = outcome["restart"]
    assert restart["weight_after"] == restart["expected_weight"]
    assert restart["challenger_after"] == str(outcome["challenger"])
    assert restart["labelled_after"] == restart["labelled_before"] > 0
    check_common(outcome, tmp_path)


def test_worse_challenger_is_stopped_at_shadow(tmp_path: Path) -> None:
    outcome = run_loop_demo(workdir=tmp_path, rows=4000, worse=True, timeout_s=600)
    assert outcome["final"] == "rollback"
    assert outcome["aliases"]["champion"] == 1  # the champion stays
    # Stopped before serving anyone: the only acted-on decision is the shadow gate's.
    assert outcome["shadow"]["gate"] == "fail"
    assert [d["action"] for d in outcome["decisions"] if d["action"] != "keep_testing"] == [
        "rollback"
    ]
    assert outcome["decisions"][-1]["reason"].startswith("stopped at shadow")
    check_common(outcome, tmp_path)
