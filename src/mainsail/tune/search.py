"""Hyperparameter search: Optuna's TPE sampler, run in-process or on Ray Tune, with a trial log.

Why Ray Tune's defaults are slow here (read from Ray 2.60's source):

* every trial is a new actor (`reuse_actors=False`): a fresh Python worker that imports the
  trainable and its data, 1-2 s per trial on a small machine, which dwarfs a 0.1 s trial;
* with a custom searcher and no `ConcurrencyLimiter`, `TuneController` allows a single pending
  trial (`_get_max_pending_trials` returns 1), so the next trial's actor only starts after the
  previous one runs, and trial start-up serialises;
* the default callbacks write JSON/CSV/TensorBoard results and sync the experiment state
  for every result, and each trial gets its own trial directory.

What this module does instead:

* `auto` picks the way from a probe: trial 0 runs in-process, and if it took less than
  `tune.short_trial_s`, or Ray is not running and would run fewer than `MIN_RAY_BATCH` trials at
  once (a two-CPU machine), the search stays in-process (an Optuna study with the same seeded TPE
  sampler, no scheduling overhead at all), otherwise the rest goes to Ray. When Ray already
  runs in this process (started by the caller, an earlier Ray search or a Ray Train fit), the
  probe shares the first batch: trials 1..k-1 run as Ray tasks while it runs, so it costs no
  round of its own. A long probe keeps their results; after a short one, Ray results that are in
  within half the probe's time are kept and the other tasks are cancelled and run in-process,
  so a cold Ray worker cannot hold a short search up. When Ray is not running, trial 0 runs
  alone: Ray is never started just for a probe;
* long independent trials (`ray` backend) run as batches of Ray tasks: Optuna asks for as many
  trials as Ray has CPUs, Ray runs them on its already-started worker processes (no actor per
  trial, no Tune controller, the data placed once in the object store), and the results are
  told back in trial order, so the search is reproducible;
* iterative trials (the MLP, reporting a validation loss per epoch) and the `ray_tune` backend
  go to Ray Tune with `OptunaSearch` wrapped in a batch-mode `ConcurrencyLimiter` sized to
  Ray's CPUs (as many trials run and are pending as there are CPUs), one CPU per trial, reused
  actors and only the JSON logger; for the MLP an ASHA scheduler stops weak trials early. ASHA
  decisions depend on timing, so an MLP search on Ray is not bit-reproducible (the final model
  is: it is refitted from the chosen parameters with a fixed seed).

Reproducibility: trials are asked in whole batches and told in trial order, and where a trial
ran never changes its parameters, so for one seed the asked parameters are the same whichever
way `auto` goes (until an iterative search hands over to Ray Tune): with Ray running, batches
of k from the start, exactly as the `ray` backend; without, trial 0 alone then batches of k,
as the `optuna` backend. A timing decision only changes where trials run.

Every trial is appended to the experiment log (JSON lines): family, trial number, the sampler's
raw parameters, the full parameter set, score, objective, duration and the backend that ran it
(`optuna`: in-process, or `ray`). The record is enough to re-run the trial with
:func:`rerun_trial`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mainsail.config import ProjectConfig
from mainsail.config.train import RayConfig
from mainsail.evaluate.metrics import greater_is_better, metric_fn, model_output
from mainsail.train.candidates import fit_arrays, search_space
from mainsail.train.model import align_columns
from mainsail.train.threads import limit_threads

#: `objective(params, report) -> score`; iterative objectives call `report(step, value)` after
#: each step (an epoch) so a pruner / ASHA can stop them; `report` may raise to stop the trial.
Objective = Callable[[dict[str, Any], Callable[[int, float], None]], float]
Space = Callable[[Any], dict[str, Any]]


@dataclass
class TuneData:
    """Preprocessed train/valid arrays that every trial fits and scores on."""

    X: np.ndarray
    y: np.ndarray
    X_valid: np.ndarray
    y_valid: np.ndarray
    problem_type: str
    classes: np.ndarray | None
    sample_weight: np.ndarray | None = None


@dataclass
class TrialRecord:
    """One line of the experiment log."""

    family: str
    trial: int
    backend: str
    raw_params: dict[str, Any]
    """What the Optuna sampler chose (feed to `optuna.trial.FixedTrial` to rebuild `params`)."""
    params: dict[str, Any]
    """The full hyperparameters the candidate was fitted with."""
    objective: str
    """What was optimised on the validation rows (the primary metric, or `valid_loss` for MLP)."""
    direction: str
    score: float | None
    state: str
    duration_s: float
    seed: int
    problem_type: str
    threads: int = 1
    """Threads the fit used (results of some libraries depend on it)."""


@dataclass
class TuneResult:
    """Outcome of one search."""

    family: str
    backend: str
    best_params: dict[str, Any]
    best_score: float
    objective: str
    direction: str
    wall_s: float
    trials: list[TrialRecord] = field(default_factory=list)


@dataclass
class SearchSettings:
    """How a search runs (taken from the config by :func:`settings_from_config`)."""

    n_trials: int
    direction: str
    seed: int
    backend: str = "auto"
    short_trial_s: float = 1.0
    time_budget_s: float | None = None
    max_concurrent: int | None = None
    iterative: bool = False
    """Trials report per step (ASHA on Ray, successive halving in-process)."""
    max_steps: int = 1
    """Steps (epochs) of an iterative trial, for ASHA's max_t."""
    ray: RayConfig = field(default_factory=lambda: RayConfig.model_validate({}))
    storage_dir: Path | None = None
    threads: int = 1


#: `auto` starts Ray for long trials only when it runs at least this many at once: with two
#: CPUs (this project's machines), Ray's start-up (tens of seconds on a loaded machine) costs
#: more than running the trials one after the other saves. A Ray already running is used.
MIN_RAY_BATCH = 3


class _PrunedError(Exception):
    """Raised inside an in-process trial that the pruner stopped."""


def objective_of(family: str, metric: str) -> tuple[str, str]:
    """(objective name, direction): iterative MLP trials optimise the validation loss."""
    if family == "mlp":
        return "valid_loss", "minimize"
    return metric, "maximize" if greater_is_better(metric) else "minimize"


def evaluate_params(
    family: str,
    params: dict[str, Any],
    data: TuneData,
    *,
    metric: str,
    seed: int,
    on_epoch: Callable[[int, float], None] | None = None,
    threads: int = 1,
) -> float:
    """Fit on the train arrays, score on the validation arrays; the trial's result."""
    with limit_threads(threads, torch_too=family == "mlp"):
        model = fit_arrays(
            family,
            params,
            data.X,
            data.y,
            problem_type=data.problem_type,
            seed=seed,
            sample_weight=data.sample_weight,
            X_valid=data.X_valid,
            y_valid=data.y_valid,
            on_epoch=on_epoch,
            threads=threads,
        )
        if family == "mlp":
            return float(min(h["valid_loss"] for h in model.history))
        out = model_output(model, data.X_valid, data.problem_type)
    if data.classes is not None:
        out = align_columns(out, model.classes_, data.classes)
    return metric_fn(metric, data.problem_type, data.classes)(data.y_valid, out)


class FamilyObjective:
    """Picklable objective of one candidate family (Ray ships it to trial actors)."""

    def __init__(self, family: str, data: Any, metric: str, seed: int, threads: int = 1) -> None:
        self.family, self.data, self.metric, self.seed = family, data, metric, seed
        self.threads = threads

    def __call__(self, params: dict[str, Any], report: Callable[[int, float], None]) -> float:
        import sys

        data = self.data
        if "ray" in sys.modules:
            import ray

            if isinstance(data, ray.ObjectRef):
                data = ray.get(data)  # placed once in the object store, shared by all trials
        return evaluate_params(
            self.family,
            params,
            data,
            metric=self.metric,
            seed=self.seed,
            on_epoch=report if self.family == "mlp" else None,
            threads=self.threads,
        )


class FamilySpace:
    """Picklable define-by-run space: the family's suggestions and the params derived from them."""

    def __init__(self, family: str, problem_type: str, cfg: ProjectConfig) -> None:
        self.family, self.problem_type, self.cfg = family, problem_type, cfg

    def __call__(self, trial: Any) -> dict[str, Any]:
        return search_space(self.family, self.problem_type, self.cfg)(trial)


def derive(space: Space, raw: dict[str, Any]) -> dict[str, Any]:
    """The full params a space builds from the sampler's raw choices."""
    import optuna

    return space(optuna.trial.FixedTrial(raw))


def _sampler(seed: int, n_trials: int) -> Any:
    import optuna

    # Few trials: leave most of them to TPE rather than the 10 random start-up trials.
    startup = max(2, min(10, n_trials // 3))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)


def settings_from_config(cfg: ProjectConfig, family: str, metric: str) -> SearchSettings:
    """Search settings of one family from the project config."""
    _, direction = objective_of(family, metric)
    return SearchSettings(
        n_trials=cfg.tune.num_trials,
        direction=direction,
        seed=cfg.seed,
        backend=cfg.tune.backend,
        short_trial_s=cfg.tune.short_trial_s,
        time_budget_s=cfg.tune.time_budget_s,
        max_concurrent=cfg.tune.max_concurrent,
        iterative=family == "mlp",
        max_steps=cfg.train.mlp.epochs,
        ray=cfg.train.ray,
        threads=cfg.train.threads,
    )


def tune_family(
    family: str,
    data: TuneData,
    cfg: ProjectConfig,
    *,
    log_path: Path | None = None,
    backend: str | None = None,
    n_trials: int | None = None,
    on_trial: Callable[[TrialRecord], None] | None = None,
    storage_dir: Path | None = None,
) -> TuneResult:
    """Search one family's hyperparameters within the config's budget; log every trial."""
    metric = cfg.primary_metric(data.problem_type)  # type: ignore[arg-type]
    objective_name, _ = objective_of(family, metric)
    settings = settings_from_config(cfg, family, metric)
    settings.backend = backend or settings.backend
    settings.n_trials = n_trials or settings.n_trials
    settings.storage_dir = storage_dir
    objective = FamilyObjective(family, data, metric, cfg.seed, settings.threads)

    def ray_objective() -> Any:  # run_search starts Ray (its way) before calling this
        import ray

        return FamilyObjective(family, ray.put(data), metric, cfg.seed, settings.threads)

    def emit(rec: TrialRecord) -> None:
        rec.family, rec.objective, rec.problem_type = family, objective_name, data.problem_type
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with log_path.open("a") as fh:
                fh.write(json.dumps(asdict(rec), sort_keys=True, default=_json_default) + "\n")
        if on_trial is not None:
            on_trial(rec)

    result = run_search(
        objective,
        FamilySpace(family, data.problem_type, cfg),
        settings,
        emit=emit,
        ray_objective=ray_objective,
        name=family,
    )
    result.family, result.objective = family, objective_name
    return result


def batch_size(settings: SearchSettings) -> int:
    """Trials per batch: what Ray can run at once (known without starting Ray)."""
    cpus = settings.ray.num_cpus or os.cpu_count() or 1
    per_trial = max(1, settings.threads)
    return max(1, min(settings.max_concurrent or cpus, cpus // per_trial))


def run_search(
    objective: Objective,
    space: Space,
    settings: SearchSettings,
    *,
    emit: Callable[[TrialRecord], None] | None = None,
    ray_objective: Callable[[], Objective] | None = None,
    name: str = "search",
) -> TuneResult:
    """Run `settings.n_trials` trials of `objective` over `space` (see the module docstring).

    `backend`: `optuna` (in-process), `ray` (Ray tasks; Ray Tune + ASHA for iterative
    objectives), `ray_tune` (always Ray Tune) or `auto` (probe with trial 0 in-process, stay
    there when it took less than `short_trial_s`). `ray_objective` builds the objective shipped
    to Ray (e.g. with its data in the object store); `objective` otherwise.

    Trials are asked for in batches of :func:`batch_size` and told in trial order. `optuna`, and
    `auto` while Ray is not running, run trial 0 alone first; `ray`, and `auto` while Ray runs
    (its probe shares the first batch with Ray tasks), start with a full batch. Either way the
    asked parameters do not depend on which way `auto` went.
    """
    import optuna

    backend = settings.backend
    if backend not in ("auto", "optuna", "ray", "ray_tune"):
        raise ValueError(
            f"unknown tuning backend {backend!r}; expected auto, optuna, ray or ray_tune"
        )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.perf_counter()
    records: list[TrialRecord] = []

    def keep(rec: TrialRecord) -> None:
        records.append(rec)
        if emit is not None:
            emit(rec)

    where = "optuna" if backend in ("auto", "optuna") else backend
    if where == "ray" and settings.iterative:
        where = "ray_tune"
    if where != "ray_tune":
        study = optuna.create_study(
            direction=settings.direction,  # type: ignore[arg-type]
            sampler=_sampler(settings.seed, settings.n_trials),
        )
        pruner = optuna.pruners.SuccessiveHalvingPruner() if settings.iterative else None
        k = batch_size(settings)
        # Ray is never started for a probe; when it already runs, the probe overlaps Ray work.
        overlap = backend == "auto" and k > 1 and _ray_running()
        solo_first = backend == "optuna" or (backend == "auto" and not overlap)
        tasks: list[_RayTrials] = []  # created on first use: ships the objective once

        def on_ray() -> _RayTrials:
            if not tasks:
                _start_ray(settings)
                shipped = ray_objective() if ray_objective is not None else objective
                tasks.append(_RayTrials(shipped, settings))
            return tasks[0]

        budget = settings.time_budget_s
        number = 0
        while number < settings.n_trials:
            if budget is not None and number > 0 and time.perf_counter() - start > budget:
                break
            first = number == 0
            size = 1 if first and solo_first else min(k, settings.n_trials - number)
            batch = [study.ask() for _ in range(size)]
            params = [space(t) for t in batch]
            if first and overlap and size > 1:
                results = _probe_beside_ray(
                    objective, study, batch, params, pruner, on_ray(), settings.short_trial_s
                )
            elif where == "optuna":
                results = [
                    _run_inprocess(objective, study, t, p, pruner)
                    for t, p in zip(batch, params, strict=True)
                ]
            else:
                results = on_ray().run(params)
            for trial, p, out in zip(batch, params, results, strict=True):
                if out.state == "COMPLETE":
                    study.tell(trial, out.score)
                elif out.state == "PRUNED":
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                else:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                value = out.score if out.state != "FAIL" else None
                raw = dict(trial.params)
                keep(_record(number, out.backend, raw, p, settings, value, out.state, out.seconds))
                number += 1
            if (
                backend == "auto"
                and first
                and (k >= MIN_RAY_BATCH or _ray_running())
                and records[0].duration_s >= settings.short_trial_s
            ):
                where = "ray_tune" if settings.iterative else "ray"
                if where == "ray_tune":
                    break
    if where == "ray_tune" and len(records) < settings.n_trials:
        _start_ray(settings)
        shipped = ray_objective() if ray_objective is not None else objective
        _ray_search(shipped, space, settings, records, keep, name)
    done = [r for r in records if r.state == "COMPLETE" and r.score is not None]
    if not done:
        raise RuntimeError(f"tuning {name}: no trial completed; see the experiment log")
    sign = 1.0 if settings.direction == "maximize" else -1.0
    best = max(done, key=lambda r: (sign * float(r.score or 0.0), -r.trial))
    return TuneResult(
        name,
        where,
        best.params,
        float(best.score or 0.0),
        "score",
        settings.direction,
        time.perf_counter() - start,
        records,
    )


class _Outcome(NamedTuple):
    """What running one trial gave, and where it ran."""

    score: float
    seconds: float
    state: str
    backend: str


def _start_ray(settings: SearchSettings) -> None:
    """Start Ray the config's way before anything is shipped: a `ray.put` before `ray.init`
    starts Ray with Ray's defaults (all CPUs, the dashboard, every worker's log on the
    console, Ray Train's controller warnings included)."""
    from mainsail.train.ray_runtime import ensure_ray

    ensure_ray(settings.ray)


def _ray_running() -> bool:
    """Whether Ray is initialised in this process (never imports or starts it)."""
    import sys

    ray = sys.modules.get("ray")
    return ray is not None and bool(ray.is_initialized())


def _probe_beside_ray(
    objective: Objective,
    study: Any,
    batch: list[Any],
    params: list[dict[str, Any]],
    pruner: Any,
    ray_trials: _RayTrials,
    short_trial_s: float,
) -> list[_Outcome]:
    """The first batch of `auto` while Ray runs: trial 0 (the probe) in-process while trials
    1..k-1 run as Ray tasks, so the probe costs no round of its own.

    A long probe keeps the Ray results (Ray batches follow). After a short one, a Ray trial is
    kept only when its result is in within half the probe's time; the others are cancelled and
    run here, so a cold Ray worker (importing the trial code takes about a second) never holds
    up a short search. Each trial keeps the parameters it was asked with, so the search does not
    depend on which of them ran where. An iterative search re-runs them all here after a short
    probe: in-process trials can be pruned and Ray tasks cannot, which would make the sampler's
    history depend on timing.
    """
    import ray

    refs = ray_trials.submit(params[1:])
    try:
        probe = _run_inprocess(objective, study, batch[0], params[0], pruner)
    except BaseException:
        for ref in refs:
            ray.cancel(ref)
        raise
    if probe.seconds >= short_trial_s:
        return [probe, *(ray_trials.result(ref) for ref in refs)]
    deadline = time.perf_counter() + 0.5 * probe.seconds
    out = [probe]
    for i, ref in enumerate(refs, start=1):
        ready: list[Any] = []
        if pruner is None:
            ready, _ = ray.wait([ref], timeout=max(0.0, deadline - time.perf_counter()))
        if ready:
            out.append(ray_trials.result(ref))
        else:
            ray.cancel(ref)
            out.append(_run_inprocess(objective, study, batch[i], params[i], pruner))
    return out


def _record(
    number: int,
    backend: str,
    raw: dict[str, Any],
    params: dict[str, Any],
    settings: SearchSettings,
    score: float | None,
    state: str,
    duration: float,
) -> TrialRecord:
    backend = "ray" if backend.startswith("ray") else backend
    return TrialRecord(
        "", number, backend, raw, params, "score", settings.direction, score, state, duration,
        settings.seed, "", settings.threads,
    )  # fmt: skip


def _run_inprocess(
    objective: Objective, study: Any, trial: Any, params: dict[str, Any], pruner: Any
) -> _Outcome:
    """One trial in this process."""
    t0 = time.perf_counter()
    last = [math.nan]

    def report(step: int, value: float) -> None:
        last[0] = value
        if pruner is None:
            return
        trial.report(value, step)
        if pruner.prune(study, study._storage.get_trial(trial._trial_id)):
            raise _PrunedError

    try:
        score = float(objective(params, report))
    except _PrunedError:
        return _Outcome(last[0], time.perf_counter() - t0, "PRUNED", "optuna")
    state = "COMPLETE" if math.isfinite(score) else "FAIL"
    return _Outcome(score, time.perf_counter() - t0, state, "optuna")


def _remote_trial(objective: Objective, params: dict[str, Any]) -> tuple[float, float]:
    """Body of one trial run as a Ray task: (score, seconds)."""
    t0 = time.perf_counter()
    score = float(objective(params, lambda step, value: None))
    return score, time.perf_counter() - t0


class _RayTrials:
    """Independent trials as Ray tasks on Ray's already-started workers (no actor per trial, no
    Tune controller); the objective goes to the object store once."""

    def __init__(self, objective: Objective, settings: SearchSettings) -> None:
        import ray

        from mainsail.train.ray_runtime import ensure_ray

        ensure_ray(settings.ray)
        self._remote = ray.remote(num_cpus=max(1, settings.threads))(_remote_trial)
        self._objective = ray.put(objective)

    def submit(self, batch: list[dict[str, Any]]) -> list[Any]:
        """Start one task per parameter set; returns their object refs."""
        return [self._remote.remote(self._objective, p) for p in batch]

    @staticmethod
    def result(ref: Any) -> _Outcome:
        """Wait for one task's trial."""
        import ray

        try:
            score, seconds = ray.get(ref)
        except ray.exceptions.RayTaskError as err:
            logging.getLogger(__name__).warning("trial failed: %s", err)
            return _Outcome(math.nan, 0.0, "FAIL", "ray")
        return _Outcome(score, seconds, "COMPLETE" if math.isfinite(score) else "FAIL", "ray")

    def run(self, batch: list[dict[str, Any]]) -> list[_Outcome]:
        """Run a batch at once; results in batch order."""
        return [self.result(ref) for ref in self.submit(batch)]


def _ray_trainable(config: dict[str, Any], objective: Objective, space: Space) -> None:
    """One Ray Tune trial: rebuild the params from the sampler's raw choice, run, report."""
    from ray import tune

    params = derive(space, config)
    t0 = time.perf_counter()
    best = [math.inf]

    def report(step: int, value: float) -> None:
        best[0] = min(best[0], value)
        tune.report({"score": value, "best": best[0], "step": step,
                     "duration_s": time.perf_counter() - t0})  # fmt: skip

    score = objective(params, report)
    if best[0] == math.inf:  # not iterative: one result per trial
        tune.report(
            {"score": score, "best": score, "step": 0, "duration_s": time.perf_counter() - t0}
        )


def _ray_search(
    objective: Objective,
    space: Space,
    settings: SearchSettings,
    records: list[TrialRecord],
    keep: Callable[[TrialRecord], None],
    name: str,
) -> None:
    """Run the remaining trials on Ray Tune (see the module docstring for the settings)."""
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from mainsail.train.ray_runtime import ensure_ray, ray_storage

    cpus = ensure_ray(settings.ray)
    per_trial = max(1, settings.threads)
    concurrency = max(1, min(settings.max_concurrent or cpus, cpus // per_trial))
    mode = "max" if settings.direction == "maximize" else "min"
    remaining = settings.n_trials - len(records)
    searcher = OptunaSearch(
        space=_SuggestOnly(space),
        metric="score",
        mode=mode,
        # A different seed than the in-process probe, or TPE would repeat its first choice.
        sampler=_sampler(settings.seed + len(records), remaining),
    )
    scheduler = None
    if settings.iterative:
        scheduler = ASHAScheduler(
            time_attr="step",
            max_t=settings.max_steps,
            grace_period=max(1, settings.max_steps // 5),
            metric="score",
            mode=mode,
        )
    budget = settings.time_budget_s
    if budget is not None and records:
        budget = max(budget - sum(r.duration_s for r in records), 1.0)
    trainable = tune.with_resources(
        tune.with_parameters(_ray_trainable, objective=objective, space=space),
        {"cpu": per_trial},
    )
    storage = ray_storage(
        settings.storage_dir or Path(tempfile.gettempdir()) / "mainsail-tune", f"tune-{name}"
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            # Batch mode: the sampler learns each batch's results in one fixed order, so the
            # sequence of suggestions does not depend on which trial finished first.
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=concurrency, batch=True),
            scheduler=scheduler,
            num_samples=remaining,
            time_budget_s=budget,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=f"tune-{name}",
            storage_path=storage.path,
            storage_filesystem=storage.filesystem,
            verbose=0,
            callbacks=[JsonLoggerCallback()],
        ),
    )
    # The auto loggers write CSV, JSON and TensorBoard files per result; only the JSON one is
    # read back (by the result grid), so it is the only one kept. Set for this fit only.
    try:
        with _env({"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "TUNE_GLOBAL_CHECKPOINT_S": "60"}):
            grid = tuner.fit()
        results = [grid[i] for i in range(len(grid))]
    finally:
        storage.cleanup()
    rows = []
    for result in results:
        metrics = result.metrics or {}
        score = metrics.get("best" if settings.iterative else "score")
        dur = float(metrics.get("duration_s", 0.0))
        state = "COMPLETE" if result.error is None and score is not None else "FAIL"
        if (
            settings.iterative
            and state == "COMPLETE"
            and metrics.get("step", 0) < settings.max_steps
        ):
            state = "PRUNED"  # ASHA stopped it before the last step
        rows.append((_trial_index(result.path), dict(result.config or {}), score, dur, state))
    # Log in the order the searcher created the trials (the index in each trial's folder name).
    base = len(records)
    for offset, (_, raw, score, dur, state) in enumerate(sorted(rows, key=lambda r: r[0])):
        value = None if score is None else float(score)
        keep(_record(base + offset, "ray", raw, derive(space, raw), settings, value, state, dur))


@contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block, then restore what was there."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _trial_index(path: str | None) -> int:
    """Creation index of a Ray Tune trial from its folder name (`<trainable>_<id>_<n>_...`)."""
    import re

    match = re.search(r"_[0-9a-f]{5,}_(\d+)_", Path(path or "").name)
    return int(match.group(1)) if match else 1_000_000


class _SuggestOnly:
    """OptunaSearch's define-by-run function: make the suggestions, return no constants."""

    def __init__(self, space: Space) -> None:
        self.space = space

    def __call__(self, trial: Any) -> None:
        self.space(trial)


def rerun_trial(record: dict[str, Any], data: TuneData, cfg: ProjectConfig) -> float:
    """Re-run one logged trial (a parsed line of the experiment log); returns its score."""
    family = record["family"]
    params = derive(FamilySpace(family, data.problem_type, cfg), record["raw_params"])
    if params != record["params"]:
        raise ValueError(
            f"trial {record['trial']} of {family}: the search space no longer maps "
            f"{record['raw_params']} to the logged parameters {record['params']}"
        )
    return evaluate_params(
        family,
        params,
        data,
        metric=cfg.primary_metric(data.problem_type),  # type: ignore[arg-type]
        seed=int(record["seed"]),
        threads=int(record.get("threads", 1)),
    )


def read_log(path: Path) -> list[dict[str, Any]]:
    """The experiment log's records."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
