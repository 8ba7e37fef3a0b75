"""Metrics, paired tests and the selection rule, checked against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from mainsail.evaluate.compare import select
from mainsail.evaluate.cv import CVResult
from mainsail.evaluate.metrics import (
    all_metrics,
    binary_roc_auc,
    classification_metric,
    expected_calibration_error,
)
from mainsail.evaluate.stats import bootstrap_ci, corrected_resampled_ttest, mcnemar


def test_fast_roc_auc_equals_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    score = np.round(rng.random(500) + 0.3 * y, 1)  # coarse scores: many ties
    assert binary_roc_auc(y, score) == pytest.approx(skm.roc_auc_score(y, score), abs=1e-12)


def test_classification_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(1)
    y = np.array(["no", "yes"])[rng.integers(0, 2, 400)]
    p = np.clip(rng.random(400) * 0.6 + 0.4 * (y == "yes"), 0.01, 0.99)
    proba = np.column_stack([1 - p, p])
    got = all_metrics("classification", y, proba, np.array(["no", "yes"]))
    codes = (y == "yes").astype(int)
    assert got["pr_auc"] == pytest.approx(skm.average_precision_score(codes, p))
    assert got["log_loss"] == pytest.approx(skm.log_loss(codes, p))
    assert got["f1"] == pytest.approx(skm.f1_score(codes, (p > 0.5).astype(int)))


def test_ece_is_zero_for_calibrated_bins_and_large_for_overconfident() -> None:
    y = np.array([1] * 30 + [0] * 70)
    calibrated = np.column_stack([np.full(100, 0.7), np.full(100, 0.3)])
    assert expected_calibration_error(y, calibrated) == pytest.approx(0.0, abs=1e-12)
    overconfident = np.column_stack([np.full(100, 0.01), np.full(100, 0.99)])
    assert expected_calibration_error(y, overconfident) == pytest.approx(0.69)


def test_unknown_metric_and_label_give_specific_errors() -> None:
    proba = np.array([[0.5, 0.5]])
    with pytest.raises(ValueError, match="unknown classification metric 'auc'"):
        classification_metric("auc", np.array([0]), proba, np.array([0, 1]))
    with pytest.raises(ValueError, match="label 7 is not one of the model's classes"):
        classification_metric("f1", np.array([7]), proba, np.array([0, 1]))


def test_corrected_ttest_matches_the_formula_and_is_more_conservative() -> None:
    a = np.array([0.80, 0.82, 0.79, 0.81, 0.83])
    b = np.array([0.78, 0.80, 0.79, 0.78, 0.80])
    res = corrected_resampled_ttest(a, b, n_train=800, n_test=200, greater_is_better=True)
    d = a - b
    t = d.mean() / np.sqrt((1 / 5 + 200 / 800) * d.var(ddof=1))
    assert res.t == pytest.approx(t)
    assert res.p_value == pytest.approx(stats.t.sf(t, 4))
    naive = stats.ttest_rel(a, b, alternative="greater").pvalue
    assert res.p_value > naive
    # Lower-is-better metrics flip the direction.
    flipped = corrected_resampled_ttest(b, a, 800, 200, greater_is_better=False)
    assert flipped.t == pytest.approx(t)


def test_mcnemar_exact_and_chi2() -> None:
    a = np.array([True] * 10 + [False] * 2 + [True] * 50)
    b = np.array([False] * 10 + [True] * 2 + [True] * 50)
    res = mcnemar(a, b)
    assert (res.a_only, res.b_only) == (10, 2)
    assert res.p_value == pytest.approx(stats.binomtest(10, 12, 0.5).pvalue)
    big_a = np.array([True] * 60 + [False] * 30)
    big_b = ~big_a
    chi = mcnemar(big_a, big_b)
    assert chi.statistic == pytest.approx((30 - 1) ** 2 / 90)


def test_bootstrap_ci_covers_the_mean_and_is_reproducible() -> None:
    x = np.random.default_rng(3).normal(1.0, 1.0, 400)
    ci = bootstrap_ci(lambda idx: float(x[idx].mean()), 400, resamples=500, seed=1)
    assert ci.low < x.mean() < ci.high
    assert ci.high - ci.low == pytest.approx(2 * 1.96 / np.sqrt(400), rel=0.25)
    again = bootstrap_ci(lambda idx: float(x[idx].mean()), 400, resamples=500, seed=1)
    assert (again.low, again.high) == (ci.low, ci.high)


def _cv(family: str, aucs: list[float]) -> CVResult:
    return CVResult(family, [{"roc_auc": v} for v in aucs], n_train=800.0, n_test=200.0)


def test_selection_refuses_a_candidate_that_does_not_beat_the_baseline() -> None:
    """A deliberately useless candidate (random scores) is not selected; the reason says why."""
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 600)
    classes = np.array([0, 1])
    base = np.column_stack([np.full(600, 0.5), np.full(600, 0.5)])
    noise = rng.random(600)
    useless = np.column_stack([1 - noise, noise])
    cv = {
        "baseline": _cv("baseline", [0.5] * 5),
        "useless": _cv("useless", [0.52, 0.47, 0.51, 0.49, 0.53]),
    }
    sel = select(
        cv, {"baseline": base, "useless": useless}, y, metric="roc_auc",
        problem_type="classification", classes=classes, alpha=0.05, resamples=300, seed=0,
    )  # fmt: skip
    assert sel.chosen is None
    assert "no candidate beats the baseline significantly" in sel.reason
    assert "useless: CV p=" in sel.reason
    assert not sel.vs_baseline["useless"].significant


def test_selection_picks_the_best_significant_candidate() -> None:
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, 600)
    good_p = np.clip(0.5 + 0.35 * (2 * y - 1) + rng.normal(0, 0.2, 600), 0.01, 0.99)
    ok_p = np.clip(0.5 + 0.15 * (2 * y - 1) + rng.normal(0, 0.2, 600), 0.01, 0.99)
    base = np.column_stack([np.full(600, 0.5), np.full(600, 0.5)])
    out = {
        "baseline": base,
        "good": np.column_stack([1 - good_p, good_p]),
        "ok": np.column_stack([1 - ok_p, ok_p]),
    }
    cv = {
        "baseline": _cv("baseline", [0.5] * 5),
        "good": _cv("good", [0.90, 0.91, 0.89, 0.92, 0.90]),
        "ok": _cv("ok", [0.70, 0.72, 0.69, 0.71, 0.73]),
    }
    sel = select(
        cv, out, y, metric="roc_auc", problem_type="classification", classes=np.array([0, 1]),
        alpha=0.05, resamples=300, seed=0,
    )  # fmt: skip
    assert sel.chosen == "good"
    assert sel.eligible == ["good", "ok"]
    assert sel.vs_best["ok"].cv_mean_diff < 0
    assert sel.vs_baseline["good"].mcnemar_p_value is not None


def test_models_trained_on_shuffled_labels_are_rejected(churn_cfg, churn_data) -> None:
    """Real fits on labels shuffled away from the features: nothing beats the baseline."""
    import dataclasses

    from mainsail.evaluate.cv import cross_validate, cv_folds
    from mainsail.evaluate.metrics import model_output
    from mainsail.train.fit import class_labels, fit_final, train_arrays
    from mainsail.train.model import to_dense

    frame = churn_data.frame.copy()
    frame[churn_data.target] = np.random.default_rng(0).permutation(frame[churn_data.target])
    data = dataclasses.replace(churn_data, frame=frame)
    classes = class_labels(data)
    folds = cv_folds(data, 3, churn_cfg.seed)
    params = {"baseline": {}, "linear": {"C": 1.0}}
    cv = {f: cross_validate(data, f, p, folds, seed=1, classes=classes) for f, p in params.items()}
    arrays = train_arrays(data, churn_cfg.seed)
    X_valid = to_dense(data.preprocessor.transform(data.X("valid")))
    out = {
        f: model_output(
            fit_final(f, p, data, churn_cfg, arrays, X_valid, None, use_ray=False),  # type: ignore[arg-type]
            data.X("test"),
            "classification",
        )
        for f, p in params.items()
    }
    sel = select(
        cv, out, data.y("test").to_numpy(), metric="roc_auc", problem_type="classification",
        classes=classes, alpha=0.05, resamples=300, seed=0,
    )  # fmt: skip
    assert sel.chosen is None
    assert "no candidate beats the baseline significantly" in sel.reason


def test_among_tied_candidates_the_simplest_wins() -> None:
    """An MLP with the best CV mean but statistically tied with the linear model (CV and test)
    loses to it; a tree clearly better than both would win."""
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 800)
    signal = (2 * y - 1).astype(float)

    def proba(strength: float, seed: int) -> np.ndarray:
        noise = np.random.default_rng(seed).normal(0, 0.25, 800)
        p = np.clip(0.5 + strength * signal + noise, 0.01, 0.99)
        return np.column_stack([1 - p, p])

    base = np.column_stack([np.full(800, 0.5), np.full(800, 0.5)])
    out = {"baseline": base, "linear": proba(0.2, 1), "mlp": proba(0.2, 2)}
    cv = {
        "baseline": _cv("baseline", [0.5] * 5),
        "linear": _cv("linear", [0.80, 0.78, 0.81, 0.79, 0.80]),
        "mlp": _cv("mlp", [0.81, 0.79, 0.80, 0.81, 0.80]),
    }
    kw = {"metric": "roc_auc", "problem_type": "classification", "classes": np.array([0, 1]),
          "alpha": 0.05, "resamples": 300, "seed": 0}  # fmt: skip
    sel = select(cv, out, y, **kw)  # type: ignore[arg-type]
    assert sel.leader == "mlp" and set(sel.tied) == {"mlp", "linear"}
    assert sel.chosen == "linear" and "simplest" in sel.reason
    out["tree"] = proba(0.35, 3)
    cv["tree"] = _cv("tree", [0.90, 0.91, 0.89, 0.92, 0.90])
    sel = select(cv, out, y, **kw)  # type: ignore[arg-type]
    assert sel.chosen == "tree" and sel.tied == ["tree"]


def test_time_split_selection_ranks_by_the_recent_folds() -> None:
    """Forward-in-time folds: the early folds (little, old data) flatter one candidate; the
    recent folds, which look like the test period, favour the other."""
    early_star = CVResult("mlp", [{"roc_auc": v} for v in (0.75, 0.72, 0.62, 0.60, 0.59)],
                          n_train=800.0, n_test=200.0, recent=2)  # fmt: skip
    steady = CVResult("linear", [{"roc_auc": v} for v in (0.62, 0.62, 0.62, 0.62, 0.62)],
                      n_train=800.0, n_test=200.0, recent=2)  # fmt: skip
    assert early_star.scores("roc_auc").mean() > steady.scores("roc_auc").mean()
    assert early_star.estimate("roc_auc") < steady.estimate("roc_auc")
    from mainsail.evaluate.compare import best_by_cv

    assert best_by_cv({"mlp": early_star, "linear": steady}, "roc_auc") == "linear"
