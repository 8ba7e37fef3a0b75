"""Error rates of the always-valid A/B analysis, by simulation with repeated looks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from mainsail.promotion.ab import ABPolicy, SequentialState, VariantOutcomes, analyse, msprt_look

POLICY = ABPolicy(alpha=0.05, tau=0.05, min_samples=200, max_samples=4000, step_samples=10**9)
LOOKS = range(200, 4001, 200)  # the controller looks every 200 labelled outcomes per variant


def outcomes(
    rng: np.random.Generator, n: int, error: float, latency: float = 0.01
) -> VariantOutcomes:
    return VariantOutcomes(
        losses=(rng.random(n) < error).astype(float),  # 0/1 loss: misclassified or not
        errors=np.zeros(n),
        latencies_s=rng.lognormal(np.log(latency), 0.3, n),
    )


def run_experiment(rng: np.random.Generator, err_a: float, err_b: float) -> str:
    a, b = outcomes(rng, LOOKS[-1], err_a), outcomes(rng, LOOKS[-1], err_b)
    states: dict = {}
    for n in LOOKS:
        decision = analyse(
            VariantOutcomes(a.losses[:n], a.errors[:n], a.latencies_s[:n]),
            VariantOutcomes(b.losses[:n], b.errors[:n], b.latencies_s[:n]),
            policy=POLICY,
            current_weight=50,
            states=states,
        )
        states = decision.states
        if decision.action in ("promote", "rollback") and "no significant" not in decision.reason:
            return decision.action
    return "undecided"


@pytest.mark.slow
def test_false_promotion_rate_stays_under_alpha_with_repeated_looks() -> None:
    rng = np.random.default_rng(2024)
    results = [run_experiment(rng, 0.2, 0.2) for _ in range(1000)]
    false_promotions = results.count("promote") / len(results)
    false_decisions = (results.count("promote") + results.count("rollback")) / len(results)
    assert false_promotions <= POLICY.alpha, f"false promotions {false_promotions:.3f}"
    assert false_decisions <= POLICY.alpha, f"false decisions of any kind {false_decisions:.3f}"


def test_naive_t_test_with_the_same_looks_breaks_alpha() -> None:
    # Why the sequential test: peeking at a fixed-horizon t-test inflates false positives.
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(400):
        a = (rng.random(LOOKS[-1]) < 0.2).astype(float)
        b = (rng.random(LOOKS[-1]) < 0.2).astype(float)
        if any(stats.ttest_ind(a[:n], b[:n]).pvalue < 0.05 for n in LOOKS):
            hits += 1
    assert hits / 400 > 0.1


@pytest.mark.slow
def test_a_truly_better_challenger_is_promoted() -> None:
    rng = np.random.default_rng(99)
    results = [run_experiment(rng, 0.25, 0.18) for _ in range(200)]
    assert results.count("promote") / len(results) >= 0.9
    assert results.count("rollback") == 0


def test_a_truly_worse_challenger_is_rolled_back() -> None:
    rng = np.random.default_rng(5)
    results = [run_experiment(rng, 0.18, 0.25) for _ in range(50)]
    assert results.count("rollback") / len(results) >= 0.9
    assert results.count("promote") == 0


def test_error_rate_guardrail_rolls_back_before_quality_is_known() -> None:
    rng = np.random.default_rng(1)
    a, b = outcomes(rng, 1000, 0.2), outcomes(rng, 1000, 0.2)
    b.errors = (rng.random(1000) < 0.08).astype(float)
    decision = analyse(a, b, policy=POLICY, current_weight=10)
    assert decision.action == "rollback"
    assert "error rate" in decision.reason


def test_latency_guardrail_rolls_back_a_much_slower_challenger() -> None:
    rng = np.random.default_rng(2)
    a, b = outcomes(rng, 800, 0.2, latency=0.010), outcomes(rng, 800, 0.2, latency=0.030)
    decision = analyse(a, b, policy=POLICY, current_weight=10)
    assert decision.action == "rollback"
    assert "latency" in decision.reason


def test_below_min_samples_it_keeps_testing_and_says_what_it_waits_for() -> None:
    rng = np.random.default_rng(3)
    decision = analyse(
        outcomes(rng, 50, 0.2), outcomes(rng, 50, 0.1), policy=POLICY, current_weight=10
    )
    assert decision.action == "keep_testing"
    assert "waiting for 200" in decision.reason


def test_healthy_challenger_ramps_through_the_steps() -> None:
    rng = np.random.default_rng(4)
    policy = ABPolicy(min_samples=200, step_samples=300)
    a, b = outcomes(rng, 700, 0.2), outcomes(rng, 700, 0.2)
    decision = analyse(a, b, policy=policy, current_weight=10)
    assert (decision.action, decision.next_weight) == ("ramp", 25)
    decision = analyse(a, b, policy=policy, current_weight=25, states=decision.states)
    assert (decision.action, decision.next_weight) == ("ramp", 50)
    decision = analyse(a, b, policy=policy, current_weight=50, states=decision.states)
    assert decision.action == "keep_testing"  # 700 < 3 * 300 outcomes needed for 100%


def test_state_round_trips_through_json_and_keeps_the_running_minimum() -> None:
    rng = np.random.default_rng(6)
    a, b = rng.normal(0, 1, 500), rng.normal(0.3, 1, 500)
    first, state = msprt_look(a[:250], b[:250], alpha=0.05, tau=0.3)
    restored = SequentialState.from_dict(json.loads(json.dumps(state.to_dict())))
    second, _ = msprt_look(a, b, alpha=0.05, tau=0.3, state=restored)
    assert second.p_value <= first.p_value
    assert second.ci_low >= first.ci_low and second.ci_high <= first.ci_high
    assert restored == state


def test_too_few_outcomes_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="at least 2 outcomes per variant"):
        msprt_look(np.array([1.0]), np.array([1.0, 2.0]), alpha=0.05, tau=0.1)
