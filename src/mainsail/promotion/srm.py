"""Sample-ratio mismatch (SRM): does the observed split of requests match the configured one?

A canary whose observed split differs from its configured weight (sticky sessions that pin a few
heavy callers, a router bug, records lost on one side) biases every comparison made on it, so the
A/B analysis checks the split at every look before it believes any other number, and pauses the
experiment on a mismatch. The counts are of ASSIGNED requests (the router records the variant it
assigned a request to beside the one that answered it): a variant out of rotation whose requests
fail over to the other one changes who answers, not the assignment, and is reported apart.

The decision uses the sequential multinomial test of Lindon & Malek ("Anytime-valid inference for
multinomial count data", NeurIPS 2022): a Dirichlet-multinomial Bayes factor of "assignment
probabilities differ from the configured ones" against "they are as configured". Its reciprocal
is an always-valid p-value: however often the controller looks, a correct split is flagged with
probability at most `alpha`. The fixed-horizon chi-square test of the same counts is reported
beside it (what a one-off SRM check computes) but decides nothing, because looked at after every
batch its false-alarm rate grows with the number of looks.

A ramp changes the configured split, so every ramp stage is a test of its own: the Bayes factor
of a stage starts afresh from the stage's first request, and the evidence of finished stages is
kept (their product is still a test martingale under "the router always assigns as configured").

Pure numpy/scipy; the state between looks is a small JSON-able mapping.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import special, stats

from mainsail.core.files import jsonable

__all__ = [
    "SRMResult",
    "SRMState",
    "chi_square_p_value",
    "log_bayes_factor",
    "srm_look",
]


def log_bayes_factor(
    counts: np.ndarray, expected: np.ndarray | list[float], concentration: float
) -> np.ndarray:
    """log of the Dirichlet-multinomial Bayes factor of `counts` (last axis: categories) against
    the multinomial with probabilities `expected`. Vectorised over leading axes.

    The prior of the alternative is Dirichlet(concentration * expected): centred on the
    configured split, with a spread of about sqrt(p (1 - p) / concentration) around it.
    """
    x = np.asarray(counts, dtype=np.float64)
    theta = np.asarray(expected, dtype=np.float64)
    if theta.ndim != 1 or theta.shape[0] != x.shape[-1]:
        raise ValueError(f"expected {x.shape[-1]} probabilities, got {theta.tolist()}")
    if np.any(theta <= 0) or not math.isclose(float(theta.sum()), 1.0, rel_tol=1e-9):
        raise ValueError(f"expected probabilities must be positive and sum to 1, got {theta}")
    a = concentration * theta
    n = x.sum(axis=-1)
    log_marginal = (
        special.gammaln(a.sum())
        - special.gammaln(a.sum() + n)
        + (special.gammaln(a + x) - special.gammaln(a)).sum(axis=-1)
    )
    log_null = (x * np.log(theta)).sum(axis=-1)
    return np.asarray(log_marginal - log_null)


def chi_square_p_value(counts: np.ndarray | list[int], expected: np.ndarray | list[float]) -> float:
    """Pearson's chi-square goodness-of-fit p-value of one look (fixed horizon)."""
    x = np.asarray(counts, dtype=np.float64)
    n = float(x.sum())
    if n <= 0:
        return 1.0
    exp = n * np.asarray(expected, dtype=np.float64)
    stat = float(((x - exp) ** 2 / exp).sum())
    return float(stats.chi2.sf(stat, df=len(x) - 1))


@dataclass
class SRMState:
    """What survives between looks: the evidence of finished stages and of the current one."""

    log_bf_done: float = 0.0
    """Sum of the final log Bayes factors of finished ramp stages."""
    log_bf_max: float = 0.0
    """Running maximum of the total log Bayes factor (its exp(-x) is the always-valid p)."""
    stage_weight: int | None = None
    """Challenger percent of the stage being tested."""
    stage_log_bf: float = 0.0
    """Latest log Bayes factor of the current stage."""
    looks: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> SRMState:
        raw = raw or {}
        weight = raw.get("stage_weight")
        return cls(
            log_bf_done=float(raw.get("log_bf_done", 0.0)),
            log_bf_max=float(raw.get("log_bf_max", 0.0)),
            stage_weight=None if weight is None else int(weight),
            stage_log_bf=float(raw.get("stage_log_bf", 0.0)),
            looks=int(raw.get("looks", 0)),
        )

    def new_stage(self, weight: int) -> SRMState:
        """The state at the start of a stage with challenger share `weight`."""
        if self.stage_weight is None:
            return SRMState(stage_weight=weight, log_bf_max=self.log_bf_max, looks=self.looks)
        return SRMState(
            log_bf_done=self.log_bf_done + self.stage_log_bf,
            log_bf_max=self.log_bf_max,
            stage_weight=weight,
            stage_log_bf=0.0,
            looks=self.looks,
        )


@dataclass(frozen=True)
class SRMResult:
    """One look at the split of one stage."""

    champion: int
    """Requests assigned to the champion in this stage."""
    challenger: int
    """Requests assigned to the challenger in this stage."""
    expected_share: float
    """Configured challenger share (0-1)."""
    observed_share: float
    """Observed challenger share (0-1); NaN before the first request."""
    p_value: float
    """Always-valid p-value (sequential test, every stage and look so far)."""
    chi2_p_value: float
    """Fixed-horizon chi-square p-value of this stage's counts (reported, not used to decide)."""
    mismatch: bool
    """p_value <= alpha: the split is not the configured one."""
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: no observed share before the first request is None."""
        return dict(jsonable(asdict(self)))

    def describe(self) -> str:
        return (
            f"sample-ratio mismatch: challenger got {self.observed_share:.2%} of "
            f"{self.champion + self.challenger} requests, configured {self.expected_share:.2%} "
            f"(sequential p={self.p_value:.2g} <= {self.alpha}; chi-square p="
            f"{self.chi2_p_value:.2g})"
        )


def srm_look(
    champion: int,
    challenger: int,
    weight: int,
    *,
    alpha: float,
    concentration: float,
    state: SRMState | None = None,
) -> tuple[SRMResult, SRMState]:
    """Test the counts of the current stage (challenger at `weight` percent)."""
    if not 0 < weight < 100:
        raise ValueError(
            f"a split test needs a challenger share strictly between 0 and 100, got {weight}"
        )
    state = state or SRMState()
    if state.stage_weight != weight:
        state = state.new_stage(weight)
    share = weight / 100.0
    expected = np.array([1.0 - share, share])
    counts = np.array([champion, challenger], dtype=np.float64)
    stage = float(log_bayes_factor(counts, expected, concentration))
    total = state.log_bf_done + stage
    new = SRMState(
        log_bf_done=state.log_bf_done,
        log_bf_max=max(state.log_bf_max, total),
        stage_weight=weight,
        stage_log_bf=stage,
        looks=state.looks + 1,
    )
    p_value = min(1.0, math.exp(-new.log_bf_max))
    n = champion + challenger
    result = SRMResult(
        champion=int(champion),
        challenger=int(challenger),
        expected_share=share,
        observed_share=challenger / n if n else math.nan,
        p_value=p_value,
        chi2_p_value=chi_square_p_value(counts, expected),
        mismatch=p_value <= alpha,
        alpha=alpha,
    )
    return result, new
