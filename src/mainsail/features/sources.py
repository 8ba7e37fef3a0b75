"""Write the feature views' parquet sources from the dataset frame (pandas/pyarrow only).

Every check runs before the first byte is written, and each file is written to a temporary
name and renamed into place, so bad input leaves the previous sources untouched.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from pandas.api import types as ptypes

from mainsail.config import ProjectConfig
from mainsail.features.errors import FeatureDefinitionError
from mainsail.features.layout import RepoPlan, plan_repo


def _check_dtype(frame: pd.DataFrame, column: str) -> None:
    dtype = frame[column].dtype
    ok = (
        ptypes.is_bool_dtype(dtype)
        or ptypes.is_integer_dtype(dtype)
        or ptypes.is_float_dtype(dtype)
        or ptypes.is_string_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
    )
    if not ok:
        raise FeatureDefinitionError(
            f"column {column!r} has dtype {dtype}; Feast sources take numbers, booleans and strings"
        )


def write_sources(
    frame: pd.DataFrame, cfg: ProjectConfig, repo_dir: Path, plan: RepoPlan | None = None
) -> dict[str, Path]:
    """Write one parquet file per feature view under `repo_dir/data`; returns view -> path.
    `plan` is the frame's (`plan_repo(cfg, frame.columns)`) when the caller has it."""
    plan = plan or plan_repo(cfg, list(frame.columns))
    tables = source_tables(frame, plan)
    data_dir = repo_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    tmp_paths: list[tuple[Path, Path]] = []
    try:
        for view in plan.views:
            final = repo_dir / view.source_path
            tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
            tables[view.name].to_parquet(tmp, index=False)
            tmp_paths.append((tmp, final))
        for tmp, final in tmp_paths:
            tmp.replace(final)
            written[final.stem] = final
    finally:
        for tmp, _ in tmp_paths:
            tmp.unlink(missing_ok=True)
    return written


def source_tables(frame: pd.DataFrame, plan: RepoPlan) -> dict[str, pd.DataFrame]:
    """The per-view tables, validated; raises FeatureDefinitionError naming the column."""
    key, ts = plan.entity_key, plan.timestamp
    for column, role in ((key, "entity key"), (ts, "event timestamp")):
        if column not in frame.columns:
            raise FeatureDefinitionError(f"the {role} column {column!r} is not in the dataset")
    if frame[key].isna().any():
        raise FeatureDefinitionError(
            f"entity key column {key!r} has {int(frame[key].isna().sum())} missing values"
        )
    if not (ptypes.is_integer_dtype(frame[key]) or ptypes.is_string_dtype(frame[key])):
        raise FeatureDefinitionError(
            f"entity key column {key!r} must hold strings or integers, not {frame[key].dtype}"
        )
    stamps = frame[ts]
    if not ptypes.is_datetime64_any_dtype(stamps):
        raise FeatureDefinitionError(
            f"event timestamp column {ts!r} must be a datetime column, not {stamps.dtype}"
        )
    if stamps.isna().any():
        raise FeatureDefinitionError(
            f"event timestamp column {ts!r} has {int(stamps.isna().sum())} missing values"
        )
    # Feast reads naive timestamps as UTC; say so explicitly in the file.
    if getattr(stamps.dtype, "tz", None) is None:
        stamps = stamps.dt.tz_localize("UTC")
    dupes = frame.duplicated([key, ts])
    if dupes.any():
        first = frame.loc[dupes, [key, ts]].iloc[0].tolist()
        raise FeatureDefinitionError(
            f"{int(dupes.sum())} rows repeat an ({key}, {ts}) pair, e.g. {first}; a point-in-time "
            "join needs one row per entity and timestamp"
        )
    tables: dict[str, pd.DataFrame] = {}
    for view in plan.views:
        for column in view.features:
            _check_dtype(frame, column)
        table = frame[[key, *view.features]].copy()
        # The array, not `to_numpy()`: that makes a million Timestamp objects of tz-aware times.
        table.insert(1, ts, stamps.array)
        for column in view.features:
            if isinstance(table[column].dtype, pd.CategoricalDtype):
                table[column] = table[column].astype("string")
        tables[view.name] = table.reset_index(drop=True)
    return tables
