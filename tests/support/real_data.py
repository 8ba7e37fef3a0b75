"""The real-data regression suite's runner: one shipped config end to end (`mainsail run`'s
lifecycle), against a plain default HistGradientBoosting fitted on the same rows.

The reference is scikit-learn's `HistGradientBoostingClassifier/Regressor()` with its defaults,
fitted on the same preprocessed train+validation rows that the served model was refitted on
(the run's fitted preprocessor), scored on the same test rows with the same metric; its
bootstrap interval's half-width is the tolerance. Each run's figures are appended to
`runs/real-data-suite.jsonl` (and printed), so a CI log shows the table.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mainsail.config import ProjectConfig
from tests.support.configs import REPO

RESULTS = REPO / "runs" / "real-data-suite.jsonl"


@dataclass
class SuiteResult:
    """One dataset of the suite."""

    config: str
    rows: int
    split: str
    metric: str
    chosen: str | None
    chosen_test: float
    reference_hgb_test: float
    reference_half_width: float
    candidates_test: dict[str, float]
    cv_estimate: float | None
    test_ci: tuple[float, float]
    log_loss: float | None
    baseline_log_loss: float | None
    seconds: float
    warnings: list[str]
    card: str = ""
    """Path of the model card."""


def reference_hgb(data: Any, metric: str, cfg: ProjectConfig) -> tuple[float, float]:
    """Default HistGradientBoosting on the train+validation rows: test metric, CI half-width."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    from mainsail.evaluate.metrics import metric_fn, model_output
    from mainsail.evaluate.stats import bootstrap_ci
    from mainsail.train.fit import class_labels
    from mainsail.train.model import align_columns, to_dense

    rows = np.sort(np.concatenate([data.split.train, data.split.valid]))
    frame = data.frame.iloc[rows]
    X = to_dense(data.preprocessor.transform(frame[data.features]))
    y = frame[data.target].to_numpy()
    clf = data.problem_type == "classification"
    est = (HistGradientBoostingClassifier if clf else HistGradientBoostingRegressor)(
        random_state=cfg.seed
    )
    est.fit(X, y)
    X_test = to_dense(data.preprocessor.transform(data.X("test")))
    y_test = data.y("test").to_numpy()
    out = model_output(est, X_test, data.problem_type)
    classes = class_labels(data)
    if classes is not None:
        out = align_columns(out, est.classes_, classes)
    fn = metric_fn(metric, data.problem_type, classes)
    ci = bootstrap_ci(
        lambda idx: fn(y_test[idx], out[idx]), len(y_test), resamples=500, seed=cfg.seed
    )
    return float(fn(y_test, out)), float((ci.high - ci.low) / 2)


def run_suite_config(name: str, tmp: Path, **overrides: Any) -> SuiteResult:
    """Run `configs/<name>.yaml` (data written under `tmp`), compare, record."""
    from mainsail.config import load_config
    from mainsail.lifecycle.data import run_data_stage
    from mainsail.lifecycle.run import run_training_stage

    cfg = load_config(
        REPO / "configs" / f"{name}.yaml",
        {"data.path": str(tmp / f"{name}.parquet"), "runs_dir": str(tmp / "runs"), **overrides},
    )
    from mainsail.data.ingest import ensure_data_file

    ensure_data_file(cfg.data, cfg.seed)  # materialising the package's file is not the run
    started = time.perf_counter()
    data = run_data_stage(cfg, tmp / "run")
    res = run_training_stage(cfg, data, tmp / "run")
    seconds = time.perf_counter() - started
    metric = cfg.primary_metric(data.problem_type)
    ref, half = reference_hgb(data, metric, cfg)
    doc = json.loads(res.metrics_path.read_text())
    final = doc.get("final") or {}
    calibration = final.get("calibration") or {}
    chosen_cv = next((r for r in final.get("cv_vs_test", []) if r["candidate"] == res.chosen), None)
    result = SuiteResult(
        config=name,
        rows=len(data.frame),
        split=data.split.strategy,
        metric=metric,
        chosen=res.chosen,
        chosen_test=float(res.final_metrics.get(metric, float("nan"))),
        reference_hgb_test=ref,
        reference_half_width=half,
        candidates_test={f: float(m[metric]) for f, m in res.test_metrics.items()},
        cv_estimate=None if chosen_cv is None else float(chosen_cv["cv_estimate"]),
        test_ci=(float(final["test_ci"]["low"]), float(final["test_ci"]["high"]))
        if final
        else (float("nan"), float("nan")),
        log_loss=calibration.get("log_loss_after"),
        baseline_log_loss=calibration.get("baseline_log_loss"),
        seconds=round(seconds, 1),
        warnings=list(res.warnings),
        card=str(res.card_path),
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as fh:
        fh.write(json.dumps(asdict(result)) + "\n")
    print(json.dumps(asdict(result)))
    return result


def assert_holds_up(result: SuiteResult) -> None:
    """The suite's checks on one dataset (see tests/model/test_real_data_suite.py)."""
    from mainsail.evaluate.metrics import greater_is_better

    assert result.chosen is not None, result
    sign = 1.0 if greater_is_better(result.metric) else -1.0
    gap = sign * (result.chosen_test - result.reference_hgb_test)
    assert gap >= -result.reference_half_width, (
        f"{result.config}: chosen {result.chosen} test {result.metric} {result.chosen_test:.4f} "
        f"is worse than a default HistGradientBoosting's {result.reference_hgb_test:.4f} by more "
        f"than its CI half-width {result.reference_half_width:.4f}"
    )
    if result.log_loss is not None:
        assert result.baseline_log_loss is not None
        assert result.log_loss <= result.baseline_log_loss, (
            f"{result.config}: log loss {result.log_loss:.4f} above the constant baseline's "
            f"{result.baseline_log_loss:.4f}"
        )
