"""How one pipeline step hands its results to the next: each lifecycle result as files in the
step's output artifact, and back.

    dataset/    (validate)          frame.parquet, validated.json, validation_report.json
    splits/     (split)             split_indices.npz, split.json, oversampled_train.npy
    prepared/   (preprocess)        dataset/ + splits/ + preprocessor.joblib, feature_schema.json
    tuned/      (tune)              tuned.json, experiment_log.jsonl
    candidates/ (train-candidates)  <family>.joblib, candidates.json

Writers fill a folder the caller created; readers fail with FileNotFoundError naming what is
missing when an input artifact is incomplete.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mainsail.config import ProjectConfig
from mainsail.core.files import write_json
from mainsail.lifecycle.data import LoadedData, SplitPlan, assemble

if TYPE_CHECKING:
    from mainsail.data.prepared import DataStageResult
    from mainsail.lifecycle.training import Candidates
    from mainsail.tune.search import TuneResult

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


def fresh_dir(path: str | Path) -> Path:
    """An output folder: created empty (a retried task must not mix in stale files)."""
    out = Path(path)
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    out.mkdir(parents=True)
    return out


def read_json(path: Path, what: str) -> Any:
    """A JSON input file; FileNotFoundError naming `what` when it is missing."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path} (is the input artifact complete?)")
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------ validated rows


def save_loaded(loaded: LoadedData, folder: Path) -> None:
    """The validated rows, the decisions about them and the report."""
    checked = loaded.checked
    checked.frame.to_parquet(folder / FRAME)
    checked.report.save_json(folder / REPORT_JSON)
    write_json(
        folder / VALIDATED,
        {
            "problem_type": checked.problem_type,
            "problem_type_detected": checked.problem_type_detected,
            "features": checked.features,
            "numeric": checked.numeric,
            "categorical": checked.categorical,
            "classes": checked.classes,
            "positive_class": checked.positive_class,
            "data_sha256": loaded.data_sha256,
            "source": str(loaded.path),
            "feast": loaded.feast,
            "snapshot": loaded.snapshot,
        },
    )


def load_loaded(folder: Path) -> LoadedData:
    """What :func:`save_loaded` wrote."""
    import pandas as pd

    from mainsail.data.report import ValidationReport
    from mainsail.data.validate import ValidatedData

    meta = read_json(folder / VALIDATED, "validated-data metadata")
    checked = ValidatedData(
        frame=pd.read_parquet(folder / FRAME),
        report=ValidationReport.model_validate_json((folder / REPORT_JSON).read_text()),
        problem_type=meta["problem_type"],
        problem_type_detected=meta["problem_type_detected"],
        features=meta["features"],
        numeric=meta["numeric"],
        categorical=meta["categorical"],
        classes=meta["classes"],
        positive_class=meta["positive_class"],
    )
    return LoadedData(
        checked,
        meta["data_sha256"],
        Path(meta["source"]),
        meta.get("feast"),
        meta.get("snapshot"),
    )


# ---------------------------------------------------------------------------------- the split


def save_split_plan(plan: SplitPlan, folder: Path) -> None:
    """Indices, summary and imbalance plan of the split."""
    import numpy as np

    from mainsail.data.split import save_split_indices

    save_split_indices(plan.split, folder / SPLIT_NPZ)
    imbalance = plan.imbalance
    if imbalance.oversampled_train is not None:
        np.save(folder / OVERSAMPLED, imbalance.oversampled_train)
    write_json(
        folder / SPLIT_JSON,
        {
            "strategy": plan.split.strategy,
            "summary": plan.summary,
            "imbalance": {
                "applied": imbalance.applied,
                "reason": imbalance.reason,
                "minority_share": imbalance.minority_share,
                # Labels keep their type (int vs str) as [label, weight] pairs.
                "class_weight": (
                    list(imbalance.class_weight.items()) if imbalance.class_weight else None
                ),
            },
        },
    )


def load_split_plan(folder: Path) -> SplitPlan:
    """What :func:`save_split_plan` wrote."""
    import numpy as np

    from mainsail.data.imbalance import ImbalancePlan
    from mainsail.data.split import load_split_indices

    info = read_json(folder / SPLIT_JSON, "split metadata")
    raw = info["imbalance"]
    oversampled = folder / OVERSAMPLED
    imbalance = ImbalancePlan(
        applied=raw["applied"],
        reason=raw["reason"],
        minority_share=raw["minority_share"],
        class_weight=dict(map(tuple, raw["class_weight"])) if raw["class_weight"] else None,
        oversampled_train=np.load(oversampled) if oversampled.exists() else None,
    )
    split = load_split_indices(folder / SPLIT_NPZ, info["strategy"])
    return SplitPlan(split=split, summary=info["summary"], imbalance=imbalance)


# ------------------------------------------------------------------------------- prepared data


def save_prepared(
    result: DataStageResult, loaded: LoadedData, plan: SplitPlan, folder: Path
) -> None:
    """Everything training needs in one folder: rows, split, fitted preprocessor, schema."""
    import joblib

    save_loaded(loaded, folder)
    save_split_plan(plan, folder)
    joblib.dump(result.preprocessor, folder / PREPROCESSOR)
    result.schema.save(folder / SCHEMA)


def load_prepared(cfg: ProjectConfig, folder: str | Path) -> DataStageResult:
    """The `DataStageResult` that :func:`save_prepared` wrote."""
    import joblib

    from mainsail.data.schema import FeatureSchema

    folder = Path(folder)
    return assemble(
        cfg,
        load_loaded(folder),
        load_split_plan(folder),
        joblib.load(folder / PREPROCESSOR),
        FeatureSchema.load(folder / SCHEMA),
    )


# --------------------------------------------------------------------------- tuning, candidates


def save_tuned(tuned: dict[str, TuneResult], folder: Path) -> None:
    """The search results (the experiment log is written by the search itself)."""
    write_json(folder / TUNED, {family: asdict(result) for family, result in tuned.items()})


def load_tuned(folder: Path) -> dict[str, TuneResult]:
    """What :func:`save_tuned` wrote."""
    from mainsail.tune.search import TrialRecord, TuneResult

    raw = read_json(folder / TUNED, "tuning results")
    return {
        family: TuneResult(**{**r, "trials": [TrialRecord(**t) for t in r["trials"]]})
        for family, r in raw.items()
    }


def save_candidates(candidates: Candidates, folder: Path) -> None:
    """One pickle per fitted family, and the families' params and validation metrics."""
    import joblib

    for family, model in candidates.models.items():
        joblib.dump(model, folder / f"{family}.joblib")
    write_json(
        folder / CANDIDATES,
        {
            "families": candidates.families,
            "params": candidates.params,
            "valid": candidates.valid_metrics,
        },
    )


def load_candidates(folder: Path) -> Candidates:
    """What :func:`save_candidates` wrote."""
    import joblib

    from mainsail.lifecycle.training import Candidates

    info = read_json(folder / CANDIDATES, "candidate list")
    models = {f: joblib.load(folder / f"{f}.joblib") for f in info["families"]}
    return Candidates(info["families"], info["params"], models, info["valid"])
