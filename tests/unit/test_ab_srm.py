"""The sample-ratio check of the A/B analysis, by simulation with repeated looks.

A run is one 50/50 experiment of 20,000 requests looked at after every 100 requests (200 looks).
The 1,000-run simulations compute the sequential test's statistic directly and vectorised
(`log_bayes_factor` is the very function `srm_look` uses); `test_vectorised_statistic_is_the_
controllers` checks that equality on the real per-look path, and the 52/48 case also runs
through `analyse()` look by look.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mainsail.promotion.ab import ABPolicy, VariantOutcomes, analyse
from mainsail.promotion.srm import (
    SRMState,
    chi_square_p_value,
    log_bayes_factor,
    srm_look,
)

POLICY = ABPolicy()  # srm_alpha 0.001, srm_concentration 1000: the config's defaults
RUNS, REQUESTS, EVERY = 1000, 20_000, 100
LOOKS = np.arange(EVERY, REQUESTS + 1, EVERY)


def simulate(share: float, seed: int, runs: int = RUNS) -> np.ndarray:
    """Challenger counts at every look of `runs` experiments (runs x looks)."""
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.binomial(EVERY, share, size=(runs, LOOKS.size)), axis=1)


def flagged(challenger: np.ndarray, weight: int = 50) -> np.ndarray:
    """Whether each run is flagged at any look (running maximum of the log Bayes factor)."""
    counts = np.stack([LOOKS - challenger, challenger], axis=-1)
    share = weight / 100
    log_bf = log_bayes_factor(counts, [1 - share, share], POLICY.srm_concentration)
    return np.asarray(log_bf.max(axis=1) >= math.log(1 / POLICY.srm_alpha))


def test_a_true_50_50_split_is_flagged_in_under_1_percent_of_1000_runs() -> None:
    rate = flagged(simulate(0.5, seed=21)).mean()
    # Always valid: at most alpha (0.1%) in expectation however often we look.
    assert rate < 0.01, f"false SRM rate {rate:.3%}"
    assert rate <= 0.004


def test_a_52_48_split_is_flagged_by_20000_requests() -> None:
    power = flagged(simulate(0.48, seed=22)).mean()
    assert power >= 0.9, f"52/48 flagged in only {power:.1%} of runs"


def test_repeated_chi_square_looks_inflate_false_alarms() -> None:
    # Why the sequential test: the fixed-horizon chi-square at the same level, looked at after
    # every 100 requests, flags a correct split several times more often.
    challenger = simulate(0.5, seed=23, runs=400)
    expected = LOOKS / 2
    stat = ((challenger - expected) ** 2 / expected) * 2
    from scipy import stats

    naive = (stats.chi2.sf(stat, df=1) <= 0.01).any(axis=1).mean()
    sequential = np.mean(
        [
            (
                log_bayes_factor(np.stack([LOOKS - c, c], -1), [0.5, 0.5], 1000).max()
                >= math.log(100)
            )
            for c in challenger
        ]
    )
    assert naive > 0.05 > sequential


def test_vectorised_statistic_is_the_controllers() -> None:
    challenger = simulate(0.48, seed=24, runs=3)
    for run in challenger:
        state: SRMState | None = None
        best = 0.0
        for n, c in zip(LOOKS[::10], run[::10], strict=True):
            result, state = srm_look(
                int(n - c), int(c), 50, alpha=0.001, concentration=1000, state=state
            )
            best = max(best, float(log_bayes_factor(np.array([n - c, c]), [0.5, 0.5], 1000)))
            assert math.isclose(result.p_value, min(1.0, math.exp(-best)), rel_tol=1e-9)
        assert result.chi2_p_value == pytest.approx(chi_square_p_value([n - c, c], [0.5, 0.5]))


def _outcomes(rng: np.random.Generator, n: int) -> VariantOutcomes:
    return VariantOutcomes(losses=rng.random(n), errors=np.zeros(n), latencies_s=np.full(n, 0.01))


def test_a_52_48_experiment_pauses_instead_of_promoting_a_better_challenger() -> None:
    """Look by look through analyse(): the challenger looks better (lower loss), but its share
    is 48% of a 50/50 split: the analysis pauses, and neither promotes nor rolls back."""
    rng = np.random.default_rng(25)
    assigned = rng.random(REQUESTS) < 0.48  # True: challenger
    states: dict = {}
    decision = None
    for n in range(1000, REQUESTS + 1, 1000):
        b = int(assigned[:n].sum())
        champ = _outcomes(rng, n - b)
        chall = _outcomes(rng, b)
        chall.losses *= 0.5  # clearly better: would be promoted on unbiased data
        decision = analyse(
            champ,
            chall,
            policy=POLICY,
            current_weight=50,
            states=states,
            split=(n - b, b),
        )
        states = decision.states
        assert decision.action in ("pause", "ramp", "keep_testing", "promote")
        if decision.action == "pause":
            break
    assert decision is not None and decision.action == "pause", decision
    assert decision.srm is not None and decision.srm.mismatch
    assert decision.quality is None  # nothing was concluded on the biased data
    assert "sample-ratio mismatch" in decision.reason
    # And the same experiment without the split check would have promoted.
    unchecked = analyse(champ, chall, policy=POLICY, current_weight=50, states={})
    assert unchecked.action == "promote"


def test_each_ramp_stage_is_tested_against_its_own_weight() -> None:
    # 10% then 25%: exactly the configured shares, never a mismatch, and the state carries the
    # finished stage's evidence.
    state = None
    for weight, n in ((10, 5000), (25, 8000)):
        result, state = srm_look(
            n - n * weight // 100,
            n * weight // 100,
            weight,
            alpha=0.001,
            concentration=1000,
            state=state,
        )
        assert not result.mismatch and result.expected_share == weight / 100
    assert state is not None and state.stage_weight == 25 and state.looks == 2
    # The 25% stage counted from zero: 10%-stage counts would be a glaring mismatch at 25%.
    result, _ = srm_look(4500, 500, 25, alpha=0.001, concentration=1000, state=state)
    assert result.mismatch


def test_state_round_trips_through_json() -> None:
    _, state = srm_look(900, 100, 10, alpha=0.001, concentration=1000)
    again = SRMState.from_dict(state.to_dict())
    assert again == state
    with pytest.raises(ValueError, match="strictly between 0 and 100"):
        srm_look(10, 0, 0, alpha=0.001, concentration=1000)
