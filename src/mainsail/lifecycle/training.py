"""Training, in the two parts that the pipeline runs as two steps (on Ray, or on KubeRay):

    tune_candidates  Optuna / Ray Tune search of the configured families (train rows fit,
                     validation rows score); one line per trial in the experiment log
    fit_candidates   every family fitted on the train rows with its tuned (or default)
                     hyperparameters, wrapped with the fitted preprocessor

`mainsail.lifecycle.run` calls both in a row; the kfp `tune` and `train-candidates` steps call
one each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mainsail.config import ProjectConfig
from mainsail.core.files import jsonable
from mainsail.data.prepared import DataStageResult
from mainsail.train.model import TabularModel
from mainsail.tune.search import TuneResult

#: `tick(stage, advance)`: `advance` is the share of `stage` just completed.
Tick = Callable[[str, float], None]


def _noop(stage: str, advance: float) -> None:
    return None


@dataclass
class Candidates:
    """The fitted candidates and the hyperparameters each was fitted with."""

    families: list[str]
    """Trained families in config order, the baseline first."""
    params: dict[str, dict[str, Any]]
    models: dict[str, TabularModel]
    valid_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    """Every metric of each model on the validation rows (a first look; selection uses CV
    and test evidence)."""


def _valid_matrix(data: DataStageResult) -> Any:
    from mainsail.train.model import to_dense

    return to_dense(data.preprocessor.transform(data.X("valid")))


def tune_candidates(
    cfg: ProjectConfig,
    data: DataStageResult,
    *,
    log_path: Path,
    storage_dir: Path,
    tick: Tick = _noop,
) -> dict[str, TuneResult]:
    """Tune the families listed in `tune.candidates` (when tuning is on); every trial is
    appended to `log_path`, which exists afterwards even when nothing was tuned."""
    from mainsail.train.candidates import candidate_list
    from mainsail.train.fit import class_labels, distributed, train_arrays
    from mainsail.tune.search import TuneData, tune_family

    families = candidate_list(cfg)
    to_tune = [f for f in cfg.tune.candidates if f in families] if cfg.tune.enabled else []
    tuned: dict[str, TuneResult] = {}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    n_train = len(data.split.train)
    if to_tune and any(distributed(f, cfg, n_train) for f in families):
        # A final fit will run on Ray Train: with Ray up before tuning, `auto` runs its probe
        # trial alongside the first Ray batch instead of alone (no serial round lost).
        from mainsail.train.ray_runtime import ensure_ray

        ensure_ray(cfg.train.ray)
    n_trials = trial_budget(cfg, n_train)
    if to_tune:
        X, y, w = train_arrays(data, cfg.seed)
        X, y, w = tuning_sample(X, y, w, cfg.tune.max_rows, cfg.seed)
        tdata = TuneData(
            X,
            y,
            _valid_matrix(data),
            data.y("valid").to_numpy(),
            data.problem_type,
            class_labels(data),
            w,
        )
        step = 1.0 / (len(to_tune) * n_trials)
        for family in to_tune:
            tuned[family] = tune_family(
                family,
                tdata,
                cfg,
                log_path=log_path,
                n_trials=n_trials,
                storage_dir=storage_dir / family,
                on_trial=lambda _rec, s=step: tick("tune", s),  # type: ignore[misc]
            )
    log_path.touch()
    tick("tune", 1.0)  # a time budget may end the search early: the stage is done all the same
    return tuned


def trial_budget(cfg: ProjectConfig, n_train: int) -> int:
    """Trials per tuned family (`tune.auto_budget`): `num_trials` up to 20,000 training rows,
    then fewer in proportion to the square root of the rows, at least 4 (never more than
    `num_trials`). A function of the config and the data only, so a run stays reproducible."""
    n = cfg.tune.num_trials
    if not cfg.tune.auto_budget or n_train <= 20_000:
        return n
    return max(min(n, 4), round(n * (20_000 / n_train) ** 0.5))


def tuning_sample(X: Any, y: Any, w: Any, max_rows: int | None, seed: int) -> tuple[Any, Any, Any]:
    """A seeded sample of `max_rows` training rows for the trials (all rows when fewer)."""
    import numpy as np

    if max_rows is None or len(X) <= max_rows:
        return X, y, w
    rows = np.sort(np.random.default_rng(seed).choice(len(X), max_rows, replace=False))
    return X[rows], y[rows], None if w is None else w[rows]


def fit_candidates(
    cfg: ProjectConfig,
    data: DataStageResult,
    tuned: dict[str, TuneResult],
    *,
    storage_dir: Path,
    tick: Tick = _noop,
) -> Candidates:
    """Fit every family on the train rows with its tuned (else default) hyperparameters."""
    from mainsail.evaluate.metrics import all_metrics, model_output
    from mainsail.train.candidates import candidate_list, initial_params
    from mainsail.train.fit import class_labels, fit_final, train_arrays

    families = candidate_list(cfg)
    params = initial_params(cfg, families, data.problem_type)
    # As JSON has them (lists, plain numbers): the same whether the results came through a file.
    params.update({f: jsonable(t.best_params) for f, t in tuned.items() if f in params})
    arrays = train_arrays(data, cfg.seed)
    X_valid = _valid_matrix(data)
    y_valid = data.y("valid").to_numpy()
    classes = class_labels(data)
    models: dict[str, TabularModel] = {}
    valid: dict[str, dict[str, float]] = {}
    for family in families:
        models[family] = fit_final(family, params[family], data, cfg, arrays, X_valid, storage_dir)
        output = model_output(models[family], data.X("valid"), data.problem_type)
        valid[family] = all_metrics(data.problem_type, y_valid, output, classes)
        tick("train", 1.0 / len(families))
    return Candidates(families, params, models, valid)
