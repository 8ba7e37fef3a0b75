"""The training stage as one call: tune → fit candidates → cross-validate → compare → select →
document. `mainsail run` calls :func:`run_training_stage` after the data stage.

Everything lands in `run_dir/model/`:

    model.joblib           the chosen TabularModel (preprocessor + estimator); absent when the
                           selection rule refused every candidate
    model_card.yaml        the model card
    metrics.json           CV and test metrics of every candidate, comparisons, selection, tuning
    report.html            self-contained HTML report (plots inlined)
    plots/*.png            importance, confusion matrix, ROC, PR, calibration / residuals
    importance.json        permutation (and native) importance of the chosen model
    experiment_log.jsonl   one JSON line per tuning trial (enough to re-run it)
    reference.parquet      <= evaluate.reference_rows raw train rows with predictions (drift)
    feature_schema.json    the data stage's feature schema
    feature_lookup.json    how serving fetches the features by entity key (Feast-trained only)

    timings.json           wall seconds per step (kept out of metrics.json: they vary per run)

Ray's own files (TorchTrainer checkpoints, Tune state) go to a temporary folder, removed at
the end. `progress(stage, done)` receives the cumulative fraction of each stage in STAGES.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from mainsail.config import ProjectConfig
from mainsail.data.stage import DataStageResult
from mainsail.evaluate.compare import Selection, select
from mainsail.evaluate.cv import CVResult, cross_validate, cv_folds
from mainsail.evaluate.metrics import all_metrics, metric_fn, model_output
from mainsail.evaluate.stats import bootstrap_ci
from mainsail.train.candidates import (
    default_params,
    fit_arrays,
    mlp_params_dict,
    oversample_indices,
    sample_weights,
)
from mainsail.train.model import TabularModel, to_dense
from mainsail.train.threads import limit_threads
from mainsail.tune.search import TuneData, TuneResult, tune_family

STAGES = ("tune", "train", "cross-validate", "evaluate", "report")
"""Progress stage names, in order; each stage's advances add up to 1.0."""


class Progress(Protocol):
    """`progress(stage, done)`: `done` is the fraction (0..1) of `stage` completed so far."""

    def __call__(self, stage: str, done: float) -> None: ...


@dataclass
class TrainingResult:
    """What the stage returns to `mainsail run`."""

    chosen: str | None
    """The selected family; None when no candidate beat the baseline significantly."""
    reason: str
    model_dir: Path
    model_path: Path | None
    card_path: Path
    metrics_path: Path
    report_path: Path
    log_path: Path
    reference_path: Path | None
    plots: dict[str, Path]
    selection: Selection
    test_metrics: dict[str, dict[str, float]]
    cv_metrics: dict[str, dict[str, dict[str, float]]]
    tuning: dict[str, TuneResult] = field(default_factory=dict)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    model: TabularModel | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-safe summary for `mainsail run`'s run summary."""
        return {
            "chosen": self.chosen,
            "reason": self.reason,
            "model_dir": str(self.model_dir),
            "model": str(self.model_path) if self.model_path else None,
            "card": str(self.card_path),
            "report": str(self.report_path),
            "experiment_log": str(self.log_path),
            "test": _jsonable(self.test_metrics),
            "tuning": {
                f: {"backend": t.backend, "trials": len(t.trials), "best_score": t.best_score}
                for f, t in self.tuning.items()
            },
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


def _noop(stage: str, advance: float) -> None:
    return None


def candidate_list(cfg: ProjectConfig) -> list[str]:
    """Trained families in config order, the baseline first and always present."""
    fams = [c for c in cfg.train.candidates if c != "baseline"]
    return ["baseline", *dict.fromkeys(fams)]


def class_labels(data: DataStageResult) -> np.ndarray | None:
    """Sorted class labels (classification), as every estimator orders predict_proba."""
    if data.problem_type != "classification":
        return None
    return np.array(sorted(pd.unique(data.frame[data.target].dropna()).tolist()))


def train_arrays(
    data: DataStageResult, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Preprocessed train rows with imbalance handling applied (weights or oversampling)."""
    rows = data.split.train
    if data.problem_type == "classification" and data.oversample:
        rows = (
            data.oversampled_train
            if data.oversampled_train is not None
            else rows[oversample_indices(data.y("train").to_numpy(), seed)]
        )
    frame = data.frame.iloc[rows]
    Xt = to_dense(data.preprocessor.transform(frame[data.features]))
    y = frame[data.target].to_numpy()
    w = sample_weights(y, data.class_weight) if data.problem_type == "classification" else None
    return Xt, y, w


def fit_final(
    family: str,
    params: dict[str, Any],
    data: DataStageResult,
    cfg: ProjectConfig,
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    X_valid: np.ndarray,
    ray_dir: Path,
    use_ray: bool = True,
) -> TabularModel:
    """Fit one family on the train rows; wrap it with the data stage's fitted preprocessor."""
    Xt, y, w = arrays
    if family == "mlp" and use_ray:
        from mainsail.train.mlp_model import MLPModel, MLPParams, TargetCoding
        from mainsail.train.mlp_ray import fit_mlp_on_ray

        coding = TargetCoding.fit(y, data.problem_type)
        mlp_params = MLPParams.from_dict(params)
        fit = fit_mlp_on_ray(
            Xt,
            y,
            X_valid,
            data.y("valid").to_numpy(),
            coding,
            mlp_params,
            seed=cfg.seed,
            ray_cfg=cfg.train.ray,
            storage_dir=ray_dir,
            sample_weight=w,
        )
        est: Any = MLPModel(fit.state, Xt.shape[1], mlp_params, coding)
        est.history = fit.history
    else:
        with limit_threads(cfg.train.threads, torch_too=family == "mlp"):
            est = fit_arrays(
                family,
                params,
                Xt,
                y,
                problem_type=data.problem_type,
                seed=cfg.seed,
                sample_weight=w,
                X_valid=X_valid,
                y_valid=data.y("valid").to_numpy(),
            )
    return TabularModel(
        data.preprocessor,
        est,
        family=family,
        problem_type=data.problem_type,
        features=data.features,
        params=params,
    )


def run_training_stage(
    cfg: ProjectConfig,
    data: DataStageResult,
    run_dir: Path,
    progress: Callable[[str, float], None] | None = None,
) -> TrainingResult:
    """Train, tune, compare, select and document; see the module docstring for the layout."""
    report_progress = progress or _noop
    done: dict[str, float] = {}

    def tick(stage: str, advance: float) -> None:
        done[stage] = min(1.0, done.get(stage, 0.0) + advance)
        report_progress(stage, done[stage])

    model_dir = run_dir / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    # Ray's own files (Train checkpoints, Tune state) are scratch: kept out of the run folder.
    scratch = tempfile.TemporaryDirectory(prefix="mainsail-ray-")
    ray_dir = Path(scratch.name)
    log_path = model_dir / "experiment_log.jsonl"
    log_path.unlink(missing_ok=True)
    timings: dict[str, float] = {}
    classes = class_labels(data)
    families = candidate_list(cfg)
    seed = cfg.seed

    arrays = train_arrays(data, seed)
    X_valid = to_dense(data.preprocessor.transform(data.X("valid")))
    params = {f: default_params(f, cfg) for f in families}
    if "mlp" in params:
        params["mlp"] = mlp_params_dict(params["mlp"])

    # 1. Tuning (train rows fit, validation rows score).
    t0 = time.perf_counter()
    tuned: dict[str, TuneResult] = {}
    to_tune = [f for f in cfg.tune.candidates if f in families] if cfg.tune.enabled else []
    if to_tune and "mlp" in families:
        # The MLP trains on Ray anyway: with Ray up before tuning, `auto` runs its probe trial
        # alongside the first Ray batch instead of alone (no serial round lost).
        from mainsail.train.ray_runtime import ensure_ray

        ensure_ray(cfg.train.ray)
    if to_tune:
        tdata = TuneData(
            arrays[0],
            arrays[1],
            X_valid,
            data.y("valid").to_numpy(),
            data.problem_type,
            classes,
            arrays[2],
        )
        for tfam in to_tune:
            step = 1.0 / (len(to_tune) * cfg.tune.num_trials)
            tuned[tfam] = tune_family(
                tfam,
                tdata,
                cfg,
                log_path=log_path,
                storage_dir=ray_dir / "tune",
                on_trial=lambda _rec, s=step: tick("tune", s),  # type: ignore[misc]
            )
            params[tfam] = tuned[tfam].best_params
    log_path.touch()
    tick("tune", 1.0 - done.get("tune", 0.0))  # a time budget may end the search early
    timings["tune_s"] = time.perf_counter() - t0

    # 2. Final fit of every candidate on the train rows.
    t0 = time.perf_counter()
    models: dict[str, TabularModel] = {}
    for fam in families:
        models[fam] = fit_final(fam, params[fam], data, cfg, arrays, X_valid, ray_dir)
        tick("train", 1.0 / len(families))
    timings["train_s"] = time.perf_counter() - t0

    # 3. Cross-validation on train+validation rows.
    t0 = time.perf_counter()
    folds = cv_folds(data, cfg.evaluate.cv_folds, seed)
    wanted = cfg.evaluate.cv_candidates
    cv_fams = [f for f in families if wanted is None or f in wanted or f == "baseline"]
    cv: dict[str, CVResult] = {}
    step = 1.0 / (len(cv_fams) * len(folds))
    for fam in cv_fams:
        cv[fam] = cross_validate(
            data,
            fam,
            params[fam],
            folds,
            seed=seed,
            classes=classes,
            on_fold=lambda: tick("cross-validate", step),
            threads=cfg.train.threads,
        )
    timings["cv_s"] = time.perf_counter() - t0

    doc = evaluate_and_document(
        cfg,
        data,
        models,
        params,
        cv,
        tuned,
        model_dir,
        version=run_dir.name.removeprefix(".tmp-"),  # `mainsail run` stages it as .tmp-<id>
        tick=tick,
        timings=timings,
    )
    scratch.cleanup()
    # Wall times vary between identical runs, so they stay out of metrics.json.
    (model_dir / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    return TrainingResult(
        doc.chosen,
        doc.selection.reason,
        model_dir,
        doc.model_path,
        doc.card_path,
        doc.metrics_path,
        doc.report_path,
        log_path,
        doc.reference_path,
        doc.plots,
        doc.selection,
        doc.test_metrics,
        doc.cv_summary,
        tuned,
        params,
        timings,
        models[doc.chosen] if doc.chosen else None,
    )


@dataclass
class Documented:
    """What :func:`evaluate_and_document` decided and wrote."""

    chosen: str | None
    subject: str
    """The chosen family, or the best by CV when none was chosen (documented, not saved)."""
    selection: Selection
    test_metrics: dict[str, dict[str, float]]
    cv_summary: dict[str, dict[str, dict[str, float]]]
    plots: dict[str, Path]
    model_path: Path | None
    reference_path: Path | None
    metrics_path: Path
    card_path: Path
    report_path: Path


def evaluate_and_document(
    cfg: ProjectConfig,
    data: DataStageResult,
    models: dict[str, TabularModel],
    params: dict[str, dict[str, Any]],
    cv: dict[str, CVResult],
    tuned: dict[str, TuneResult],
    model_dir: Path,
    *,
    version: str,
    tick: Callable[[str, float], None] = _noop,
    timings: dict[str, float] | None = None,
) -> Documented:
    """Score fitted candidates on the test rows, compare and select, then write the model folder:
    model, importance, plots, reference sample, metrics, card and report.

    Shared by `mainsail run` (:func:`run_training_stage`) and the kfp evaluate step, so both
    select and document identically.
    """
    import joblib

    timings = timings if timings is not None else {}
    metric = cfg.primary_metric(data.problem_type)
    classes = class_labels(data)
    families = list(models)
    seed = cfg.seed
    plots_dir = model_dir / "plots"
    model_dir.mkdir(parents=True, exist_ok=True)
    # 4. Test-set evaluation, comparisons and selection.
    t0 = time.perf_counter()
    X_test, y_test = data.X("test"), data.y("test").to_numpy()
    outputs = {f: model_output(models[f], X_test, data.problem_type) for f in families}
    test_metrics = {
        f: all_metrics(data.problem_type, y_test, outputs[f], classes) for f in families
    }
    selection = select(
        cv,
        {f: outputs[f] for f in cv},
        y_test,
        metric=metric,
        problem_type=data.problem_type,
        classes=classes,
        alpha=cfg.evaluate.alpha,
        resamples=cfg.evaluate.bootstrap,
        seed=seed,
    )
    tick("evaluate", 0.5)
    fn = metric_fn(metric, data.problem_type, classes)

    def ci_of(out: np.ndarray) -> Any:
        return bootstrap_ci(
            lambda idx: fn(y_test[idx], out[idx]),
            len(y_test),
            resamples=cfg.evaluate.bootstrap,
            seed=seed,
            level=1 - cfg.evaluate.alpha,
        )

    test_ci = {f: ci_of(outputs[f]) for f in families}
    tick("evaluate", 0.5)
    timings["evaluate_s"] = time.perf_counter() - t0

    # 5. Artifacts: model, importance, plots, reference sample, metrics, card, report.
    t0 = time.perf_counter()
    from mainsail.evaluate import card as card_mod
    from mainsail.evaluate import plots as plots_mod
    from mainsail.evaluate import report as report_mod
    from mainsail.evaluate.importance import native_importance, permutation_importance

    chosen = selection.chosen
    # Without a winner, still document the best-CV model so the report shows what was refused.
    subject = chosen or _best_cv(cv, metric) or "baseline"
    model = models[subject]
    rng = np.random.default_rng(seed)
    n_imp = min(cfg.evaluate.importance_rows, len(X_test))
    imp_rows = np.sort(rng.choice(len(X_test), n_imp, replace=False))
    perm = permutation_importance(
        model,
        X_test.iloc[imp_rows],
        y_test[imp_rows],
        metric=metric,
        problem_type=data.problem_type,
        repeats=cfg.evaluate.permutation_repeats,
        seed=seed,
    )
    native = native_importance(model)
    plots = {
        "permutation_importance": plots_mod.importance_plot(
            perm,
            plots_dir / "permutation_importance.png",
            f"Permutation importance ({subject}, {metric})",
        )
    }
    if native is not None:
        plots["native_importance"] = plots_mod.importance_plot(
            native, plots_dir / "native_importance.png", f"Native importance ({subject})"
        )
    if data.problem_type == "classification":
        assert classes is not None
        plots.update(plots_mod.classification_plots(y_test, outputs[subject], classes, plots_dir))
    else:
        plots.update(plots_mod.regression_plots(y_test, outputs[subject], plots_dir))
    importance = {
        "model": subject,
        "permutation": perm.to_dict(orient="records"),
        "native": None if native is None else native.to_dict(orient="records"),
    }
    (model_dir / "importance.json").write_text(json.dumps(importance, indent=2) + "\n")
    data.schema.save(model_dir / "feature_schema.json")
    if data.feast is not None and data.feast.get("lookup_spec"):
        # Trained on Feast's feature service: serving can then look the features up by entity
        # key (the runtime reads this file from the registry version).
        (model_dir / "feature_lookup.json").write_text(
            json.dumps(data.feast["lookup_spec"], indent=2) + "\n"
        )

    model_path: Path | None = None
    reference_path: Path | None = None
    if chosen is not None:
        model_path = model_dir / "model.joblib"
        tmp = model_path.with_suffix(".joblib.tmp")
        joblib.dump(model, tmp)
        tmp.replace(model_path)  # never a half-written model
        reference_path = write_reference(model, data, model_dir / "reference.parquet", cfg)
    else:
        (model_dir / "model.joblib").unlink(missing_ok=True)
    tick("report", 0.3)

    cv_summary = {f: r.summary() for f, r in cv.items()}
    metrics_doc: dict[str, Any] = {
        "problem_type": data.problem_type,
        "primary_metric": metric,
        "chosen": chosen,
        "selection": selection.to_dict(),
        "test": test_metrics,
        "test_ci": {
            f: {"estimate": c.estimate, "low": c.low, "high": c.high, "level": c.level}
            for f, c in test_ci.items()
        },
        "cv": {f: {"folds": r.folds, "summary": cv_summary[f]} for f, r in cv.items()},
        "params": params,
        "tuning": {
            f: {
                "backend": t.backend,
                "best_score": t.best_score,
                "objective": t.objective,
                "trials": len(t.trials),
            }
            for f, t in tuned.items()
        },
    }
    metrics_path = model_dir / "metrics.json"
    metrics_path.write_text(json.dumps(_jsonable(metrics_doc), indent=2, sort_keys=True) + "\n")

    model_sha = _sha256(model_path) if model_path else None
    card = card_mod.build_card(
        cfg,
        data,
        version,
        selection,
        subject,
        test_metrics,
        test_ci,
        cv_summary,
        model_sha,
        params.get(subject, {}),
    )
    card_path = model_dir / "model_card.yaml"
    card_mod.write_card(card, card_path)
    tick("report", 0.3)
    report_path = model_dir / "report.html"
    report_mod.write_report(
        report_path,
        cfg=cfg,
        data=data,
        card=card,
        selection=selection,
        test_metrics=test_metrics,
        cv_summary=cv_summary,
        tuned=tuned,
        importance=perm,
        plots=plots,
    )
    tick("report", 0.4)
    timings["report_s"] = time.perf_counter() - t0
    return Documented(
        chosen,
        subject,
        selection,
        test_metrics,
        cv_summary,
        plots,
        model_path,
        reference_path,
        metrics_path,
        card_path,
        report_path,
    )


def _best_cv(cv: dict[str, CVResult], metric: str) -> str | None:
    from mainsail.evaluate.metrics import greater_is_better

    sign = 1.0 if greater_is_better(metric) else -1.0
    others = [f for f in cv if f != "baseline"]
    return max(others, key=lambda f: sign * float(np.mean(cv[f].scores(metric))), default=None)


def write_reference(
    model: TabularModel, data: DataStageResult, path: Path, cfg: ProjectConfig
) -> Path:
    """A seeded sample of raw train feature rows with the model's predictions (drift reference)."""
    X = data.X("train")
    n = min(cfg.evaluate.reference_rows, len(X))
    rows = np.sort(np.random.default_rng(cfg.seed).choice(len(X), n, replace=False))
    sample = X.iloc[rows].reset_index(drop=True).copy()
    sample["prediction"] = model.predict(sample)
    if data.problem_type == "classification":
        proba = model.predict_proba(sample[data.features])
        for j, c in enumerate(model.classes_.tolist()):
            sample[f"proba_{c}"] = proba[:, j]
    tmp = path.with_suffix(".parquet.tmp")
    sample.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
