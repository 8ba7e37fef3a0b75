"""Test-set evaluation of fitted candidates and the registry-ready model folder it documents.

:func:`evaluate_on_test` scores every candidate on the test rows, applies the selection rule
(:func:`mainsail.evaluate.compare.select`) and computes bootstrap intervals;
:func:`write_model_folder` then writes what a registry version holds: the chosen model, the
drift reference sample, importance, plots, metrics, the model card and the HTML report.
`mainsail.lifecycle.evaluation` sequences the two for `mainsail run` and the kfp evaluate step.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mainsail.config import ProjectConfig
from mainsail.core.files import sha256_file, write_json
from mainsail.data.prepared import DataStageResult
from mainsail.evaluate.card import CARD_FILE
from mainsail.evaluate.compare import Selection, best_by_cv, select
from mainsail.evaluate.cv import CVResult
from mainsail.evaluate.metrics import MetricFn, all_metrics, metric_fn, model_output
from mainsail.evaluate.results import FinalEvaluation, TestEvaluation
from mainsail.evaluate.stats import BootstrapCI, bootstrap_ci
from mainsail.train.final import FinalModel
from mainsail.train.fit import class_labels
from mainsail.train.model import TabularModel

#: Files of the model folder, by role (the card's name is `card.CARD_FILE`).
MODEL_FILE = "model.joblib"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"
REFERENCE_FILE = "reference.parquet"
CALIBRATION_FILE = "calibration.parquet"


class TuningOutcome(Protocol):
    """What the documents show of one family's search (`mainsail.tune.search.TuneResult`)."""

    @property
    def backend(self) -> str: ...
    @property
    def best_score(self) -> float: ...
    @property
    def objective(self) -> str: ...
    @property
    def trials(self) -> Sequence[Any]: ...


def _noop(stage: str, advance: float) -> None:
    return None


@dataclass
class Documented:
    """What :func:`write_model_folder` decided and wrote."""

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
    final: FinalEvaluation | None = None
    """The served model and its test scores, when one was chosen."""


def evaluate_on_test(
    cfg: ProjectConfig,
    data: DataStageResult,
    models: Mapping[str, TabularModel],
    cv: Mapping[str, CVResult],
    tick: Callable[[str, float], None] = _noop,
) -> TestEvaluation:
    """Score the fitted candidates on the test rows, compare and select (CV and test evidence),
    and bootstrap the primary metric's interval of each."""
    metric = cfg.primary_metric(data.problem_type)
    classes = class_labels(data)
    seed = cfg.seed
    X_test, y_test = data.X("test"), data.y("test").to_numpy()
    outputs = {f: model_output(models[f], X_test, data.problem_type) for f in models}
    test_metrics = {f: all_metrics(data.problem_type, y_test, outputs[f], classes) for f in models}
    selection = select(
        dict(cv),
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

    def ci_of(out: np.ndarray) -> BootstrapCI:
        return bootstrap_ci(
            fn.on(y_test, out),
            len(y_test),
            resamples=cfg.evaluate.bootstrap,
            seed=seed,
            level=1 - cfg.evaluate.alpha,
        )

    test_ci = {f: ci_of(outputs[f]) for f in models}
    tick("evaluate", 0.5)
    return TestEvaluation(outputs, test_metrics, selection, test_ci)


def _ci(cfg: ProjectConfig, fn: MetricFn, y: np.ndarray, out: np.ndarray) -> BootstrapCI:
    return bootstrap_ci(
        fn.on(y, out),
        len(y),
        resamples=cfg.evaluate.bootstrap,
        seed=cfg.seed,
        level=1 - cfg.evaluate.alpha,
    )


def evaluate_final(
    cfg: ProjectConfig,
    data: DataStageResult,
    final: FinalModel,
    evaluation: TestEvaluation,
    cv: Mapping[str, CVResult],
) -> FinalEvaluation:
    """The served model on the test rows: every metric and the primary metric's interval;
    calibration error before and after; threshold metrics; the constant baseline's log loss;
    CV estimate against test score per candidate; the warnings."""
    from mainsail.evaluate.metrics import (
        expected_calibration_error,
        greater_is_better,
        label_metrics,
        per_class_metrics,
    )

    metric = cfg.primary_metric(data.problem_type)
    classes = class_labels(data)
    X_test, y_test = data.X("test"), data.y("test").to_numpy()
    model = final.model
    output = model_output(model, X_test, data.problem_type)
    metrics = all_metrics(data.problem_type, y_test, output, classes)
    ci = _ci(cfg, metric_fn(metric, data.problem_type, classes), y_test, output)
    extra: dict[str, Any] = {"model": final.describe()}
    warnings: list[str] = []
    if data.problem_type == "classification":
        assert classes is not None
        index = {c: i for i, c in enumerate(classes.tolist())}
        codes = np.array([index[v] for v in y_test.tolist()])
        raw = model.raw_proba(X_test)
        extra["calibration"] = {
            "method": final.calibration.method if final.calibration else "none",
            "ece_before": expected_calibration_error(codes, raw),
            "ece_after": expected_calibration_error(codes, output),
            "log_loss_before": all_metrics("classification", y_test, raw, classes)["log_loss"],
            "log_loss_after": metrics["log_loss"],
            "baseline_log_loss": evaluation.test_metrics.get("baseline", {}).get("log_loss"),
        }
        labels = model.predict(X_test)
        extra["per_class"] = per_class_metrics(y_test, labels, classes)
        # The served model's label metrics are those of its decisions (the threshold chosen on
        # validation rows), not of the most probable class.
        metrics.update(label_metrics(y_test, labels, classes))
        if final.threshold is not None and final.threshold.threshold is not None:
            positive = classes[-1]
            truth, said = y_test == positive, labels == positive
            tp = float(np.sum(truth & said))
            precision = tp / max(float(np.sum(said)), 1.0)
            recall = tp / max(float(np.sum(truth)), 1.0)
            extra["threshold"] = {
                "objective": final.threshold.objective,
                "value": final.threshold.threshold,
                "positive_class": str(positive),
                "test_precision": precision,
                "test_recall": recall,
                "test_f1": 2 * precision * recall / (precision + recall)
                if precision + recall > 0
                else 0.0,
            }
    too_good = {"roc_auc", "r2", "balanced_accuracy"}
    for name in sorted(too_good & set(metrics)):
        value = metrics[name]
        if value == value and value >= cfg.evaluate.too_good:
            warnings.append(
                f"too good to be true: test {name} {value:.4f} >= {cfg.evaluate.too_good:g}; "
                "real tabular problems rarely score this well: check the features for "
                "information that is not known at prediction time (leakage)"
            )
    rows = []
    level = 1 - cfg.evaluate.alpha
    for fam, res in cv.items():
        low, high = res.interval(metric, level)
        test_ci = evaluation.test_ci.get(fam)
        if fam == final.family:
            test_value, test_ci = metrics[metric], ci
        else:
            test_value = evaluation.test_metrics[fam][metric]
        agree = None
        if test_ci is not None and low == low:
            agree = not (high < test_ci.low or low > test_ci.high)
        rows.append(
            {
                "candidate": fam,
                "cv_estimate": res.estimate(metric),
                "cv_low": low,
                "cv_high": high,
                "test": test_value,
                "test_low": test_ci.low if test_ci else None,
                "test_high": test_ci.high if test_ci else None,
                "agree": agree,
            }
        )
        if agree is False and fam == final.family and test_ci is not None:
            what = "recent-fold CV estimate" if res.recent else "CV estimate"
            worse = (test_value < res.estimate(metric)) == greater_is_better(metric)
            warnings.append(
                f"{fam}: the {what} of {metric} ({res.estimate(metric):.4f}, "
                f"{level:.0%} CI {low:.4f}..{high:.4f}) and the test score ({test_value:.4f}, "
                f"CI {test_ci.low:.4f}..{test_ci.high:.4f}) disagree beyond their intervals"
                + ("; the test rows may differ from the training rows (see the shift summary)"
                   if worse else "")
            )  # fmt: skip
    extra["cv_vs_test"] = rows
    return FinalEvaluation(final, output, metrics, ci, extra, warnings)


def write_model_folder(
    cfg: ProjectConfig,
    data: DataStageResult,
    models: Mapping[str, TabularModel],
    params: Mapping[str, dict[str, Any]],
    cv: Mapping[str, CVResult],
    tuned: Mapping[str, TuningOutcome],
    evaluation: TestEvaluation,
    model_dir: Path,
    *,
    version: str,
    final: FinalEvaluation | None = None,
    tick: Callable[[str, float], None] = _noop,
) -> Documented:
    """Write the model folder: model (only when one was chosen: `final`, the refit and
    calibrated one), importance, plots, feature schema, reference sample, metrics, card and
    report."""
    from mainsail.evaluate import card as card_mod
    from mainsail.evaluate import plots as plots_mod
    from mainsail.evaluate import report as report_mod
    from mainsail.evaluate.importance import native_importance, permutation_importance
    from mainsail.evaluate.shift import shift_summary

    metric = cfg.primary_metric(data.problem_type)
    classes = class_labels(data)
    seed = cfg.seed
    plots_dir = model_dir / "plots"
    model_dir.mkdir(parents=True, exist_ok=True)
    X_test, y_test = data.X("test"), data.y("test").to_numpy()
    selection, outputs = evaluation.selection, evaluation.outputs

    chosen = selection.chosen
    # Without a winner, still document the best-CV model so the report shows what was refused.
    subject = chosen or best_by_cv(cv, metric) or "baseline"
    model = final.final.model if final is not None else models[subject]
    subject_output = final.output if final is not None else outputs[subject]
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
        plots.update(
            plots_mod.classification_plots(
                y_test, subject_output, classes, plots_dir, labels=model.predict(X_test)
            )
        )
    else:
        plots.update(plots_mod.regression_plots(y_test, subject_output, plots_dir))
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
        model_path = save_model(model, model_dir / MODEL_FILE)
        reference_path = write_reference(model, data, model_dir / REFERENCE_FILE, cfg)
        write_calibration_sample(model, data, model_dir / CALIBRATION_FILE)
    else:
        (model_dir / MODEL_FILE).unlink(missing_ok=True)
    tick("report", 0.3)

    cv_summary = {f: r.summary() for f, r in cv.items()}
    shift = shift_summary(data)
    metrics_doc: dict[str, Any] = {
        "problem_type": data.problem_type,
        "primary_metric": metric,
        "chosen": chosen,
        "selection": selection.to_dict(),
        "test": evaluation.test_metrics,
        "test_ci": {
            f: {"estimate": c.estimate, "low": c.low, "high": c.high, "level": c.level}
            for f, c in evaluation.test_ci.items()
        },
        "cv": {f: {"folds": r.folds, "summary": cv_summary[f]} for f, r in cv.items()},
        "final": None
        if final is None
        else {
            "test": final.metrics,
            "test_ci": {
                "estimate": final.ci.estimate,
                "low": final.ci.low,
                "high": final.ci.high,
                "level": final.ci.level,
            },
            **final.extra,
        },
        "warnings": [] if final is None else final.warnings,
        "shift": shift,
        "params": dict(params),
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
    metrics_path = write_json(model_dir / METRICS_FILE, metrics_doc)

    card = card_mod.build_card(
        cfg,
        data,
        version,
        selection,
        subject,
        evaluation.test_metrics,
        evaluation.test_ci,
        cv_summary,
        sha256_file(model_path) if model_path else None,
        params.get(subject, {}),
        final=final,
    )
    card_path = card_mod.write_card(card, model_dir / CARD_FILE)
    tick("report", 0.3)
    report_path = report_mod.write_report(
        model_dir / REPORT_FILE,
        cfg=cfg,
        data=data,
        card=card,
        selection=selection,
        test_metrics=evaluation.test_metrics,
        cv_summary=cv_summary,
        tuned=dict(tuned),
        importance=perm,
        plots=plots,
        final=final,
        shift=shift,
    )
    tick("report", 0.4)
    return Documented(
        chosen,
        subject,
        selection,
        evaluation.test_metrics,
        cv_summary,
        plots,
        model_path,
        reference_path,
        metrics_path,
        card_path,
        report_path,
        final,
    )


def save_model(model: TabularModel, path: Path) -> Path:
    """Write `model` to `path` atomically, as a pickle whose bytes depend on its values only.

    A pickler normally writes an object it meets twice once and refers back to it; which equal
    strings are one object depends on how the model came to be (fitted in this process by
    `mainsail run`, or unpickled by a pipeline step) and even on what the process interned
    before, so the same fit gave files with different sha256. Without back-references (`fast`
    mode) the file is a function of the fit alone, whichever path wrote it. `joblib.load`
    (serving, the registry's checks) reads it like any pickle; a forest grows by about a fifth.
    """
    import pickle

    tmp = path.with_suffix(".joblib.tmp")
    with tmp.open("wb") as handle:
        pickler = pickle.Pickler(handle, protocol=pickle.HIGHEST_PROTOCOL)
        pickler.fast = True  # no memo: no object shared twice, so nothing depends on identity
        pickler.dump(model)
    tmp.replace(path)  # never a half-written model
    return path


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


def write_calibration_sample(model: TabularModel, data: DataStageResult, path: Path) -> Path:
    """The held-out test rows with their target, the model's prediction and (classification)
    its `proba_<class>` columns: the drift sidecar fits and checks its label-free performance
    estimate on them (mainsail.drift.performance)."""
    X = data.X("test")
    sample = X.reset_index(drop=True).copy()
    sample["prediction"] = model.predict(sample)
    if data.problem_type == "classification":
        proba = model.predict_proba(sample[data.features])
        for j, c in enumerate(model.classes_.tolist()):
            sample[f"proba_{c}"] = proba[:, j]
    sample[data.target] = data.y("test").to_numpy()
    tmp = path.with_suffix(".parquet.tmp")
    sample.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path
