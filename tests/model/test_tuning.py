"""Tuning: in-process Optuna and Ray Tune back ends, the experiment log, re-running a trial."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mainsail.config import ProjectConfig
from mainsail.config.train import RayConfig
from mainsail.data.prepared import DataStageResult
from mainsail.train.fit import class_labels, train_arrays
from mainsail.train.model import to_dense
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


class _StampedSleep:
    """Sleep objective that appends `x pid start end` to a file, to see when trials ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, params: dict, report) -> float:
        start = time.time()
        time.sleep(params["d"])
        with self.path.open("a") as fh:
            fh.write(f"{params['x']!r} {os.getpid()} {start} {time.time()}\n")
        return -((params["x"] - 0.3) ** 2)


def _auto(n: int, backend: str = "auto") -> SearchSettings:
    return SearchSettings(n_trials=n, direction="maximize", seed=5, backend=backend,
                          short_trial_s=0.3, ray=RayConfig(num_cpus=2))  # fmt: skip


@pytest.mark.slow
def test_auto_with_ray_running_overlaps_the_probe_with_ray_trials(ray_session, tmp_path) -> None:
    """Ray already up: trial 0 (the probe) runs here while trial 1 runs as a Ray task, so a
    long search spends no round on the probe; a short one stays in-process. The asked
    parameters are those of the `ray` backend whichever way `auto` goes."""
    _by_value()
    stamps = tmp_path / "stamps.txt"
    # First the `ray` backend: the reference sequence, and it leaves Ray's workers warm (a cold
    # worker spends about a second importing the trial code before the trial starts).
    on_ray = run_search(_StampedSleep(stamps), _Space(0.6), _auto(4, "ray"))
    long = run_search(_StampedSleep(stamps), _Space(0.6), _auto(4))
    assert long.backend == "ray"
    assert [t.backend for t in long.trials] == ["optuna", "ray", "ray", "ray"]
    when = {}
    for line in stamps.read_text().splitlines():  # the long search's lines come last
        x, pid, start, end = line.split()
        when[float(x)] = (int(pid), float(start), float(end))
    pid0, start0, end0 = when[long.trials[0].raw_params["x"]]
    pid1, start1, end1 = when[long.trials[1].raw_params["x"]]
    assert pid0 == os.getpid() and pid1 != os.getpid()
    assert start1 < end0 and start0 < end1, "the probe and the Ray trial did not overlap"

    short = run_search(_StampedSleep(stamps), _Space(0.01), _auto(6))
    assert short.backend == "optuna"
    assert short.trials[0].backend == "optuna"
    assert {t.backend for t in short.trials[2:]} == {"optuna"}
    xs = [t.raw_params for t in long.trials]
    assert [t.raw_params for t in short.trials[:4]] == xs
    assert [t.raw_params for t in on_ray.trials] == xs


def _hold_all_cpus(seconds: float) -> None:
    time.sleep(seconds)


@pytest.mark.slow
def test_auto_short_probe_does_not_wait_for_a_busy_ray(ray_session) -> None:
    """A Ray trial of the first batch that cannot start (here every Ray CPU is taken) is
    cancelled after a short probe and run in-process instead of being waited for."""
    import ray

    _by_value()
    blocker = ray.remote(num_cpus=2)(_hold_all_cpus).remote(30.0)
    deadline = time.monotonic() + 30.0
    while ray.available_resources().get("CPU", 0.0) > 0 and time.monotonic() < deadline:
        time.sleep(0.05)  # until the blocker holds Ray's CPUs
    try:
        t0 = time.perf_counter()
        res = run_search(_sleep_objective, _Space(0.02), _auto(6))
        wall = time.perf_counter() - t0
    finally:
        ray.cancel(blocker)
    assert res.backend == "optuna"
    assert [t.backend for t in res.trials] == ["optuna"] * 6
    assert all(t.state == "COMPLETE" for t in res.trials)
    assert wall < 10.0, f"the short search waited for Ray ({wall:.1f} s)"


def test_auto_without_ray_never_imports_it_for_short_trials(tmp_path) -> None:
    """Ray is never started (not even imported) just for a probe: a fresh process, no Ray."""
    script = tmp_path / "short.py"
    script.write_text(
        "import json, sys, time\n"
        "from mainsail.tune.search import SearchSettings, run_search\n"
        "def objective(params, report):\n"
        "    time.sleep(0.01)\n"
        "    return -(params['x'] - 0.3) ** 2\n"
        "def space(trial):\n"
        "    return {'x': trial.suggest_float('x', 0.0, 1.0)}\n"
        "settings = SearchSettings(n_trials=4, direction='maximize', seed=5, backend='auto')\n"
        "res = run_search(objective, space, settings)\n"
        "print(json.dumps([res.backend, [t.backend for t in res.trials], 'ray' in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True, timeout=120
    )
    backend, per_trial, ray_imported = json.loads(out.stdout.strip().splitlines()[-1])
    assert backend == "optuna" and per_trial == ["optuna"] * 4
    assert ray_imported is False


@pytest.mark.slow
def test_a_search_that_moves_to_ray_starts_it_the_configs_way(tmp_path) -> None:
    """Ray not running and a long probe: Ray is started by `ensure_ray` (our CPUs, no worker
    logs on the console) before the objective is put in the object store; a `ray.put` first
    would auto-start Ray with its defaults (every CPU, Ray Train's controller warnings printed
    on the user's console)."""
    cpus = (os.cpu_count() or 1) + 1  # differs from what an auto-started Ray would take
    script = tmp_path / "long.py"
    script.write_text(
        "import json, time\n"
        "import ray\n"
        "from mainsail.config.train import RayConfig\n"
        "from mainsail.tune.search import SearchSettings, run_search\n"
        "def objective(params, report):\n"
        "    time.sleep(0.3)\n"
        "    return -(params['x'] - 0.3) ** 2\n"
        "def shipped():\n"
        "    ray.put(b'data')  # what tune_family's objective does with the arrays\n"
        "    return objective\n"
        "def space(trial):\n"
        "    return {'x': trial.suggest_float('x', 0.0, 1.0)}\n"
        "settings = SearchSettings(n_trials=3, direction='maximize', seed=5, backend='auto',\n"
        f"                          short_trial_s=0.1, ray=RayConfig(num_cpus={cpus}))\n"
        "res = run_search(objective, space, settings, ray_objective=shipped)\n"
        "print(json.dumps([[t.backend for t in res.trials], ray.cluster_resources()['CPU']]))\n"
        "ray.shutdown()\n"
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True, timeout=300
    )
    per_trial, ray_cpus = json.loads(out.stdout.strip().splitlines()[-1])
    assert per_trial == ["optuna", "ray", "ray"]
    assert ray_cpus == cpus
