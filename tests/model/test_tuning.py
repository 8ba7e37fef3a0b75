"""Tuning: in-process Optuna and Ray Tune back ends, the experiment log, re-running a trial."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from mainsail.config import ProjectConfig
from mainsail.data.stage import DataStageResult
from mainsail.train.model import to_dense
from mainsail.train.stage import class_labels, train_arrays
from mainsail.tune.search import (
    SearchSettings,
    TuneData,
    read_log,
    rerun_trial,
    run_search,
    tune_family,
)


def _tune_data(data: DataStageResult, seed: int) -> TuneData:
    X, y, w = train_arrays(data, seed)
    Xv = to_dense(data.preprocessor.transform(data.X("valid")))
    return TuneData(X, y, Xv, data.y("valid").to_numpy(), data.problem_type, class_labels(data), w)


def test_inprocess_search_logs_every_trial_and_a_logged_trial_reruns(
    churn_cfg: ProjectConfig, churn_data: DataStageResult, tmp_path
) -> None:
    log = tmp_path / "experiment_log.jsonl"
    tdata = _tune_data(churn_data, churn_cfg.seed)
    res = tune_family("linear", tdata, churn_cfg, log_path=log, backend="optuna", n_trials=4)
    records = read_log(log)
    assert [r["trial"] for r in records] == [0, 1, 2, 3]
    assert {r["backend"] for r in records} == {"optuna"}
    assert all(r["family"] == "linear" and r["objective"] == "roc_auc" for r in records)
    best = max(records, key=lambda r: r["score"])
    assert res.best_score == best["score"] and res.best_params == best["params"]
    # The log line alone is enough to reproduce the trial's score.
    for rec in (records[0], best):
        assert rerun_trial(json.loads(json.dumps(rec)), tdata, churn_cfg) == rec["score"]


def test_same_seed_gives_the_same_search(churn_cfg, churn_data, tmp_path) -> None:
    tdata = _tune_data(churn_data, churn_cfg.seed)
    a = tune_family("tree", tdata, churn_cfg, backend="optuna", n_trials=3)
    b = tune_family("tree", tdata, churn_cfg, backend="optuna", n_trials=3)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert [t.score for t in a.trials] == [t.score for t in b.trials]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["ray", "ray_tune"])
def test_ray_backends_log_every_trial_reproducibly(
    ray_session, churn_cfg, churn_data, tmp_path, backend
) -> None:
    """`ray`: batches of Ray tasks; `ray_tune`: Tuner + OptunaSearch (batched limiter)."""
    tdata = _tune_data(churn_data, churn_cfg.seed)
    runs = []
    # A second Ray Tune experiment costs tens of seconds here, so only `ray` runs twice.
    for name in ("a", "b") if backend == "ray" else ("a",):
        log = tmp_path / f"{name}.jsonl"
        res = tune_family(
            "linear", tdata, churn_cfg, log_path=log, backend=backend, n_trials=4,
            storage_dir=tmp_path / name,
        )  # fmt: skip
        assert res.backend == backend
        runs.append(read_log(log))
    records = runs[0]
    assert [r["trial"] for r in records] == [0, 1, 2, 3]
    assert all(r["state"] == "COMPLETE" and r["backend"] == "ray" for r in records)
    assert len({r["params"]["C"] for r in records}) == 4
    if len(runs) == 2:
        # Batches are told to the sampler in trial order: the same seed, the same search.
        assert [r["params"] for r in runs[1]] == [r["params"] for r in records]
    rec = records[-1]
    assert rerun_trial(rec, tdata, churn_cfg) == pytest.approx(rec["score"], abs=1e-12)


def _by_value() -> None:
    """Ray workers cannot import test modules: ship this module's functions by value."""
    import sys

    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _sleep_objective(params: dict, report) -> float:
    time.sleep(params["d"])
    return -((params["x"] - 0.3) ** 2)


class _Space:
    def __init__(self, d: float) -> None:
        self.d = d

    def __call__(self, trial) -> dict:
        return {"x": trial.suggest_float("x", 0.0, 1.0), "d": self.d}


def test_auto_backend_keeps_short_trials_in_process() -> None:
    settings = SearchSettings(n_trials=5, direction="maximize", seed=1, backend="auto",
                              short_trial_s=0.5)  # fmt: skip
    res = run_search(_sleep_objective, _Space(0.01), settings)
    assert res.backend == "optuna"
    assert len(res.trials) == 5


@pytest.mark.slow
def test_ray_search_with_asha_stops_weak_iterative_trials(ray_session, tmp_path) -> None:
    """An iterative objective on Ray Tune: ASHA stops trials whose curve is worse at a rung."""
    _by_value()

    settings = SearchSettings(
        n_trials=6, direction="minimize", seed=2, backend="ray", iterative=True, max_steps=8,
        storage_dir=tmp_path,
    )  # fmt: skip
    res = run_search(_curve_objective, _CurveSpace(), settings)
    states = [t.state for t in res.trials]
    assert len(states) == 6
    assert "PRUNED" in states and "COMPLETE" in states
    best = min((t for t in res.trials if t.score is not None), key=lambda t: t.score)
    assert res.best_params == best.params


class _CurveSpace:
    def __call__(self, trial) -> dict:
        return {"level": trial.suggest_float("level", 0.0, 1.0)}


def _curve_objective(params: dict, report) -> float:
    value = np.inf
    for step in range(1, 9):
        value = params["level"] + 1.0 / step
        report(step, value)
        time.sleep(0.05)
    return float(value)
