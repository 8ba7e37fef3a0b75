"""The pipeline steps as plain functions: what the kfp components call, one function each.

Every step does three things and nothing else: load its inputs (the project config as JSON and
the upstream artifacts, `mainsail.pipeline.handover`), make ONE call into `mainsail.lifecycle`
(or the registry / deployer), and save its outputs into the paths it was given. It returns a
small JSON-safe dict of metrics for the KFP UI. `mainsail run` calls the same lifecycle
functions in one process, so a pipeline run and a local run decide identically; unit tests and
the benchmark call exactly what a kfp task runs.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from mainsail.config import ProjectConfig, config_from_json
from mainsail.core.files import write_json
from mainsail.pipeline.handover import (
    TUNE_LOG,
    fresh_dir,
    load_candidates,
    load_loaded,
    load_prepared,
    load_split_plan,
    load_tuned,
    save_candidates,
    save_loaded,
    save_prepared,
    save_split_plan,
    save_tuned,
)

# ------------------------------------------------------------------------------------ data


def validate_step(
    config_json: str, data_uri: str, dataset_dir: str, report_html: str
) -> dict[str, Any]:
    """Ingest (generating the synthetic file on first use) and validate the data; with a
    `features` section, the rows are Feast's point-in-time join of the label rows.

    Stores the data file as a snapshot when the registry is reachable (`snapshots.mode`; see
    `mainsail.lifecycle.data.snapshot_data`). Writes `dataset_dir/` (the validated frame, the
    decisions about it, the report as JSON) and the HTML report. Bad data raises `DataError`
    naming the column, before anything is written.
    """
    from mainsail.lifecycle.data import load_validated
    from mainsail.lifecycle.snapshot import open_snapshots

    cfg = config_from_json(config_json)
    if "://" in data_uri:
        raise ValueError(
            f"data_uri {data_uri!r}: only file paths are supported (mount the data into the "
            "step, e.g. a PVC or the pipeline root); object-store URIs are not read directly"
        )
    cfg.data.path = Path(data_uri)
    store, _ = open_snapshots(cfg)  # `snapshots.mode`: none in `auto` without a registry
    loaded = load_validated(cfg, snapshots=store)
    save_loaded(loaded, fresh_dir(dataset_dir))
    report = loaded.checked.report
    Path(report_html).parent.mkdir(parents=True, exist_ok=True)
    Path(report_html).write_text(report.to_html())
    return {
        "rows": len(loaded.checked.frame),
        "features": len(loaded.checked.features),
        "warnings": len(report.warnings()),
        "errors": len(report.errors()),
    }


def split_step(config_json: str, dataset_dir: str, splits_dir: str) -> dict[str, Any]:
    """Split the validated rows (leakage-safe) and plan the class-imbalance handling."""
    from mainsail.lifecycle.data import split_rows

    cfg = config_from_json(config_json)
    plan = split_rows(cfg, load_loaded(Path(dataset_dir)))
    save_split_plan(plan, fresh_dir(splits_dir))
    return {
        "train_rows": len(plan.split.train),
        "valid_rows": len(plan.split.valid),
        "test_rows": len(plan.split.test),
        "imbalance": plan.imbalance.applied,
    }


def preprocess_step(
    config_json: str, dataset_dir: str, splits_dir: str, prepared_dir: str
) -> dict[str, Any]:
    """Fit the preprocessor on the train rows; write the complete data-stage artifact.

    `prepared_dir` holds everything training needs (frame, split, preprocessor, schema), so
    every later step takes this one input (see `handover.load_prepared`).
    """
    from mainsail.lifecycle.data import prepare

    cfg = config_from_json(config_json)
    loaded, plan = load_loaded(Path(dataset_dir)), load_split_plan(Path(splits_dir))
    result = prepare(cfg, loaded, plan)
    save_prepared(result, loaded, plan, fresh_dir(prepared_dir))
    return {"features": len(result.schema.features), "train_rows": len(result.split.train)}


# -------------------------------------------------------------------------------- training


def tune_step(config_json: str, prepared_dir: str, tuned_dir: str) -> dict[str, Any]:
    """Tune the configured candidates (Ray Tune or Optuna); on the KubeRay cluster if set."""
    from mainsail.pipeline.ray_jobs import run_ray_work

    cfg = config_from_json(config_json)
    return run_ray_work(
        "mainsail.pipeline.steps:tune_work",
        {"config_json": config_json, "prepared_dir": prepared_dir, "tuned_dir": tuned_dir},
        cfg.pipelines.kuberay,
        inputs=["prepared_dir"],
        outputs=["tuned_dir"],
        registry=cfg.registry,
    )


def tune_work(config_json: str, prepared_dir: str, tuned_dir: str) -> dict[str, Any]:
    """The Ray work of :func:`tune_step` (runs where `run_ray_work` puts it)."""
    from mainsail.lifecycle.training import tune_candidates

    cfg = config_from_json(config_json)
    data = load_prepared(cfg, prepared_dir)
    out = fresh_dir(tuned_dir)
    with tempfile.TemporaryDirectory(prefix="mainsail-tune-") as ray_dir:
        tuned = tune_candidates(cfg, data, log_path=out / TUNE_LOG, storage_dir=Path(ray_dir))
    save_tuned(tuned, out)
    return {f"{f}_best_score": r.best_score for f, r in tuned.items()} | {"tuned": len(tuned)}


def train_candidates_step(
    config_json: str, prepared_dir: str, tuned_dir: str, candidates_dir: str
) -> dict[str, Any]:
    """Fit every candidate on the train rows with its tuned (or default) hyperparameters."""
    from mainsail.pipeline.ray_jobs import run_ray_work

    cfg = config_from_json(config_json)
    return run_ray_work(
        "mainsail.pipeline.steps:train_candidates_work",
        {
            "config_json": config_json,
            "prepared_dir": prepared_dir,
            "tuned_dir": tuned_dir,
            "candidates_dir": candidates_dir,
        },
        cfg.pipelines.kuberay,
        inputs=["prepared_dir", "tuned_dir"],
        outputs=["candidates_dir"],
        registry=cfg.registry,
    )


def train_candidates_work(
    config_json: str, prepared_dir: str, tuned_dir: str, candidates_dir: str
) -> dict[str, Any]:
    """The Ray work of :func:`train_candidates_step`."""
    from mainsail.lifecycle.training import fit_candidates

    cfg = config_from_json(config_json)
    data = load_prepared(cfg, prepared_dir)
    tuned = load_tuned(Path(tuned_dir))
    with tempfile.TemporaryDirectory(prefix="mainsail-train-") as ray_dir:
        candidates = fit_candidates(cfg, data, tuned, storage_dir=Path(ray_dir))
    save_candidates(candidates, fresh_dir(candidates_dir))
    metric = cfg.primary_metric(data.problem_type)
    return {f"{f}_valid_{metric}": m.get(metric) for f, m in candidates.valid_metrics.items()}


# ------------------------------------------------------------------------------ evaluation


def evaluate_step(
    config_json: str,
    prepared_dir: str,
    tuned_dir: str,
    candidates_dir: str,
    model_dir: str,
    report_html: str,
    card_md: str,
) -> dict[str, Any]:
    """Cross-validate, compare and select; write the model folder, report and card.

    `model_dir` becomes a registry-ready folder (model.joblib, feature_schema.json, metrics,
    card, report, plots, importance, reference sample, lineage); without a winner it holds the
    documentation but no model.joblib, and `chosen` is "".
    """
    from mainsail.evaluate.card import card_markdown, read_card
    from mainsail.lifecycle.evaluation import evaluate_candidates
    from mainsail.lifecycle.lineage import run_lineage

    cfg = config_from_json(config_json)
    data = load_prepared(cfg, prepared_dir)
    tuned = load_tuned(Path(tuned_dir))
    candidates = load_candidates(Path(candidates_dir))
    out = fresh_dir(model_dir)
    doc = evaluate_candidates(cfg, data, candidates, tuned, out, version=out.name)
    shutil.copy2(Path(tuned_dir) / TUNE_LOG, out / TUNE_LOG)
    lineage = run_lineage(cfg, data.data_sha256, data.feast, snapshot=data.snapshot)
    write_json(out / "lineage.json", lineage)
    Path(report_html).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(doc.report_path, report_html)
    Path(card_md).write_text(card_markdown(read_card(doc.card_path), doc.card_path.read_text()))
    metric = cfg.primary_metric(data.problem_type)
    return {
        "chosen": doc.chosen or "",
        "reason": doc.selection.reason,
        f"test_{metric}": doc.test_metrics.get(doc.subject, {}).get(metric),
    }


def compare_champion_step(config_json: str, prepared_dir: str, model_dir: str) -> dict[str, Any]:
    """Does the new model beat the current champion on the fresh window's test rows?

    Both models predict the same test rows; `wins` is true when the paired-bootstrap interval
    of the new model's gain on the primary metric excludes zero (the selection's own rule,
    `mainsail.evaluate.compare`), or when there is no champion yet. A folder without
    model.joblib (no candidate was selected) never wins.
    """
    import joblib

    from mainsail.lifecycle.evaluation import compare_champion
    from mainsail.registry import open_registry

    cfg = config_from_json(config_json)
    new_path = Path(model_dir) / "model.joblib"
    if not new_path.is_file():
        return {"wins": False, "reason": "no candidate was selected", "champion": 0}
    registry = open_registry(cfg)
    registry.ensure_bucket()  # a fresh registry has no bucket yet, hence no champion
    champion = registry.aliases(cfg.name).get("champion")
    if champion is None:
        return {"wins": True, "reason": f"{cfg.name} has no champion yet", "champion": 0}
    data = load_prepared(cfg, prepared_dir)
    with tempfile.TemporaryDirectory(prefix="mainsail-champion-") as tmp:
        local = registry.download(cfg.name, champion, Path(tmp))
        old = joblib.load(local.path / "model.joblib")
    verdict = compare_champion(cfg, data, joblib.load(new_path), old)
    return {
        "wins": verdict.wins,
        "reason": verdict.reason(champion),
        "champion": int(champion),
        f"new_{verdict.metric}": verdict.new_score,
        f"champion_{verdict.metric}": verdict.champion_score,
        "gain_low": verdict.gain.low,
        "gain_high": verdict.gain.high,
    }


# ------------------------------------------------------------------------ registry & deploy


def register_step(config_json: str, model_dir: str) -> dict[str, Any]:
    """Publish the model folder as the next registry version (atomic, sha256 manifest)."""
    from mainsail.registry import open_registry

    cfg = config_from_json(config_json)
    registry = open_registry(cfg)
    registry.ensure_bucket()
    info = registry.publish(cfg.name, Path(model_dir))
    return {
        "version": info.version,
        "uri": registry.version_uri(cfg.name, info.version),
        "manifest_sha256": info.manifest_sha256,
    }


def deploy_canary_step(
    config_json: str, version: int, weight: int, backend: str = "", dry_run: bool = False
) -> dict[str, Any]:
    """Deploy `version` as the challenger at `weight` percent (local stack or Seldon Core 2)."""
    from mainsail.deploy.service import deploy

    cfg: ProjectConfig = config_from_json(config_json)
    result = deploy(cfg, ref=version, canary=weight, backend=backend or None, dry_run=dry_run)
    return {
        "backend": result.backend,
        "challenger": result.challenger,
        "champion": result.champion or 0,
        "canary": result.canary,
        "actions": result.actions,
    }


def record_metrics(metrics: Any, result: dict[str, Any]) -> None:
    """Put a step's numeric results on a kfp `Metrics` artifact and write them to its file.

    The file matters locally: kfp.local treats an output artifact whose file is missing as a
    cache miss, so a metrics artifact with only metadata would defeat step caching.
    """
    for key, value in result.items():
        if isinstance(value, bool) or (isinstance(value, int | float) and value == value):
            metrics.log_metric(key, float(value))
    write_json(Path(metrics.path), result)
