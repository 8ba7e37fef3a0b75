"""The data stage, in the three parts that the pipeline runs as three steps:

    load_validated  ingest → validate → (Feast point-in-time rows, with a `features` section)
    snapshot_data   the data file → content-addressed parquet in the registry (when given a store)
    split_rows      leakage-safe split → class-imbalance plan → split summary
    prepare         preprocessor fitted on the train rows → feature schema → DataStageResult

:func:`run_data_stage` (what `mainsail run` calls) is the three in a row, plus the run folder's
files. The kfp steps call the same three, one per step, and hand the results over through files
(`mainsail.pipeline.handover`), so both paths decide identically.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mainsail.config import ProjectConfig
from mainsail.core.files import jsonable
from mainsail.data.prepared import DataStageResult, build_feature_schema, write_artifacts

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from mainsail.data.imbalance import ImbalancePlan
    from mainsail.data.report import ValidationReport
    from mainsail.data.schema import FeatureSchema
    from mainsail.data.split import SplitIndices
    from mainsail.data.validate import ValidatedData
    from mainsail.registry.snapshots import SnapshotStore

#: Progress callback: called with a step name and the fraction of the stage done (0..1).
ProgressCallback = Callable[[str, float], None]


@dataclass
class LoadedData:
    """The validated rows that the split starts from, and where they came from."""

    checked: ValidatedData
    data_sha256: str
    path: Path
    feast: dict[str, Any] | None = None
    """`DataStageResult.feast`."""
    snapshot: dict[str, Any] | None = None
    """`DataStageResult.snapshot`: set by :func:`snapshot_data`."""


@dataclass
class SplitPlan:
    """Which rows go to which side, and how class imbalance is handled on the train side."""

    split: SplitIndices
    summary: dict[str, Any]
    """Split summary (rows, entities, time ranges, class balance per side; the imbalance plan,
    problem type, data sha256, Feast), JSON-safe: the same whether read back from a file or not."""
    imbalance: ImbalancePlan


def load_validated(
    cfg: ProjectConfig,
    step: Callable[[str, float], None] | None = None,
    *,
    features: bool = True,
    snapshots: SnapshotStore | None = None,
) -> LoadedData:
    """Ingest and validate the data file; with Feast on (a `features` section, and `features`
    true), the rows are then the point-in-time join of its label rows, validated in turn.
    `mainsail check-config` validates the file alone (`features=False`). With `snapshots`, the
    data file is then stored there (:func:`snapshot_data`).

    `step(name, fraction)` marks the start of each part (ingest, validate, features). Raises
    `mainsail.data.errors.DataError` (a ValueError naming the column) on bad input, and
    `mainsail.features.errors` subclasses on Feast problems.
    """
    from mainsail.core.files import sha256_file
    from mainsail.data.ingest import ensure_data_file, read_table
    from mainsail.data.validate import validate_frame
    from mainsail.features.training import feast_enabled, training_rows

    mark = step or (lambda _name, _fraction: None)
    data = cfg.data
    path = Path(data.path)
    mark("ingest", 0.0)
    created = ensure_data_file(data, cfg.seed)
    # The file's digest is computed while it is read (hashlib releases the GIL): on a large
    # file that is a fifth of the read's time off the wall clock. A read error comes first.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256") as pool:
        digest = pool.submit(sha256_file, path) if path.is_file() else None
        raw = read_table(path, data.format)
        sha = digest.result() if digest is not None else sha256_file(path)
    maker = "data.synthetic" if data.synthetic else "data.packaged" if data.packaged else None
    if created:
        origin = f"{path} was created by this run from {maker}"
    elif maker:
        origin = f"{path} already existed and was used as is ({maker} only creates a missing file)"
    else:
        origin = f"{path} read as given"

    mark("validate", 0.15)
    checked = validate_frame(raw, cfg, source=str(path), data_sha256=sha, origin=origin)
    if checked.report.sensitive:
        # Nothing downstream (Feast's offline sources included) sees a sensitive column.
        raw = raw.drop(columns=list(checked.report.sensitive))
    if not features or not feast_enabled(cfg):
        loaded = LoadedData(checked=checked, data_sha256=sha, path=path)
    else:
        mark("features", 0.25)
        feast = training_rows(cfg, raw, checked, source=str(path), data_sha256=sha, origin=origin)
        if checked.report.sensitive:
            # The joined rows never held the sensitive columns: the report keeps saying why.
            final = feast.checked.report
            final.sensitive = dict(checked.report.sensitive)
            final.columns = [c for c in checked.report.columns if c.role == "sensitive"] + list(
                final.columns
            )
            flagged = [i for i in checked.report.issues if i.code.startswith("sensitive_")]
            final.issues = flagged + list(final.issues)
        loaded = LoadedData(checked=feast.checked, data_sha256=sha, path=path, feast=feast.lineage)
    if snapshots is not None:
        mark("snapshot", 0.4)
        snapshot_data(cfg, loaded, snapshots)
    return loaded


def snapshot_data(cfg: ProjectConfig, loaded: LoadedData, store: SnapshotStore) -> LoadedData:
    """Store the data file the rows were read from as a content-addressed snapshot (nothing is
    written when the same bytes are already there) and note the reference in `loaded`, whence
    lineage.json and the model card take it (:func:`load_validated` with a store: `mainsail run`
    and the pipeline's validate step alike). Sensitive columns (privacy) are left out of the
    snapshot: the run never used them, and the bucket must not hold them raw."""
    drop = sorted(loaded.checked.report.sensitive)
    loaded.snapshot = store.store_file(loaded.path, cfg.data.format, drop=drop).to_dict()
    return loaded


def split_rows(cfg: ProjectConfig, loaded: LoadedData) -> SplitPlan:
    """Split the validated rows (strategy from `split`) and plan the imbalance handling."""
    from mainsail.data.imbalance import plan_imbalance
    from mainsail.data.split import make_split

    checked, data = loaded.checked, cfg.data
    frame = checked.frame
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
    plan = plan_imbalance(
        frame[data.target], split.train, cfg.imbalance, checked.problem_type, cfg.seed
    )
    summary["imbalance"] = plan.summary()
    summary["problem_type"] = checked.problem_type
    summary["problem_type_detected"] = checked.problem_type_detected
    summary["data_sha256"] = loaded.data_sha256
    if loaded.feast is not None:
        from mainsail.features.training import split_summary

        summary["feast"] = split_summary(loaded.feast)
    return SplitPlan(split=split, summary=jsonable(summary), imbalance=plan)


def prepare(cfg: ProjectConfig, loaded: LoadedData, plan: SplitPlan) -> DataStageResult:
    """Fit the preprocessor on the train rows and build the feature schema from them."""
    from mainsail.data.preprocess import fit_preprocessor

    checked, data = loaded.checked, cfg.data
    frame, train = checked.frame, plan.split.train
    # The pipeline and the schema take the train rows of each column (or group of columns) as
    # they read it, never a copy of the whole train frame.
    preprocessor = fit_preprocessor(
        cfg.preprocess,
        frame,
        checked.numeric,
        checked.categorical,
        rows=train,
        features=checked.features,
    )
    schema = build_feature_schema(
        frame,
        checked.numeric,
        checked.categorical,
        target=data.target,
        problem_type=checked.problem_type,
        classes=checked.classes,
        entity_key=data.entity_key,
        event_timestamp=data.event_timestamp,
        rows=train,
        features=checked.features,
    )
    return assemble(cfg, loaded, plan, preprocessor, schema)


def assemble(
    cfg: ProjectConfig,
    loaded: LoadedData,
    plan: SplitPlan,
    preprocessor: Pipeline,
    schema: FeatureSchema,
) -> DataStageResult:
    """The data stage's result from its parts (:func:`prepare`, or the files a pipeline step
    wrote); the report gains the rows the split left out."""
    checked, imbalance = loaded.checked, plan.imbalance
    return DataStageResult(
        frame=checked.frame,
        problem_type=checked.problem_type,
        problem_type_detected=checked.problem_type_detected,
        target=cfg.data.target,
        features=checked.features,
        numeric=checked.numeric,
        categorical=checked.categorical,
        split=plan.split,
        preprocessor=preprocessor,
        schema=schema,
        report=with_split_losses(checked.report, plan.summary, len(checked.frame)),
        class_weight=imbalance.class_weight,
        oversample=imbalance.applied == "oversample",
        positive_class=checked.positive_class,
        data_sha256=loaded.data_sha256,
        summary=plan.summary,
        classes=checked.classes,
        oversampled_train=imbalance.oversampled_train,
        imbalance=plan.summary["imbalance"],
        source=loaded.path,
        feast=loaded.feast,
        snapshot=loaded.snapshot,
    )


def run_data_stage(
    cfg: ProjectConfig,
    run_dir: Path | None = None,
    progress: ProgressCallback | None = None,
    snapshots: SnapshotStore | None = None,
) -> DataStageResult:
    """Run the data stage; write its artifacts into `run_dir` when given; with `snapshots`,
    store the data file there (:func:`snapshot_data`).

    Steps: ingest (generate or materialise the file on first use, then read it) → validate →
    features (see :func:`load_validated`) → snapshot → split → imbalance plan → fit the
    preprocessor on the train rows → feature schema → write. Bad input raises before anything
    is written. `progress(step, fraction)` is called before each step.
    """

    def step(name: str, fraction: float) -> None:
        now = time.perf_counter()
        if current:
            timings[current[0]] = round(now - current[1], 4)
        current[:] = [name, now]
        if progress is not None:
            progress(name, fraction)

    timings: dict[str, float] = {}
    current: list[Any] = []
    loaded = load_validated(cfg, step, snapshots=snapshots)
    step("split", 0.5)
    plan = split_rows(cfg, loaded)
    step("preprocess", 0.65)
    result = prepare(cfg, loaded, plan)
    if run_dir is not None:
        step("write", 0.9)
        result.artifacts = write_artifacts(result, Path(run_dir))
    step("done", 1.0)
    result.timings = timings
    return result


def with_split_losses(
    report: ValidationReport, summary: dict[str, Any], rows: int
) -> ValidationReport:
    """The report with the rows a time split left out (gap, entity separation) noted in it."""
    from mainsail.data.report import Issue

    purged = int(summary.get("rows_purged_for_entity_separation", 0))
    gap = int(summary.get("rows_left_out_by_gap", 0))
    if not purged and not gap:
        return report
    report = report.model_copy(deep=True)
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
    return report
