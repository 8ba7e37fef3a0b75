"""The shadow gate's verdicts on pairs whose truth the test sets (pure: no router, no store)."""

from __future__ import annotations

import numpy as np

from mainsail.feedback.store import ShadowPairs
from mainsail.promotion.shadow import ShadowPolicy, shadow_look

POLICY = ShadowPolicy(min_pairs=200, min_requests=100, warmup_requests=20, max_pairs=5000)


def pairs(
    rng: np.random.Generator,
    rows: int = 2000,
    requests: int = 200,
    *,
    flip: float = 0.0,
    labels: bool = False,
    chall_errors: float = 0.0,
    slow: float = 1.0,
    cold: int = 0,
) -> ShadowPairs:
    """Champion scores uniform; the challenger's the same, flipped across 0.5 on `flip` of the
    rows; latencies log-normal, the challenger's `slow` times, its first `cold` 50 times."""
    a = rng.random(rows)
    flipped = rng.random(rows) < flip
    b = np.where(flipped, 1 - a, a)
    text = lambda p: np.where(p >= 0.5, "1", "0").astype(object)  # noqa: E731
    truth = np.where(rng.random(rows) < a, "1", "0").astype(object) if labels else None
    lat_a = rng.lognormal(-5, 0.3, requests)
    lat_b = rng.lognormal(-5, 0.3, requests) * slow
    lat_b[:cold] *= 200
    return ShadowPairs(
        text(a),
        text(b),
        a,
        b,
        truth if truth is not None else np.full(rows, "", dtype=object),
        np.zeros(requests),
        (rng.random(requests) < chall_errors).astype(float),
        lat_a,
        lat_b,
    )


def gate(p: ShadowPairs, problem_type: str = "classification", **kw: object) -> tuple[str, str]:
    policy = ShadowPolicy(**{**POLICY.__dict__, **kw})  # type: ignore[arg-type]
    report, _ = shadow_look(p, policy, problem_type=problem_type)  # type: ignore[arg-type]
    return report.gate, report.reason


def test_agreeing_passes_and_a_30_percent_disagreement_fails() -> None:
    rng = np.random.default_rng(1)
    assert gate(pairs(rng, flip=0.03))[0] == "pass"
    verdict, reason = gate(pairs(rng, flip=0.30))
    assert verdict == "fail" and "disagrees" in reason


def test_too_few_rows_or_requests_keep_it_shadowing() -> None:
    rng = np.random.default_rng(2)
    assert gate(pairs(rng, rows=150, flip=0.3))[0] == "pending"
    # Enough rows, but the requests after the warm-up are too few to judge errors and latency.
    verdict, reason = gate(pairs(rng, requests=110, flip=0.3))
    assert verdict == "pending" and "90 of 100 paired requests" in reason


def test_errors_and_slowness_fail_and_a_cold_start_does_not() -> None:
    rng = np.random.default_rng(3)
    verdict, reason = gate(pairs(rng, chall_errors=0.1))
    assert verdict == "fail" and "fails" in reason
    verdict, reason = gate(pairs(rng, slow=2.5))
    assert verdict == "fail" and "slower" in reason
    # The first 60 requests 200x slower (the model just loaded): left out by the warm-up, the
    # gate passes; counted, they stop the challenger.
    cold = pairs(rng, requests=160, cold=60, flip=0.02)
    assert gate(cold, warmup_requests=60)[0] == "pass"
    assert gate(cold, warmup_requests=0)[0] == "fail"


def test_labelled_pairs_decide_before_the_disagreement() -> None:
    rng = np.random.default_rng(4)
    # The challenger flips 20% of the answers against calibrated truth: worse on the labels.
    verdict, reason = gate(pairs(rng, flip=0.2, labels=True))
    assert verdict == "fail" and "loss is higher" in reason


def test_undecided_at_max_pairs_fails() -> None:
    rng = np.random.default_rng(5)
    # 15% disagreement against a 15% limit: never clear of it.
    verdict, reason = gate(pairs(rng, rows=5000, flip=0.15))
    assert verdict == "fail" and "not shown to be within" in reason


def test_regression_disagreement_is_a_relative_difference() -> None:
    rng = np.random.default_rng(6)
    a = rng.uniform(10, 20, 1000)
    close, far = a * (1 + rng.normal(0, 0.02, 1000)), a * 1.5
    lat = rng.lognormal(-5, 0.3, 200)
    empty = np.full(1000, "", dtype=object)

    def p(b: np.ndarray) -> ShadowPairs:
        return ShadowPairs(empty, empty, a, b, empty, np.zeros(200), np.zeros(200), lat, lat)

    assert gate(p(close), "regression")[0] == "pass"
    assert gate(p(far), "regression")[0] == "fail"
