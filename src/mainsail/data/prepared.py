"""The prepared data: what the data stage hands to training, evaluation, Feast and the run
folder (:class:`DataStageResult`), the feature schema built from the train rows, and the files
the data stage writes into a run folder.

`mainsail.lifecycle.data` builds it; the kfp steps hand it over through files
(`mainsail.pipeline.handover`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mainsail.config import ProblemType
from mainsail.data.schema import FeatureSchema
from mainsail.data.split import SplitIndices, save_split_indices

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from mainsail.data.report import ValidationReport


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
    """Class labels in the order of predict_proba's columns: sorted, except that a binary
    target's positive class comes last; None for regression."""
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
    snapshot: dict[str, Any] | None = None
    """Where the training data's snapshot is stored (`SnapshotRef.to_dict()`: sha256, uri,
    size, rows, columns), when the run stored one; else None."""

    def X(self, side: str) -> pd.DataFrame:  # noqa: N802 - the usual ML name for features
        """Feature frame of one side (`train`, `valid`, `test`), raw (not preprocessed)."""
        return self.frame.iloc[getattr(self.split, side)][self.features]

    def y(self, side: str) -> pd.Series:
        """Target of one side."""
        return self.frame.iloc[getattr(self.split, side)][self.target]


#: File names written into the run folder.
ARTIFACTS = {
    "validation_report_json": "validation_report.json",
    "validation_report_html": "validation_report.html",
    "split_summary": "split_summary.json",
    "split_indices": "split_indices.npz",
    "preprocessor": "preprocessor.joblib",
    "feature_schema": "feature_schema.json",
}


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
    rows: np.ndarray | None = None,
    features: list[str] | None = None,
) -> FeatureSchema:
    """The input contract, from the training rows (ranges, categories, missing shares).

    With `rows` and `features`, `X_train` is the whole table and the schema is that of
    `X_train.iloc[rows][features]`, read column by column without taking that frame
    (categories counted as the one-hot encoder's stand-in counts them, from a categorical
    column's codes; ranges from each column's gathered train values)."""
    from mainsail.data.preprocess import _plain_numbers, _text_counts
    from mainsail.data.schema import FeatureKind, FeatureSpec

    specs: list[FeatureSpec] = []
    n = max(len(X_train) if rows is None else len(rows), 1)
    cat_set = set(categorical)
    order = list(X_train.columns) if features is None else features
    for name in [c for c in order if c in cat_set or c in set(numeric)]:
        col = X_train[name]
        if name in cat_set:
            taken = col if rows is None else col.iloc[rows]
            texts, counts = _text_counts(taken)
            missing = len(taken) - int(counts.sum())
            specs.append(
                FeatureSpec(
                    name=name,
                    kind="categorical",
                    dtype=str(col.dtype),
                    categories=texts.tolist(),
                    open_vocabulary=True,
                    missing_share=round(missing / n, 6),
                )
            )
        else:
            if _plain_numbers(col):
                values_f = col.to_numpy()
                values_f = values_f if rows is None else values_f[rows]
                observed = ~np.isnan(values_f) if values_f.dtype.kind == "f" else None
            else:
                taken = col if rows is None else col.iloc[rows]
                values_f = taken.to_numpy(dtype=np.float64, na_value=np.nan)
                observed = ~np.isnan(values_f)
            finite = values_f if observed is None else values_f[observed]
            missing = 0 if observed is None else len(values_f) - len(finite)
            kind: FeatureKind = "boolean" if pd.api.types.is_bool_dtype(col.dtype) else "numeric"
            specs.append(
                FeatureSpec(
                    name=name,
                    kind=kind,
                    dtype=str(col.dtype),
                    min=float(finite.min()) if len(finite) else None,
                    max=float(finite.max()) if len(finite) else None,
                    missing_share=round(missing / n, 6),
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
