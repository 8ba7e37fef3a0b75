"""The pipeline steps as plain functions: what the kfp components call, one function each.

Each step takes plain arguments (the project config as JSON, file and folder paths, numbers),
calls the library (data, train, evaluate, registry, deploy), writes its outputs into the paths
it was given, and returns a small JSON-safe dict of metrics. No ML logic lives here: only the
orchestration of library calls and the persistence between steps, so unit tests and the
benchmark call exactly what a kfp task runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mainsail.config import ProjectConfig, config_from_json


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays, paths and odd floats made JSON-safe."""
    import math

    import numpy as np

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _write_json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_jsonable(doc), indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(path)


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path} (is the input artifact complete?)")
    return json.loads(path.read_text())


def _fresh_dir(path: str | Path) -> Path:
    """An output folder: created empty (a retried task must not mix in stale files)."""
    import shutil

    out = Path(path)
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    out.mkdir(parents=True)
    return out


# File names inside the step artifacts.
FRAME = "frame.parquet"
VALIDATED = "validated.json"
REPORT_JSON = "validation_report.json"
SPLIT_NPZ = "split_indices.npz"
OVERSAMPLED = "oversampled_train.npy"
SPLIT_JSON = "split.json"
PREPROCESSOR = "preprocessor.joblib"
SCHEMA = "feature_schema.json"
TUNED = "tuned.json"
TUNE_LOG = "experiment_log.jsonl"
CANDIDATES = "candidates.json"


# ------------------------------------------------------------------------------------ data


def validate_step(
    config_json: str, data_uri: str, dataset_dir: str, report_html: str
) -> dict[str, Any]:
    """Ingest (generating the synthetic file on first use) and validate the data; with a
    `features` section, the rows are Feast's point-in-time join of the label rows.

    Writes `dataset_dir/` (the validated frame, the decisions about it, the report as JSON) and
    the HTML report. Bad data raises `DataError` naming the column, before anything is written.
    """
    from mainsail.data.stage import load_validated

    cfg = config_from_json(config_json)
    if "://" in data_uri:
        raise ValueError(
            f"data_uri {data_uri!r}: only file paths are supported (mount the data into the "
            "step, e.g. a PVC or the pipeline root); object-store URIs are not read directly"
        )
    cfg.data.path = Path(data_uri)
    loaded = load_validated(cfg)
    checked, sha = loaded.checked, loaded.data_sha256
    out = _fresh_dir(dataset_dir)
    checked.frame.to_parquet(out / FRAME)
    checked.report.save_json(out / REPORT_JSON)
    _write_json(
        out / VALIDATED,
        {
            "problem_type": checked.problem_type,
            "problem_type_detected": checked.problem_type_detected,
            "features": checked.features,
            "numeric": checked.numeric,
            "categorical": checked.categorical,
            "classes": checked.classes,
            "positive_class": checked.positive_class,
            "data_sha256": sha,
            "source": str(cfg.data.path),
            "feast": loaded.feast,
        },
    )
    Path(report_html).parent.mkdir(parents=True, exist_ok=True)
    Path(report_html).write_text(checked.report.to_html())
    return {
        "rows": len(checked.frame),
        "features": len(checked.features),
        "warnings": len(checked.report.warnings()),
        "errors": len(checked.report.errors()),
    }


def _load_validated(dataset_dir: Path) -> tuple[Any, dict[str, Any]]:
    import pandas as pd

    meta = _read_json(dataset_dir / VALIDATED, "validated-data metadata")
    return pd.read_parquet(dataset_dir / FRAME), meta


def split_step(config_json: str, dataset_dir: str, splits_dir: str) -> dict[str, Any]:
    """Split the validated rows (leakage-safe) and plan the class-imbalance handling."""
    import numpy as np

    from mainsail.data.imbalance import plan_imbalance
    from mainsail.data.split import make_split
    from mainsail.data.stage import save_split_indices

    cfg = config_from_json(config_json)
    frame, meta = _load_validated(Path(dataset_dir))
    data = cfg.data
    split, summary = make_split(
        frame,
        strategy=cfg.split.strategy,
        target=data.target,
        problem_type=meta["problem_type"],
        seed=cfg.seed,
        test_size=cfg.split.test_size,
        valid_size=cfg.split.valid_size,
        entity_key=data.entity_key,
        event_timestamp=data.event_timestamp,
        gap=cfg.split.gap,
        positive_class=meta["positive_class"],
    )
    plan = plan_imbalance(
        frame[data.target], split.train, cfg.imbalance, meta["problem_type"], cfg.seed
    )
    if meta.get("feast"):
        from mainsail.data.feast_training import split_summary

        summary["feast"] = split_summary(meta["feast"])
    out = _fresh_dir(splits_dir)
    save_split_indices(split, out / SPLIT_NPZ)
    if plan.oversampled_train is not None:
        np.save(out / OVERSAMPLED, plan.oversampled_train)
    _write_json(
        out / SPLIT_JSON,
        {
            "strategy": split.strategy,
            "summary": summary,
            "imbalance": plan.summary(),
            "applied": plan.applied,
            # Labels keep their type (int vs str) as [label, weight] pairs.
            "class_weight": list(plan.class_weight.items()) if plan.class_weight else None,
        },
    )
    return {
        "train_rows": len(split.train),
        "valid_rows": len(split.valid),
        "test_rows": len(split.test),
        "imbalance": plan.applied,
    }


def preprocess_step(
    config_json: str, dataset_dir: str, splits_dir: str, prepared_dir: str
) -> dict[str, Any]:
    """Fit the preprocessor on the train rows; write the complete data-stage artifact.

    `prepared_dir` holds everything training needs (frame, split, preprocessor, schema), so
    every later step takes this one input (see :func:`load_prepared`).
    """
    import shutil

    import joblib

    from mainsail.data.preprocess import fit_preprocessor
    from mainsail.data.stage import build_feature_schema

    cfg = config_from_json(config_json)
    src, splits = Path(dataset_dir), Path(splits_dir)
    frame, meta = _load_validated(src)
    split = _load_split(splits)
    X_train = frame.iloc[split.train][meta["features"]]
    preprocessor = fit_preprocessor(cfg.preprocess, X_train, meta["numeric"], meta["categorical"])
    schema = build_feature_schema(
        X_train,
        meta["numeric"],
        meta["categorical"],
        target=cfg.data.target,
        problem_type=meta["problem_type"],
        classes=meta["classes"],
        entity_key=cfg.data.entity_key,
        event_timestamp=cfg.data.event_timestamp,
    )
    out = _fresh_dir(prepared_dir)
    for name in (FRAME, VALIDATED, REPORT_JSON):
        shutil.copy2(src / name, out / name)
    for name in (SPLIT_NPZ, SPLIT_JSON, OVERSAMPLED):
        if (splits / name).exists():
            shutil.copy2(splits / name, out / name)
    joblib.dump(preprocessor, out / PREPROCESSOR)
    schema.save(out / SCHEMA)
    return {"features": len(schema.features), "train_rows": len(split.train)}


def _load_split(folder: Path) -> Any:
    import numpy as np

    from mainsail.data.stage import SplitIndices

    info = _read_json(folder / SPLIT_JSON, "split metadata")
    with np.load(folder / SPLIT_NPZ) as arrays:
        return SplitIndices(
            train=arrays["train"],
            valid=arrays["valid"],
            test=arrays["test"],
            strategy=info["strategy"],
            groups=arrays["groups"] if "groups" in arrays.files else None,
        )


def load_prepared(prepared_dir: str | Path) -> Any:
    """The `DataStageResult` that the preprocess step wrote into `prepared_dir`."""
    import joblib
    import numpy as np

    from mainsail.data.stage import DataStageResult
    from mainsail.data.validate import ValidationReport
    from mainsail.schema import FeatureSchema

    folder = Path(prepared_dir)
    frame, meta = _load_validated(folder)
    info = _read_json(folder / SPLIT_JSON, "split metadata")
    oversampled = np.load(folder / OVERSAMPLED) if (folder / OVERSAMPLED).exists() else None
    summary = dict(info["summary"])
    summary.setdefault("imbalance", info["imbalance"])
    schema = FeatureSchema.load(folder / SCHEMA)
    return DataStageResult(
        frame=frame,
        problem_type=meta["problem_type"],
        problem_type_detected=meta["problem_type_detected"],
        target=schema.target,
        features=meta["features"],
        numeric=meta["numeric"],
        categorical=meta["categorical"],
        split=_load_split(folder),
        preprocessor=joblib.load(folder / PREPROCESSOR),
        schema=schema,
        report=ValidationReport.model_validate_json((folder / REPORT_JSON).read_text()),
        class_weight=dict(map(tuple, info["class_weight"])) if info["class_weight"] else None,
        oversample=info["applied"] == "oversample",
        positive_class=meta["positive_class"],
        data_sha256=meta["data_sha256"],
        summary=summary,
        classes=meta["classes"],
        oversampled_train=oversampled,
        imbalance=info["imbalance"],
        source=Path(meta["source"]),
        feast=meta.get("feast"),
    )


# -------------------------------------------------------------------------------- training


def _ray_target(cfg: ProjectConfig) -> Any:
    from mainsail.kfp_runner import pipelines_settings

    return pipelines_settings(cfg).kuberay


def _valid_arrays(data: Any) -> Any:
    from mainsail.train.model import to_dense

    return to_dense(data.preprocessor.transform(data.X("valid")))


def tune_step(config_json: str, prepared_dir: str, tuned_dir: str) -> dict[str, Any]:
    """Tune the configured candidates (Ray Tune or Optuna); on the KubeRay cluster if set."""
    from mainsail.ray_cluster import run_ray_work

    cfg = config_from_json(config_json)
    return run_ray_work(
        "mainsail.steps:tune_work",
        {"config_json": config_json, "prepared_dir": prepared_dir, "tuned_dir": tuned_dir},
        _ray_target(cfg),
        inputs=["prepared_dir"],
        outputs=["tuned_dir"],
    )


def tune_work(config_json: str, prepared_dir: str, tuned_dir: str) -> dict[str, Any]:
    """The Ray work of :func:`tune_step` (runs where `run_ray_work` puts it)."""
    import tempfile
    from dataclasses import asdict

    from mainsail.train.stage import candidate_list, class_labels, train_arrays
    from mainsail.tune.search import TuneData, tune_family

    cfg = config_from_json(config_json)
    data = load_prepared(prepared_dir)
    out = _fresh_dir(tuned_dir)
    families = candidate_list(cfg)
    to_tune = [f for f in cfg.tune.candidates if f in families] if cfg.tune.enabled else []
    results: dict[str, Any] = {}
    if to_tune:
        X, y, w = train_arrays(data, cfg.seed)
        tdata = TuneData(
            X,
            y,
            _valid_arrays(data),
            data.y("valid").to_numpy(),
            data.problem_type,
            class_labels(data),
            w,
        )
        with tempfile.TemporaryDirectory(prefix="mainsail-tune-") as ray_dir:
            for family in to_tune:
                results[family] = asdict(
                    tune_family(
                        family,
                        tdata,
                        cfg,
                        log_path=out / TUNE_LOG,
                        storage_dir=Path(ray_dir) / family,
                    )
                )
    (out / TUNE_LOG).touch()
    _write_json(out / TUNED, results)
    return {f"{f}_best_score": r["best_score"] for f, r in results.items()} | {
        "tuned": len(results)
    }


def _tune_results(tuned_dir: Path) -> dict[str, Any]:
    from mainsail.tune.search import TrialRecord, TuneResult

    raw = _read_json(tuned_dir / TUNED, "tuning results")
    return {
        family: TuneResult(**{**r, "trials": [TrialRecord(**t) for t in r["trials"]]})
        for family, r in raw.items()
    }


def train_candidates_step(
    config_json: str, prepared_dir: str, tuned_dir: str, candidates_dir: str
) -> dict[str, Any]:
    """Fit every candidate on the train rows with its tuned (or default) hyperparameters."""
    from mainsail.ray_cluster import run_ray_work

    cfg = config_from_json(config_json)
    return run_ray_work(
        "mainsail.steps:train_candidates_work",
        {
            "config_json": config_json,
            "prepared_dir": prepared_dir,
            "tuned_dir": tuned_dir,
            "candidates_dir": candidates_dir,
        },
        _ray_target(cfg),
        inputs=["prepared_dir", "tuned_dir"],
        outputs=["candidates_dir"],
    )


def train_candidates_work(
    config_json: str, prepared_dir: str, tuned_dir: str, candidates_dir: str
) -> dict[str, Any]:
    """The Ray work of :func:`train_candidates_step`."""
    import tempfile

    import joblib

    from mainsail.evaluate.metrics import all_metrics, model_output
    from mainsail.train.candidates import default_params, mlp_params_dict
    from mainsail.train.stage import candidate_list, class_labels, fit_final, train_arrays

    cfg = config_from_json(config_json)
    data = load_prepared(prepared_dir)
    tuned = _tune_results(Path(tuned_dir))
    families = candidate_list(cfg)
    params = {f: default_params(f, cfg) for f in families}
    if "mlp" in params:
        params["mlp"] = mlp_params_dict(params["mlp"])
    params.update({f: t.best_params for f, t in tuned.items() if f in params})
    arrays = train_arrays(data, cfg.seed)
    X_valid = _valid_arrays(data)
    out = _fresh_dir(candidates_dir)
    valid: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="mainsail-train-") as ray_dir:
        for family in families:
            model = fit_final(family, params[family], data, cfg, arrays, X_valid, Path(ray_dir))
            joblib.dump(model, out / f"{family}.joblib")
            output = model_output(model, data.X("valid"), data.problem_type)
            valid[family] = all_metrics(
                data.problem_type, data.y("valid").to_numpy(), output, class_labels(data)
            )
    _write_json(out / CANDIDATES, {"families": families, "params": params, "valid": valid})
    metric = cfg.primary_metric(data.problem_type)
    return {f"{f}_valid_{metric}": m.get(metric) for f, m in valid.items()}


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
    import shutil

    import joblib
    import yaml

    from mainsail.evaluate.cv import cross_validate, cv_folds
    from mainsail.lineage import build_lineage
    from mainsail.train.stage import class_labels, evaluate_and_document

    cfg = config_from_json(config_json)
    data = load_prepared(prepared_dir)
    cands = _read_json(Path(candidates_dir) / CANDIDATES, "candidate list")
    families, params = cands["families"], cands["params"]
    models = {f: joblib.load(Path(candidates_dir) / f"{f}.joblib") for f in families}
    tuned = _tune_results(Path(tuned_dir))
    metric = cfg.primary_metric(data.problem_type)
    classes = class_labels(data)
    seed = cfg.seed

    folds = cv_folds(data, cfg.evaluate.cv_folds, seed)
    wanted = cfg.evaluate.cv_candidates
    cv = {
        f: cross_validate(
            data, f, params[f], folds, seed=seed, classes=classes, threads=cfg.train.threads
        )
        for f in families
        if wanted is None or f in wanted or f == "baseline"
    }
    out = _fresh_dir(model_dir)
    doc = evaluate_and_document(cfg, data, models, params, cv, tuned, out, version=out.name)
    shutil.copy2(Path(tuned_dir) / TUNE_LOG, out / TUNE_LOG)
    lineage = build_lineage(cfg, data.data_sha256, None)
    if data.feast is not None:
        lineage["features"] = data.feast
    _write_json(out / "lineage.json", lineage)
    card = yaml.safe_load(doc.card_path.read_text())
    chosen, subject = doc.chosen, doc.subject
    selection = doc.selection
    test_metrics = doc.test_metrics
    Path(report_html).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(out / "report.html", report_html)
    Path(card_md).write_text(_card_markdown(card, (out / "model_card.yaml").read_text()))
    return {
        "chosen": chosen or "",
        "reason": selection.reason,
        f"test_{metric}": test_metrics.get(subject, {}).get(metric),
    }


def _greater(metric: str) -> bool:
    from mainsail.evaluate.metrics import greater_is_better

    return greater_is_better(metric)


def _card_markdown(card: dict[str, Any], card_yaml: str) -> str:
    """The model card for the KFP UI: a title, the top-level facts, then the full YAML."""
    title = card.get("model") or card.get("name") or "model"
    lines = [f"# Model card: {title}", ""]
    for key, value in card.items():
        if isinstance(value, str | int | float | bool) or value is None:
            lines.append(f"- **{key}**: {value}")
    lines += ["", "```yaml", card_yaml.rstrip(), "```", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------ registry & deploy


def _registry(cfg: ProjectConfig) -> Any:
    """The registry the config points at (`registry.endpoint`, else the local stack's S3)."""
    from mainsail.deploy.service import local_registry

    return local_registry(cfg)


def compare_champion_step(config_json: str, prepared_dir: str, model_dir: str) -> dict[str, Any]:
    """Does the new model beat the current champion on the fresh window's test rows?

    Both models predict the same test rows; `wins` is true when the new model's primary metric
    is better (paired bootstrap interval of the improvement reported alongside), or when there
    is no champion yet. A folder without model.joblib (no candidate was selected) never wins.
    """
    import tempfile

    import joblib

    from mainsail.evaluate.metrics import metric_fn, model_output
    from mainsail.evaluate.stats import bootstrap_ci
    from mainsail.train.stage import class_labels

    cfg = config_from_json(config_json)
    new_path = Path(model_dir) / "model.joblib"
    if not new_path.is_file():
        return {"wins": False, "reason": "no candidate was selected", "champion": 0}
    registry = _registry(cfg)
    registry.ensure_bucket()  # a fresh registry has no bucket yet, hence no champion
    champion = registry.aliases(cfg.name).get("champion")
    if champion is None:
        return {"wins": True, "reason": f"{cfg.name} has no champion yet", "champion": 0}
    data = load_prepared(prepared_dir)
    metric = cfg.primary_metric(data.problem_type)
    classes = class_labels(data)
    X_test, y_test = data.X("test"), data.y("test").to_numpy()
    with tempfile.TemporaryDirectory(prefix="mainsail-champion-") as tmp:
        local = registry.download(cfg.name, champion, Path(tmp))
        old = joblib.load(local.path / "model.joblib")
    new = joblib.load(new_path)
    out_new = model_output(new, X_test, data.problem_type)
    out_old = model_output(old, X_test, data.problem_type)
    fn = metric_fn(metric, data.problem_type, classes)
    sign = 1.0 if _greater(metric) else -1.0
    ci = bootstrap_ci(
        lambda idx: sign * (fn(y_test[idx], out_new[idx]) - fn(y_test[idx], out_old[idx])),
        len(y_test),
        resamples=cfg.evaluate.bootstrap,
        seed=cfg.seed,
        level=1 - cfg.evaluate.alpha,
    )
    new_score, old_score = fn(y_test, out_new), fn(y_test, out_old)
    wins = bool(sign * (new_score - old_score) > 0)
    return {
        "wins": wins,
        "reason": (
            f"{metric} {new_score:.4f} vs champion v{champion} {old_score:.4f} "
            f"(improvement {ci.estimate:+.4f}, {ci.level:.0%} CI {ci.low:+.4f}..{ci.high:+.4f})"
        ),
        "champion": int(champion),
        f"new_{metric}": new_score,
        f"champion_{metric}": old_score,
    }


def register_step(config_json: str, model_dir: str) -> dict[str, Any]:
    """Publish the model folder as the next registry version (atomic, sha256 manifest)."""
    cfg = config_from_json(config_json)
    registry = _registry(cfg)
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

    cfg = config_from_json(config_json)
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
    _write_json(Path(metrics.path), result)
