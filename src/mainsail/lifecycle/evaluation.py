"""Evaluation, as the pipeline's `evaluate` and `compare-champion` steps run it:

    evaluate_candidates  cross-validation on train+validation rows → test-set scores, paired
                         comparisons and selection → the served model (calibration and
                         threshold on validation rows, refit on train+validation) → the
                         registry-ready model folder
    compare_champion     the new model against the registry's champion on the same test rows,
                         by the selection's own paired bootstrap and win rule

`mainsail.lifecycle.run` calls :func:`evaluate_candidates` after training.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mainsail.config import ProjectConfig
from mainsail.data.prepared import DataStageResult
from mainsail.evaluate.compare import ChampionComparison
from mainsail.evaluate.cv import CVResult
from mainsail.evaluate.document import Documented, TuningOutcome
from mainsail.lifecycle.training import Candidates
from mainsail.train.model import TabularModel

Tick = Callable[[str, float], None]


def _noop(stage: str, advance: float) -> None:
    return None


def cross_validate_candidates(
    cfg: ProjectConfig,
    data: DataStageResult,
    candidates: Candidates,
    tick: Tick = _noop,
) -> dict[str, CVResult]:
    """K-fold CV (matching the split strategy) of the families in `evaluate.cv_candidates`
    (all when null; the baseline always), refitting each fold with the candidate's params."""
    from mainsail.evaluate.cv import cross_validate, cv_folds
    from mainsail.train.fit import class_labels

    folds = cv_folds(data, cfg.evaluate.cv_folds, cfg.seed, cfg.evaluate.cv_max_rows)
    recent = min(cfg.evaluate.recent_folds, len(folds)) if data.split.strategy == "time" else None
    wanted = cfg.evaluate.cv_candidates
    families = [f for f in candidates.families if wanted is None or f in wanted or f == "baseline"]
    classes = class_labels(data)
    step = 1.0 / (len(families) * len(folds))
    return {
        family: cross_validate(
            data,
            family,
            candidates.params[family],
            folds,
            seed=cfg.seed,
            classes=classes,
            on_fold=lambda: tick("cross-validate", step),
            threads=cfg.train.threads,
            recent=recent,
        )
        for family in families
    }


def evaluate_candidates(
    cfg: ProjectConfig,
    data: DataStageResult,
    candidates: Candidates,
    tuned: Mapping[str, TuningOutcome],
    model_dir: Path,
    *,
    version: str,
    tick: Tick = _noop,
    timings: dict[str, float] | None = None,
) -> Documented:
    """Cross-validate, score on the test rows, compare and select; make the served model from
    the chosen one (:func:`mainsail.train.final.finalize`: calibration and threshold on the
    validation rows, refit on train+validation) and score it; then write the model folder
    (see :func:`mainsail.evaluate.document.write_model_folder`). Wall seconds of each part go
    into `timings` (cv_s, evaluate_s, refit_s, report_s) when given."""
    import tempfile

    from mainsail.evaluate.document import evaluate_final, evaluate_on_test, write_model_folder
    from mainsail.train.final import finalize

    timings = timings if timings is not None else {}
    t0 = time.perf_counter()
    cv = cross_validate_candidates(cfg, data, candidates, tick)
    timings["cv_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    evaluation = evaluate_on_test(cfg, data, candidates.models, cv, tick)
    timings["evaluate_s"] = time.perf_counter() - t0
    final = None
    chosen = evaluation.selection.chosen
    if chosen is not None:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="mainsail-refit-") as scratch:
            folds = cv[chosen]
            oof = (
                (folds.oof_rows, folds.oof_output)
                if folds.oof_rows is not None and folds.oof_output is not None
                else None
            )
            served = finalize(
                cfg, data, chosen, candidates.params[chosen], candidates.models[chosen],
                Path(scratch), out_of_fold=oof,
            )  # fmt: skip
        final = evaluate_final(cfg, data, served, evaluation, cv)
        timings["refit_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    documented = write_model_folder(
        cfg,
        data,
        candidates.models,
        candidates.params,
        cv,
        tuned,
        evaluation,
        model_dir,
        version=version,
        final=final,
        tick=tick,
    )
    timings["report_s"] = time.perf_counter() - t0
    return documented


def compare_champion(
    cfg: ProjectConfig, data: DataStageResult, new: TabularModel, champion: Any
) -> ChampionComparison:
    """Both models on the test rows of `data`; the new one wins only when the paired-bootstrap
    interval of its gain on the primary metric excludes zero (the selection's own rule)."""
    from mainsail.evaluate.compare import paired_test_gain
    from mainsail.evaluate.metrics import greater_is_better, metric_fn, model_output
    from mainsail.train.fit import class_labels
    from mainsail.train.model import align_columns

    X_test, y_test = data.X("test"), data.y("test").to_numpy()
    metric = cfg.primary_metric(data.problem_type)
    score = metric_fn(metric, data.problem_type, class_labels(data))
    new_out = model_output(new, X_test, data.problem_type)
    old_out = model_output(champion, X_test, data.problem_type)
    classes = class_labels(data)
    if classes is not None:  # a champion from before the positive-class order: same columns
        new_out = align_columns(new_out, new.classes_, classes)
        old_out = align_columns(old_out, champion.classes_, classes)
    gain = paired_test_gain(
        score,
        greater_is_better(metric),
        new_out,
        old_out,
        y_test,
        level=1 - cfg.evaluate.alpha,
        resamples=cfg.evaluate.bootstrap,
        seed=cfg.seed,
    )
    return ChampionComparison(
        metric, float(score(y_test, new_out)), float(score(y_test, old_out)), gain
    )
