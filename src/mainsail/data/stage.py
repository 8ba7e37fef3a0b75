"""The data stage as one call: ingest → validate → (Feast point-in-time training rows, when
the config has a `features` section) → split → fit the preprocessor on train.

`run_data_stage` is what `mainsail run`, the kfp components and tests call. Its result is the
contract that the training stage builds on.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mainsail.config import ProblemType, ProjectConfig
from mainsail.schema import FeatureSchema

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from mainsail.data.validate import ValidatedData, ValidationReport


@dataclass(frozen=True)
class SplitIndices:
    """Row positions (into `DataStageResult.frame`) of each side; sorted, disjoint."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    strategy: str
    groups: np.ndarray | None = None
    """Entity of each row of `frame` (for grouped cross-validation), when an entity key is set."""


@dataclass
class DataStageResult:
    """What the data stage hands to training, evaluation, Feast and the run folder."""

    frame: pd.DataFrame
    """The validated table (all rows, all columns as loaded, duplicates removed if allowed)."""
    problem_type: ProblemType
    """From config, or detected from the target (see `problem_type_detected`)."""
    problem_type_detected: bool
    """True when the config left problem_type out and the stage detected it."""
    target: str
    features: list[str]
    """Feature columns in model input order (entity key, timestamps, target and drops excluded)."""
    numeric: list[str]
    categorical: list[str]
    split: SplitIndices
    preprocessor: Pipeline
    """The scikit-learn preprocessing pipeline, fitted on the train rows only."""
    schema: FeatureSchema
    """Names, dtypes, ranges and categories of the features, from the train rows."""
    report: ValidationReport
    class_weight: dict[Any, float] | None = None
    """Per-class weights when imbalance handling chose class weights; None otherwise."""
    oversample: bool = False
    """True when imbalance handling chose random oversampling of the train rows."""
    positive_class: Any = None
    """Positive label for binary classification."""
    data_sha256: str = ""
    """sha256 of the source file's bytes (lineage)."""
    summary: dict[str, Any] = field(default_factory=dict)
    """Split summary: rows, entities, time ranges and class balance per side (JSON-safe)."""
    classes: list[Any] | None = None
    """Class labels in sorted order (the order of predict_proba's columns); None for regression."""
    oversampled_train: np.ndarray | None = None
    """Train row positions with repeats of the smaller classes, when `oversample` is True."""
    imbalance: dict[str, Any] = field(default_factory=dict)
    """What imbalance handling decided and why (JSON-safe)."""
    source: Path | None = None
    """The data file that was read."""
    artifacts: dict[str, Path] = field(default_factory=dict)
    """Files written into the run folder, by name (empty when no run folder was given)."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds spent in each step (ingest, validate, features, split, preprocess, write)."""
    feast: dict[str, Any] | None = None
    """Where Feast built the rows from (feature service, registry path and sha256, views,
    rows with missing features), when the config has a `features` section; else None."""

    def X(self, side: str) -> pd.DataFrame:  # noqa: N802 - the usual ML name for features
        """Feature frame of one side (`train`, `valid`, `test`), raw (not preprocessed)."""
        return self.frame.iloc[getattr(self.split, side)][self.features]

    def y(self, side: str) -> pd.Series:
        """Target of one side."""
        return self.frame.iloc[getattr(self.split, side)][self.target]


#: Progress callback: called with a step description and the fraction of the stage done (0..1).
ProgressCallback = Callable[[str, float], None]

#: File names written into the run folder.
ARTIFACTS = {
    "validation_report_json": "validation_report.json",
    "validation_report_html": "validation_report.html",
    "split_summary": "split_summary.json",
    "split_indices": "split_indices.npz",
    "preprocessor": "preprocessor.joblib",
    "feature_schema": "feature_schema.json",
}


def run_data_stage(
    cfg: ProjectConfig,
    run_dir: Path | None = None,
    progress: ProgressCallback | None = None,
) -> DataStageResult:
    """Run the data stage; write its artifacts into `run_dir` when given.

    Steps: ingest (generate or materialise the file on first use, then read it) → validate →
    features (see `load_validated`) → split → fit the preprocessor on the train rows →
    imbalance plan → feature schema → write. Raises `mainsail.data.errors.DataError` (a
    ValueError naming the column) on bad input, and `mainsail.features.errors` subclasses on
    Feast problems, before anything is written. `progress(step, fraction)` is called before
    each step.
    """
    from mainsail.data.imbalance import plan_imbalance
    from mainsail.data.preprocess import fit_preprocessor
    from mainsail.data.split import make_split

    def step(name: str, fraction: float) -> None:
        now = time.perf_counter()
        if current:
            timings[current[0]] = round(now - current[1], 4)
        current[:] = [name, now]
        if progress is not None:
            progress(name, fraction)

    timings: dict[str, float] = {}
    current: list[Any] = []
    data = cfg.data
    loaded = load_validated(cfg, step)
    checked, sha, path = loaded.checked, loaded.data_sha256, loaded.path
    frame = checked.frame

    step("split", 0.5)
    split, summary = make_split(
        frame,
        strategy=cfg.split.strategy,
        target=data.target,
        problem_type=checked.problem_type,
        seed=cfg.seed,
        test_size=cfg.split.test_size,
        valid_size=cfg.split.valid_size,
        entity_key=data.entity_key,
        event_timestamp=data.event_timestamp,
        gap=cfg.split.gap,
        positive_class=checked.positive_class,
    )
    _note_split_losses(checked.report, summary, len(frame))
    plan = plan_imbalance(
        frame[data.target], split.train, cfg.imbalance, checked.problem_type, cfg.seed
    )
    summary["imbalance"] = plan.summary()
    summary["problem_type"] = checked.problem_type
    summary["problem_type_detected"] = checked.problem_type_detected
    summary["data_sha256"] = sha
    if loaded.feast is not None:
        from mainsail.data.feast_training import split_summary

        summary["feast"] = split_summary(loaded.feast)

    step("preprocess", 0.65)
    X_train = frame.iloc[split.train][checked.features]
    preprocessor = fit_preprocessor(cfg.preprocess, X_train, checked.numeric, checked.categorical)
    schema = build_feature_schema(
        X_train,
        checked.numeric,
        checked.categorical,
        target=data.target,
        problem_type=checked.problem_type,
        classes=checked.classes,
        entity_key=data.entity_key,
        event_timestamp=data.event_timestamp,
    )
    del X_train

    result = DataStageResult(
        frame=frame,
        problem_type=checked.problem_type,
        problem_type_detected=checked.problem_type_detected,
        target=data.target,
        features=checked.features,
        numeric=checked.numeric,
        categorical=checked.categorical,
        split=split,
        preprocessor=preprocessor,
        schema=schema,
        report=checked.report,
        class_weight=plan.class_weight,
        oversample=plan.applied == "oversample",
        positive_class=checked.positive_class,
        data_sha256=sha,
        summary=summary,
        classes=checked.classes,
        oversampled_train=plan.oversampled_train,
        imbalance=plan.summary(),
        source=path,
        feast=loaded.feast,
    )
    if run_dir is not None:
        step("write", 0.9)
        result.artifacts = write_artifacts(result, Path(run_dir))
    step("done", 1.0)
    result.timings = timings
    return result


@dataclass
class LoadedData:
    """The validated rows that the split starts from, and where they came from."""

    checked: ValidatedData
    data_sha256: str
    path: Path
    feast: dict[str, Any] | None = None
    """`DataStageResult.feast`."""


def load_validated(
    cfg: ProjectConfig, step: Callable[[str, float], None] | None = None
) -> LoadedData:
    """Ingest and validate the data file; with Feast on (a `features` section), the rows are
    then the point-in-time join of its label rows, validated in turn.

    What `run_data_stage` and the pipeline's validate step both call. `step(name, fraction)`
    marks the start of each part (ingest, validate, features).
    """
    from mainsail.data.feast_training import feast_enabled, training_rows
    from mainsail.data.ingest import ensure_data_file, file_sha256, read_table
    from mainsail.data.validate import validate_frame

    mark = step or (lambda _name, _fraction: None)
    data = cfg.data
    path = Path(data.path)
    mark("ingest", 0.0)
    created = ensure_data_file(data, cfg.seed)
    raw = read_table(path, data.format)
    sha = file_sha256(path)
    maker = "data.synthetic" if data.synthetic else "data.packaged" if data.packaged else None
    if created:
        origin = f"{path} was created by this run from {maker}"
    elif maker:
        origin = f"{path} already existed and was used as is ({maker} only creates a missing file)"
    else:
        origin = f"{path} read as given"

    mark("validate", 0.15)
    checked = validate_frame(raw, cfg, source=str(path), data_sha256=sha, origin=origin)
    if not feast_enabled(cfg):
        return LoadedData(checked=checked, data_sha256=sha, path=path)
    mark("features", 0.25)
    feast = training_rows(cfg, raw, checked, source=str(path), data_sha256=sha, origin=origin)
    return LoadedData(checked=feast.checked, data_sha256=sha, path=path, feast=feast.lineage)


def _note_split_losses(report: ValidationReport, summary: dict[str, Any], rows: int) -> None:
    """Record in the report the rows a time split left out (gap, entity separation)."""
    from mainsail.data.validate import Issue

    purged = int(summary.get("rows_purged_for_entity_separation", 0))
    gap = int(summary.get("rows_left_out_by_gap", 0))
    if purged:
        share = purged / max(rows, 1)
        report.issues.append(
            Issue(
                severity="warning" if share > 0.2 else "info",
                code="split_purged_rows",
                message=(
                    f"the time split left out {purged} rows ({share:.0%}): older rows of entities "
                    "that also appear in a later side, so that no entity is on two sides; "
                    "split.strategy 'group' keeps every row if time order matters less"
                ),
            )
        )
    if gap:
        report.issues.append(
            Issue(
                severity="info",
                code="split_gap_rows",
                message=f"the time split's gap left out {gap} rows ({gap / max(rows, 1):.0%})",
            )
        )


def build_feature_schema(
    X_train: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    *,
    target: str,
    problem_type: ProblemType,
    classes: list[Any] | None,
    entity_key: str | None,
    event_timestamp: str | None,
) -> FeatureSchema:
    """The input contract, from the training rows (ranges, categories, missing shares)."""
    from mainsail.data.preprocess import _text
    from mainsail.schema import FeatureKind, FeatureSpec

    specs: list[FeatureSpec] = []
    n = max(len(X_train), 1)
    cat_set = set(categorical)
    for name in [c for c in X_train.columns if c in cat_set or c in set(numeric)]:
        col = X_train[name]
        missing_share = round(float(col.isna().sum()) / n, 6)
        if name in cat_set:
            seen = col.dropna()
            if isinstance(col.dtype, pd.CategoricalDtype):
                values = [c for c, k in col.value_counts().items() if k > 0]
            else:
                values = list(seen.unique())
            specs.append(
                FeatureSpec(
                    name=name,
                    kind="categorical",
                    dtype=str(col.dtype),
                    categories=sorted({_text(v) for v in values}),
                    open_vocabulary=True,
                    missing_share=missing_share,
                )
            )
        else:
            values_f = col.to_numpy(dtype=np.float64, na_value=np.nan)
            finite = values_f[~np.isnan(values_f)]
            kind: FeatureKind = "boolean" if pd.api.types.is_bool_dtype(col.dtype) else "numeric"
            specs.append(
                FeatureSpec(
                    name=name,
                    kind=kind,
                    dtype=str(col.dtype),
                    min=float(finite.min()) if len(finite) else None,
                    max=float(finite.max()) if len(finite) else None,
                    missing_share=missing_share,
                )
            )
    return FeatureSchema(
        features=specs,
        target=target,
        problem_type=problem_type,
        classes=[str(c) for c in classes] if classes is not None else None,
        entity_key=entity_key,
        event_timestamp=event_timestamp,
        version=1,
    )


def save_split_indices(split: SplitIndices, path: Path) -> None:
    """Write the indices as an ``.npz`` whose bytes depend only on the indices.

    ``numpy.savez`` stamps each zip member with the current time; a fixed stamp keeps the file
    byte-identical across runs with the same seed.
    """
    arrays: dict[str, np.ndarray] = {
        "train": split.train,
        "valid": split.valid,
        "test": split.test,
    }
    if split.groups is not None:
        arrays["groups"] = split.groups
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array, dtype=np.int64))
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())


def write_artifacts(result: DataStageResult, run_dir: Path) -> dict[str, Path]:
    """Write the stage's files into `run_dir`: all into a temporary folder first, then moved in.

    A failure while writing leaves none of them behind in `run_dir`.
    """
    import joblib

    run_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".data-stage-", dir=run_dir))
    try:
        result.report.save_json(staging / ARTIFACTS["validation_report_json"])
        (staging / ARTIFACTS["validation_report_html"]).write_text(result.report.to_html())
        (staging / ARTIFACTS["split_summary"]).write_text(
            json.dumps(result.summary, indent=2, sort_keys=True, default=str) + "\n"
        )
        save_split_indices(result.split, staging / ARTIFACTS["split_indices"])
        joblib.dump(result.preprocessor, staging / ARTIFACTS["preprocessor"])
        result.schema.save(staging / ARTIFACTS["feature_schema"])
        written = {}
        for key, name in ARTIFACTS.items():
            (staging / name).replace(run_dir / name)
            written[key] = run_dir / name
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)
