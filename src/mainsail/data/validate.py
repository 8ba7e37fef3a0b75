"""Validation: check the loaded table against the config and profile it.

:func:`validate_frame` cleans what is safe to clean (exact duplicate rows, rows without a label),
parses timestamps, decides the problem type and the feature columns, and builds a
:class:`ValidationReport`. Blocking problems raise a :class:`~mainsail.data.errors.DataError`
whose message names the column and what was expected (the partial report rides along as
``err.report``); everything else becomes a warning in the report.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mainsail.config import ProblemType, ProjectConfig
from mainsail.core import columnwise
from mainsail.data.errors import (
    AllMissingColumnError,
    DataError,
    DuplicateRowsError,
    LeakageError,
    MissingColumnError,
    MixedTypesError,
    TargetError,
    TimestampError,
)
from mainsail.data.report import (
    ColumnProfile,
    Issue,
    Kind,
    LeakageSuspect,
    Role,
    Severity,
    ValidationReport,
)

#: A single feature whose cross-validated score reaches this is a leakage suspect: a copy of
#: the target that is right on 97% of the rows scores a ROC AUC of about 0.97.
LEAKAGE_AUC = 0.95
LEAKAGE_R2 = 0.95
#: Rows used for the per-feature leakage probe (a seeded sample keeps it fast on big tables).
LEAKAGE_SAMPLE = 20_000
#: Integer targets with at most this many distinct values are treated as classes.
MAX_CLASSES_FOR_INT_TARGET = 20
#: Text columns with more distinct values than this share of rows look like identifiers.
ID_LIKE_UNIQUE_SHARE = 0.95
#: Distinct integers, one per row, spread over at most this many times the row count: a row
#: number that survived filtering (rows removed) and sorting (order changed).
ROW_INDEX_SPAN = 1.25
#: Column names that say "row number" (compared lower-case).
INDEX_NAMES = re.compile(
    r"^(unnamed: ?\d+|index|idx|row|rowid|row_id|rownum|row_num|"
    r"row_number|rownumber|rownames|obs|id|_id|level_0)$"
)
#: Values beyond this many IQRs outside the quartiles count as outliers in the report.
OUTLIER_IQR = 3.0


@dataclass
class ValidatedData:
    """The cleaned table and the decisions made about it."""

    frame: pd.DataFrame
    report: ValidationReport
    problem_type: ProblemType
    problem_type_detected: bool
    features: list[str]
    numeric: list[str]
    categorical: list[str]
    classes: list[Any] | None = None
    positive_class: Any = None
    notes: dict[str, Any] = field(default_factory=dict)


class _Checker:
    """Accumulates issues; raising attaches the partial report to the error."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report

    def note(self, severity: Severity, code: str, message: str, column: str | None = None) -> None:
        self.report.issues.append(
            Issue(severity=severity, code=code, message=message, column=column)
        )

    def fail(self, err: DataError) -> DataError:
        self.note("error", err.code, str(err), err.column)
        self.report.passed = False
        err.report = self.report
        return err


def _sensitive_columns(
    raw: pd.DataFrame, cfg: ProjectConfig, columns: list[str], check: _Checker
) -> dict[str, str]:
    """Column -> why it is sensitive: declared in `privacy.sensitive_columns` (those present),
    or detected as emails / phone numbers / card-like numbers in a sample of its text values.
    A detected key, target or timestamp column cannot be removed: a warning names it."""
    from mainsail.core.privacy import detect_kind

    privacy, data = cfg.privacy, cfg.data
    declared = "declared in privacy.sensitive_columns"
    found = {c: declared for c in privacy.sensitive_columns if c in columns}
    if not privacy.detect:
        return found
    keep = {data.target, data.entity_key, data.event_timestamp, data.label_timestamp}
    for name in columns:
        col = raw[name]
        if name in found or not _is_text(col):
            continue
        sample = col.dropna().head(privacy.detect_sample)
        hit = detect_kind(sample.astype(str).tolist(), privacy.detect_share)
        if hit is None:
            continue
        kind, share = hit
        what = {"email": "email addresses", "phone": "phone numbers", "card": "card numbers"}
        reason = f"detected: {what[kind]} in {share:.0%} of the sampled values"
        if name in keep:
            check.note(
                "warning",
                "sensitive_key",
                f"column {name!r} holds {what[kind]} but is the target, entity key or a "
                "timestamp, so it stays; give the data a surrogate column instead",
                name,
            )
            continue
        found[name] = reason
        check.note(
            "warning",
            "sensitive_column",
            f"column {name!r} removed: {reason} (privacy.detect); list it in "
            "privacy.sensitive_columns to say so, or set privacy.detect: false",
            name,
        )
    return found


def _suggest(name: str, columns: list[str]) -> str:
    match = difflib.get_close_matches(name, columns, n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def observations_without_duplicates(
    raw: pd.DataFrame, timestamp_columns: list[str]
) -> pd.DataFrame:
    """`raw` with `timestamp_columns` parsed to UTC as validation parses them (a value that
    does not parse raises the same DataError) and exact duplicate rows dropped; the rows are
    otherwise untouched (rows without a target stay). The Feast data stage writes these as
    feature observations after the data file passed validation."""
    frame = raw.copy(deep=False)
    check = _Checker(ValidationReport(source="", rows_loaded=len(raw), n_columns=0, target=""))
    for name in timestamp_columns:
        frame[name] = _parse_timestamps(frame[name], name, check)
    frame = frame.loc[~_exact_duplicates(frame)]
    return frame.reset_index(drop=True)


def _exact_duplicates(frame: pd.DataFrame, within: np.ndarray | None = None) -> np.ndarray:
    """Rows equal to an earlier row in every column (the first copy is not marked); with
    `within` (a mask that holds every copy of every duplicate), only those rows are compared.

    One 64-bit hash per row finds the candidates; only rows whose hash repeats are compared
    exactly, so a million distinct rows cost one hashing pass instead of a hash table per column.
    """
    mask = np.zeros(len(frame), dtype=bool)
    rows = np.arange(len(frame)) if within is None else np.flatnonzero(within)
    if not len(rows):
        return mask
    part = frame if within is None else frame.iloc[rows]
    hashes = pd.util.hash_pandas_object(part, index=False).to_numpy()
    candidates = pd.Series(hashes).duplicated(keep=False).to_numpy()
    if candidates.any():
        exact = part.iloc[np.flatnonzero(candidates)].duplicated(keep="first").to_numpy()
        mask[rows[np.flatnonzero(candidates)[exact]]] = True
    return mask


def _row_numbers(mask: np.ndarray, limit: int = 3) -> str:
    """1-based data row numbers (the first row after a CSV header is 1) of the first hits."""
    return ", ".join(str(i + 1) for i in np.flatnonzero(mask)[:limit])


def _preview(values: list[Any], limit: int = 3) -> str:
    return ", ".join(repr(v) for v in values[:limit])


def validate_frame(
    raw: pd.DataFrame,
    cfg: ProjectConfig,
    *,
    source: str = "",
    data_sha256: str = "",
    origin: str | None = None,
) -> ValidatedData:
    """Check and clean `raw` (as loaded) for the project `cfg`; see the module docstring.

    `origin`, when given, is recorded as the first (info) issue: where the file came from.
    """
    data = cfg.data
    columns = [str(c) for c in raw.columns]
    report = ValidationReport(
        source=source,
        data_sha256=data_sha256,
        rows_loaded=len(raw),
        n_columns=len(columns),
        target=data.target,
    )
    check = _Checker(report)
    if origin:
        check.note("info", "data_source", origin)

    # 1. Column names are unique, and the columns named by the config exist.
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise check.fail(
            DataError(
                f"column name(s) {', '.join(map(repr, repeated))} appear more than once in "
                f"{source or 'the data'}; expected unique column names",
                column=repeated[0],
            )
        )
    named: list[tuple[str, str]] = [("data.target", data.target)]
    for key in ("entity_key", "event_timestamp", "label_timestamp"):
        value = getattr(data, key)
        if value:
            named.append((f"data.{key}", value))
    named += [("data.categorical", c) for c in data.categorical or []]
    named += [("data.drop", c) for c in data.drop]
    named += [("data.allow_leakage_suspects", c) for c in data.allow_leakage_suspects]
    for key, name in named:
        if name not in columns:
            what = "target column" if key == "data.target" else f"column named by {key}"
            raise check.fail(
                MissingColumnError(
                    f"{what} {name!r} is not in {source or 'the data'}{_suggest(name, columns)}; "
                    f"the columns are: {', '.join(columns)}",
                    column=name,
                )
            )
    if data.target in data.drop:
        raise check.fail(
            TargetError(
                f"target column {data.target!r} is also listed in data.drop", column=data.target
            )
        )

    # 1b. Privacy: declared and detected sensitive columns leave the rows before any check
    # that could echo a value (profiles, previews, error messages).
    sensitive = _sensitive_columns(raw, cfg, columns, check)
    if sensitive:
        report.sensitive = sensitive
        for name in sensitive:
            col = raw[name]
            report.columns.append(
                ColumnProfile(
                    name=name,
                    dtype=str(col.dtype),
                    role="sensitive",
                    kind="categorical" if _is_text(col) else _kind(col, forced=False),
                    missing=int(col.isna().sum()),
                    missing_share=float(col.isna().mean()) if len(col) else 0.0,
                    unique=int(col.nunique(dropna=True)),
                )
            )
        raw = raw.drop(columns=list(sensitive))
        columns = [c for c in columns if c not in sensitive]

    frame = raw
    # 2. Columns with no value at all.
    missing = frame.isna().sum()
    dropped = set(data.drop)
    empty = [c for c in columns if missing[c] == len(frame) and c not in dropped]
    if empty:
        raise check.fail(
            AllMissingColumnError(
                f"column {empty[0]!r} has no values (all {len(frame)} rows are missing)"
                + (f"; so do {', '.join(map(repr, empty[1:]))}" if len(empty) > 1 else "")
                + "; fill it or list it under data.drop",
                column=empty[0],
            )
        )

    timestamp_cols = [c for c in (data.event_timestamp, data.label_timestamp) if c]
    # 3. Mixed types: text columns whose values are mostly numbers (or Python objects of
    # several types) mean a bad value slipped into a numeric column.
    for name in columns:
        if name in timestamp_cols or name in dropped:
            continue
        bad = _mixed_type_problem(frame[name])
        if bad:
            raise check.fail(MixedTypesError(f"column {name!r} {bad}", column=name))

    # 4. Timestamps parse completely.
    frame = frame.copy(deep=False)
    for name in timestamp_cols:
        frame[name] = _parse_timestamps(frame[name], name, check)
    if data.event_timestamp:
        n_nat = int(frame[data.event_timestamp].isna().sum())
        if n_nat:
            rows = _row_numbers(frame[data.event_timestamp].isna().to_numpy())
            raise check.fail(
                TimestampError(
                    f"column {data.event_timestamp!r} (data.event_timestamp) has {n_nat} missing "
                    f"value(s) (at data row(s) {rows}); every row needs an event time",
                    column=data.event_timestamp,
                )
            )

    # 5. Exact duplicate rows are dropped; conflicting entity+timestamp rows are an error.
    keys = (
        [data.entity_key, data.event_timestamp] if data.entity_key and data.event_timestamp else []
    )
    # Two equal rows share their entity and timestamp: with those configured, only the rows
    # whose key repeats are hashed (none, on a clean table) instead of every row's columns.
    shared = frame.duplicated(keys, keep=False).to_numpy() if keys else None
    dup_mask = _exact_duplicates(frame, within=shared)
    n_dup = int(dup_mask.sum())
    if n_dup:
        frame = frame.loc[~dup_mask]
        report.duplicate_rows_dropped = n_dup
        check.note(
            "warning",
            "duplicate_rows",
            f"{n_dup} exact duplicate row(s) removed (the first copy of each is kept)",
        )
    if shared is not None and shared.any():
        clash = np.zeros(len(frame), dtype=bool)
        candidates = np.flatnonzero(shared[~dup_mask])
        clash[candidates] = frame.iloc[candidates].duplicated(keys, keep=False).to_numpy()
        if clash.any():
            sample = frame.loc[clash, keys].head(1).iloc[0]
            raise check.fail(
                DuplicateRowsError(
                    f"{int(clash.sum())} rows share their ({data.entity_key}, "
                    f"{data.event_timestamp}) with another row but differ in other columns, "
                    f"e.g. {data.entity_key}={sample.iloc[0]!s} at {sample.iloc[1]!s}; "
                    "expected one row per entity and timestamp",
                    column=data.entity_key,
                )
            )

    # 6. Target: drop unlabeled rows, decide the problem type, check the classes.
    target = frame[data.target]
    no_label = target.isna().to_numpy()
    if no_label.any():
        frame = frame.loc[~no_label]
        report.missing_target_rows_dropped = int(no_label.sum())
        check.note(
            "warning",
            "missing_target",
            f"{int(no_label.sum())} row(s) without a value in target column {data.target!r} "
            "were removed",
            data.target,
        )
    if not frame.index.equals(pd.RangeIndex(len(frame))):
        frame = frame.reset_index(drop=True)  # (a copy of every column: only when needed)
    report.rows = len(frame)
    target = frame[data.target]
    if isinstance(target.dtype, pd.CategoricalDtype):
        # Plain labels are simpler for every model library than a categorical target.
        target = target.astype(target.cat.categories.dtype)
        frame[data.target] = target
    problem_type, detected, why = _problem_type(target, data.problem_type)
    report.problem_type, report.problem_type_detected = problem_type, detected
    report.problem_type_reason = why
    check.note("info", "problem_type", f"problem type: {problem_type} ({why})", data.target)

    classes: list[Any] | None = None
    positive: Any = None
    if problem_type == "classification":
        counts = target.value_counts(sort=False)
        counts = counts[counts > 0].sort_index()
        classes = [_native(v) for v in counts.index]
        if len(classes) < 2:
            only = classes[0] if classes else None
            raise check.fail(
                TargetError(
                    f"target column {data.target!r} has a single class ({only!r} in all "
                    f"{len(frame)} rows); classification needs at least two classes",
                    column=data.target,
                )
            )
        report.classes = [str(c) for c in classes]
        report.class_balance = {str(k): int(v) for k, v in counts.items()}
        report.minority_share = float(counts.min() / counts.sum())
        if len(classes) == 2:
            positive = _positive_class(classes, counts, data.positive_class, data.target, check)
            report.positive_class = str(positive)
            report.positive_class_reason = (
                "data.positive_class"
                if data.positive_class is not None
                else "the minority class (data.positive_class is not set)"
            )
            # The positive class last: column 1 of every probability output is its probability,
            # and every metric of the positive class (PR AUC, F1, ...) is computed for it.
            classes = [c for c in classes if c != positive] + [positive]
            report.classes = [str(c) for c in classes]
        rare = counts[counts < 5]
        if len(rare):
            check.note(
                "warning",
                "rare_class",
                f"class(es) {', '.join(map(str, rare.index))} of {data.target!r} have fewer than "
                "5 rows; splits and metrics for them will be unreliable",
                data.target,
            )
        if report.minority_share < cfg.imbalance.threshold:
            check.note(
                "warning",
                "class_imbalance",
                f"minority class share is {report.minority_share:.1%} "
                f"(below imbalance.threshold {cfg.imbalance.threshold:.0%})",
                data.target,
            )
    else:
        if not pd.api.types.is_numeric_dtype(target.dtype) or pd.api.types.is_bool_dtype(
            target.dtype
        ):
            raise check.fail(
                TargetError(
                    f"target column {data.target!r} has dtype {target.dtype} but regression "
                    "needs numbers; set data.problem_type to classification or fix the column",
                    column=data.target,
                )
            )
        values = target.to_numpy(dtype=np.float64)
        if np.nanmin(values) == np.nanmax(values):
            raise check.fail(
                TargetError(
                    f"target column {data.target!r} is constant ({values[0]!r} in all rows); "
                    "there is nothing to predict",
                    column=data.target,
                )
            )
        report.target_stats = {
            "min": float(values.min()),
            "max": float(values.max()),
            "mean": float(values.mean()),
            "std": float(values.std()),
        }

    # 7. Roles, kinds, profiles; constant and ID-like columns are excluded from the features.
    roles: dict[str, Role] = {}
    for name in columns:
        if name == data.target:
            roles[name] = "target"
        elif name == data.entity_key:
            roles[name] = "entity_key"
        elif name == data.event_timestamp:
            roles[name] = "event_timestamp"
        elif name == data.label_timestamp:
            roles[name] = "label_timestamp"
        elif name in data.drop:
            roles[name] = "dropped"
        else:
            roles[name] = "feature"
    forced_cat = set(data.categorical or [])
    numeric: list[str] = []
    categorical: list[str] = []
    features: list[str] = []
    n = len(frame)
    # The columns' profiles are independent: one sort each, on every core for a long table.
    cols = {name: frame[name] for name in columns}
    kinds = {name: _kind(cols[name], forced=name in forced_cat) for name in columns}
    profiles = columnwise.map_columns(
        lambda name: _profile(cols[name], name, kinds[name], roles[name], n), columns, rows=n
    )
    for name, prof in zip(columns, profiles, strict=True):
        col, kind = cols[name], kinds[name]
        if roles[name] == "feature":
            reason: str | None = None
            if kind == "datetime":
                reason = "datetime column that is not the event timestamp"
            elif prof.constant:
                reason = f"constant (a single value: {_first_value(col)!r})"
            elif prof.id_like:
                reason = f"looks like an identifier ({prof.unique} distinct values in {n} rows)"
            if reason:
                prof.role = "excluded"
                report.excluded[name] = reason
                severity: Severity = "info" if kind == "datetime" else "warning"
                check.note(severity, "excluded_column", f"column {name!r} excluded: {reason}", name)
            else:
                features.append(name)
                (categorical if kind == "categorical" else numeric).append(name)
                if prof.outliers:
                    check.note(
                        "warning",
                        "outliers",
                        f"column {name!r} has {prof.outliers} outlier(s) beyond {OUTLIER_IQR:g} "
                        f"IQRs (range {prof.min:g} .. {prof.max:g})",
                        name,
                    )
                if prof.missing_share > 0.5:
                    check.note(
                        "warning",
                        "mostly_missing",
                        f"column {name!r} is {prof.missing_share:.0%} missing",
                        name,
                    )
        report.columns.append(prof)
    if not features:
        raise check.fail(
            DataError(
                "no usable feature column is left after removing the target, keys, timestamps, "
                f"data.drop and excluded columns ({', '.join(report.excluded) or 'none'})"
            )
        )
    report.features, report.numeric, report.categorical = features, numeric, categorical

    # 8. Leakage suspects: label time before event time; a single feature that predicts it all.
    if data.event_timestamp and data.label_timestamp:
        after = int((frame[data.event_timestamp] > frame[data.label_timestamp]).sum())
        report.timestamp_after_label_rows = after
        if after:
            check.note(
                "warning",
                "timestamp_after_label",
                f"{after} row(s) have {data.event_timestamp!r} after {data.label_timestamp!r}: "
                "their features were observed after the label was known (leakage suspect)",
                data.event_timestamp,
            )
    report.leakage = _leakage_suspects(
        frame, features, categorical, data.target, problem_type, cfg.seed
    )
    allowed = set(data.allow_leakage_suspects)
    for sus in report.leakage:
        sus.allowed = sus.column in allowed
        check.note(
            "warning",
            "leakage_suspect",
            f"column {sus.column!r} alone predicts {data.target!r} almost perfectly "
            f"({sus.metric} {sus.score:.4f} on held-out rows): target leakage suspect"
            + ("; kept as a feature (data.allow_leakage_suspects)" if sus.allowed else ""),
            sus.column,
        )
    refused = [s for s in report.leakage if not s.allowed]
    if refused:
        names = ", ".join(f"{s.column!r} ({s.metric} {s.score:.3f})" for s in refused)
        first = refused[0].column
        raise check.fail(
            LeakageError(
                f"target leakage suspect: column {names} alone predicts {data.target!r} almost "
                f"perfectly on held-out rows (threshold {LEAKAGE_AUC:g} ROC AUC / balanced "
                f"accuracy, {LEAKAGE_R2:g} R2). A feature that encodes the outcome makes a "
                f"model that fails in production. Drop it (data.drop: [{first}]) or, if it "
                f"is truly known at prediction time, allow it "
                f"(data.allow_leakage_suspects: [{first}])",
                column=first,
            )
        )

    report.passed = True
    return ValidatedData(
        frame=frame,
        report=report,
        problem_type=problem_type,
        problem_type_detected=detected,
        features=features,
        numeric=numeric,
        categorical=categorical,
        classes=classes,
        positive_class=positive,
    )


# --------------------------------------------------------------------------- helpers


def _native(value: Any) -> Any:
    """numpy scalars → Python scalars (JSON-safe, stable dict keys)."""
    return value.item() if isinstance(value, np.generic) else value


def _first_value(col: pd.Series) -> Any:
    values = col.dropna()
    return _native(values.iloc[0]) if len(values) else None


def _is_text(col: pd.Series) -> bool:
    dtype = col.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return True
    return pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)


def _distinct_text_values(col: pd.Series) -> pd.Index:
    if isinstance(col.dtype, pd.CategoricalDtype):
        codes = col.cat.codes.to_numpy()
        seen = np.bincount(codes[codes >= 0], minlength=len(col.cat.categories)) > 0
        return col.cat.categories[seen]
    return pd.Index(col.dropna().unique())


def _mixed_type_problem(col: pd.Series) -> str | None:
    """Describe a mix of numbers and text in `col`, or None when its values are consistent."""
    if not _is_text(col):
        return None
    values = _distinct_text_values(col)
    if len(values) == 0:
        return None
    types = {type(v) for v in values}
    if len(types) > 1 and not types <= {int, float, np.int64, np.float64}:
        names = ", ".join(sorted(t.__name__ for t in types))
        return f"holds values of several types ({names}); expected one type per column"
    as_text = values.astype(str)
    numbers = pd.to_numeric(pd.Series(as_text), errors="coerce")
    numeric_share = float(numbers.notna().mean())
    if 0.5 <= numeric_share < 1.0:
        bad_values = list(as_text[numbers.isna().to_numpy()])
        rows = _row_numbers(col.astype(object).isin(bad_values[:3]).to_numpy())
        return (
            f"mixes numbers and text: {len(bad_values)} of its {len(values)} distinct values "
            f"are not numbers ({_preview(bad_values)}; at data row(s) {rows}); "
            "expected numbers only (use an empty cell for a missing value)"
        )
    return None


def _parse_timestamps(col: pd.Series, name: str, check: _Checker) -> pd.Series:
    """Parse a timestamp column to UTC datetimes; unparseable values are an error."""
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        if getattr(col.dtype, "tz", None) is None:
            return col.dt.tz_localize("UTC")
        return col.dt.tz_convert("UTC")
    if pd.api.types.is_numeric_dtype(col.dtype) and not _is_text(col):
        raise check.fail(
            TimestampError(
                f"column {name!r} holds numbers (dtype {col.dtype}), expected timestamps "
                "(ISO 8601 text such as 2024-01-31T12:00:00Z, or a datetime column)",
                column=name,
            )
        )
    # Parse the distinct values only (a categorical keeps them once), then map back.
    distinct = _distinct_text_values(col).astype(str)
    parsed = pd.to_datetime(pd.Series(distinct), errors="coerce", utc=True, format="ISO8601")
    if parsed.isna().any():
        # Not all ISO 8601: allow mixed formats before calling a value unparseable.
        parsed = pd.to_datetime(pd.Series(distinct), errors="coerce", utc=True, format="mixed")
    bad = list(distinct[parsed.isna().to_numpy()])
    if bad:
        as_text = col.astype(object)
        rows = _row_numbers(as_text.isin(bad[:3]).to_numpy())
        raise check.fail(
            TimestampError(
                f"column {name!r}: {len(bad)} distinct value(s) cannot be parsed as timestamps "
                f"({_preview(bad)}; at data row(s) {rows}); expected ISO 8601 such as "
                "2024-01-31T12:00:00Z",
                column=name,
            )
        )
    lookup = pd.Series(parsed.to_numpy(), index=distinct)
    if isinstance(col.dtype, pd.CategoricalDtype):
        # Map each category once, then spread by the codes (-1, a missing value, gives NaT).
        cats = pd.DatetimeIndex(lookup.reindex(col.cat.categories.astype(str)).to_numpy())
        values = cats.take(col.cat.codes.to_numpy(), allow_fill=True, fill_value=pd.NaT)
        return pd.Series(values, index=col.index, name=name)
    mapped = (
        col.astype(object)
        .where(col.notna(), None)
        .map(lambda v: lookup[str(v)] if v is not None else pd.NaT)
    )
    return pd.to_datetime(mapped, utc=True)


def _problem_type(
    target: pd.Series, configured: ProblemType | None
) -> tuple[ProblemType, bool, str]:
    if configured is not None:
        return configured, False, "set in the config: data.problem_type"
    dtype = target.dtype
    if pd.api.types.is_bool_dtype(dtype) or _is_text(target):
        return "classification", True, f"the target holds labels (dtype {dtype})"
    values = target.to_numpy(dtype=np.float64)
    n_unique = int(pd.Series(values).nunique())
    if not np.all(np.mod(values, 1.0) == 0.0):
        return "regression", True, "the target holds non-integer numbers"
    if n_unique <= MAX_CLASSES_FOR_INT_TARGET:
        return (
            "classification",
            True,
            f"the target holds {n_unique} distinct integer values "
            f"(at most {MAX_CLASSES_FOR_INT_TARGET} are read as classes)",
        )
    return "regression", True, f"the target holds {n_unique} distinct integer values"


def _positive_class(
    classes: list[Any], counts: pd.Series, configured: Any, target: str, check: _Checker
) -> Any:
    if configured is None:
        # The minority class; a tie goes to the larger label (1 over 0, "yes" over "no").
        if int(counts.iloc[0]) == int(counts.iloc[1]):
            return classes[1]
        return _native(counts.idxmin())
    bool_labels = all(isinstance(c, bool | np.bool_) for c in classes)
    for label in classes:
        if isinstance(configured, bool) != bool(bool_labels):
            break  # `true` names a boolean label only (never 1 nor "True")
        if label == configured or str(label) == str(configured):
            return label
    hint = ""
    if isinstance(configured, bool) and not bool_labels:
        hint = (
            f"; YAML reads an unquoted yes/no/on/off/true/false as the boolean {configured}: "
            'quote the label, e.g. positive_class: "yes"'
        )
    raise check.fail(
        TargetError(
            f"data.positive_class {configured!r} is not a class of target column {target!r}; "
            f"its classes are {', '.join(map(repr, classes))}{hint}",
            column=target,
        )
    )


def _kind(col: pd.Series, *, forced: bool) -> Kind:
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        return "datetime"
    if forced or _is_text(col):
        return "categorical"
    if pd.api.types.is_bool_dtype(col.dtype):
        return "boolean"
    return "numeric"


def _profile(col: pd.Series, name: str, kind: Kind, role: Role, n: int) -> ColumnProfile:
    ordered: np.ndarray | None = None
    counts: pd.Series | None = None
    if kind == "numeric" and isinstance(col.dtype, np.dtype) and col.dtype.kind in "iuf":
        # One sort gives the distinct count (as `nunique`), the quartiles and the outliers,
        # instead of a hash table and a partition per column.
        observed = col.to_numpy()
        missing = 0
        if observed.dtype.kind == "f":
            nan = np.isnan(observed)
            missing = int(nan.sum())
            if missing:
                observed = observed[~nan]
        # The observed values in row order, as float64, for the mean and std: the same numbers
        # in the same order as the column's float64 copy without its missing values.
        in_row_order = observed.astype(np.float64)
        if missing:  # `observed` is this function's own copy: sorted in place
            observed.sort()
            ordered = observed
        else:
            ordered = np.sort(observed)
        unique = int(np.count_nonzero(ordered[1:] != ordered[:-1])) + 1 if len(ordered) else 0
    elif isinstance(col.dtype, pd.CategoricalDtype):
        missing = int(col.isna().sum())
        counts = col.value_counts(dropna=True)
        unique = int((counts > 0).sum())
    else:
        missing = int(col.isna().sum())
        unique = int(col.nunique(dropna=True))
    prof = ColumnProfile(
        name=name,
        dtype=str(col.dtype),
        role=role,
        kind=kind,
        missing=missing,
        missing_share=missing / n if n else 0.0,
        unique=unique,
        constant=unique <= 1,
    )
    if kind in ("numeric", "boolean") and unique:
        if ordered is not None:
            values = in_row_order
        else:
            values = col.to_numpy(dtype=np.float64, na_value=np.nan)
            values = values[~np.isnan(values)]
        prof.min, prof.max = float(values.min()), float(values.max())
        prof.mean, prof.std = float(values.mean()), float(values.std())
        if kind == "numeric":
            if ordered is None:
                ordered = np.sort(values)
            ordered = ordered.astype(np.float64, copy=False)
            q1, q3 = sorted_quantile(ordered, 0.25), sorted_quantile(ordered, 0.75)
            iqr = q3 - q1
            if iqr > 0:
                low, high = q1 - OUTLIER_IQR * iqr, q3 + OUTLIER_IQR * iqr
                below = int(np.searchsorted(ordered, low, side="left"))
                above = len(ordered) - int(np.searchsorted(ordered, high, side="right"))
                prof.outliers = below + above
            else:
                prof.outliers = 0
            prof.id_like = _row_index_like(col, name, values, unique, n)
    elif kind == "categorical":
        top = (col.value_counts(dropna=True) if counts is None else counts).head(10)
        prof.top_values = {str(k): int(v) for k, v in top.items() if v > 0}
        prof.id_like = n >= 20 and unique > ID_LIKE_UNIQUE_SHARE * n
    elif kind == "datetime" and unique:
        prof.first, prof.last = col.min().isoformat(), col.max().isoformat()
    return prof


def sorted_quantile(ordered: np.ndarray, q: float) -> float:
    """`np.quantile(ordered, q)` (its default, linear method) of sorted, non-empty float64
    values, to the bit, read from the two order statistics around it: np.quantile does not
    know the values are sorted and partitions a copy of them (4-7 ms a million values, about a
    quarter of a numeric column's profile). Same arithmetic as numpy's: index (n - 1) * q,
    weight its fractional part, interpolated from the nearer side."""
    n = len(ordered)
    virtual = (n - 1) * q
    # At the top numpy reads the last value on both sides (whose weight then does not matter,
    # unless the value is infinite: inf - inf is NaN there as here).
    if virtual >= n - 1:
        below = above = n - 1
    else:
        below = math.floor(virtual)
        above = below + 1
    a, b = float(ordered[below]), float(ordered[above])
    gamma = virtual - below
    diff = b - a
    return b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma


_HEAD = 1024
"""Values a whole-column test looks at first, when those alone can decide it."""


def _row_index_like(col: pd.Series, name: str, values: np.ndarray, unique: int, n: int) -> bool:
    """A row number or surrogate key, even after rows were filtered out or the file re-sorted:
    integers, (nearly) one per row, and either densely packed (span at most ROW_INDEX_SPAN
    times the rows), in file order (monotone), or named like an index."""
    if n < 20 or len(values) < n:
        return False
    if unique != n and unique < ID_LIKE_UNIQUE_SHARE * n:
        return False  # (whatever the values: checked first because it costs nothing)
    # A fraction among the first values settles it for a measured quantity (a float column
    # with no missing value: 20 ms a million values for the whole column's np.mod).
    if not np.all(np.mod(values[:_HEAD], 1.0) == 0.0) or not np.all(np.mod(values, 1.0) == 0.0):
        return False
    if pd.api.types.is_bool_dtype(col.dtype):
        return False
    if unique == n and float(values.max() - values.min()) + 1 <= ROW_INDEX_SPAN * n:
        return True
    if unique < ID_LIKE_UNIQUE_SHARE * n:
        return False
    if col.is_monotonic_increasing or col.is_monotonic_decreasing:
        return True
    return bool(INDEX_NAMES.match(name.strip().lower()))


def _leakage_suspects(
    frame: pd.DataFrame,
    features: list[str],
    categorical: list[str],
    target: str,
    problem_type: ProblemType,
    seed: int,
) -> list[LeakageSuspect]:
    """Score each feature alone on held-out rows (2-fold, seeded sample of the rows).

    The one-feature model is a lookup table: numeric values are cut into quantile bins (learned
    on the fitting fold, missing values get their own bin), categories are their own bins, and
    each bin predicts the fitting fold's mean target (class frequencies for multiclass). That
    catches non-monotonic give-aways, costs a few numpy passes per feature, and a
    high-cardinality column gains nothing from memorising rows because it is scored on the
    other fold.
    """
    rng = np.random.default_rng(seed)
    n = len(frame)
    rows = np.sort(rng.choice(n, LEAKAGE_SAMPLE, replace=False)) if n > LEAKAGE_SAMPLE else None
    sample = frame.iloc[rows] if rows is not None else frame
    y_raw = sample[target]
    if problem_type == "classification":
        y_codes, uniques = pd.factorize(y_raw, sort=True)
        n_classes = len(uniques)
        if n_classes < 2:
            return []
        # One indicator column per class (binary: the second class only).
        targets = (
            (y_codes == 1).astype(np.float64)[:, None]
            if n_classes == 2
            else np.eye(n_classes)[y_codes]
        )
    else:
        targets = y_raw.to_numpy(dtype=np.float64)[:, None]
        n_classes = 0
    fold = rng.permutation(len(sample)) % 2
    n_bins = max(2, min(64, len(sample) // 40))
    suspects: list[LeakageSuspect] = []
    for name in features:
        col = sample[name]
        if name in categorical:
            codes = pd.factorize(col.astype(object), use_na_sentinel=True)[0]
            codes = np.where(codes < 0, codes.max() + 1, codes)
        else:
            codes = np.zeros(len(sample), dtype=np.int64)
        pred = np.empty_like(targets)
        for k in (0, 1):
            fit_rows, eval_rows = fold != k, fold == k
            if name not in categorical:
                x = col.to_numpy(dtype=np.float64, na_value=np.nan)
                fit_x = x[fit_rows][~np.isnan(x[fit_rows])]
                edges = (
                    np.unique(np.quantile(fit_x, np.linspace(0, 1, n_bins + 1)[1:-1]))
                    if len(fit_x)
                    else np.array([])
                )
                codes = np.where(
                    np.isnan(x), len(edges) + 1, np.searchsorted(edges, x, side="right")
                )
            size = int(codes.max()) + 1
            counts = np.bincount(codes[fit_rows], minlength=size).astype(np.float64)
            prior = targets[fit_rows].mean(axis=0)
            for c in range(targets.shape[1]):
                sums = np.bincount(codes[fit_rows], weights=targets[fit_rows, c], minlength=size)
                means = np.where(counts > 0, sums / np.maximum(counts, 1.0), prior[c])
                pred[eval_rows, c] = means[codes[eval_rows]]
        if n_classes == 2:
            score, metric, limit = _roc_auc(targets[:, 0], pred[:, 0]), "roc_auc", LEAKAGE_AUC
        elif n_classes > 2:
            score = _balanced_accuracy(y_codes, pred.argmax(axis=1), n_classes)
            metric, limit = "balanced_accuracy", LEAKAGE_AUC
        else:
            y = targets[:, 0]
            total = float(((y - y.mean()) ** 2).sum())
            score = 1.0 - float(((y - pred[:, 0]) ** 2).sum()) / total if total > 0 else 0.0
            metric, limit = "r2", LEAKAGE_R2
        if score >= limit:
            suspects.append(LeakageSuspect(column=name, metric=metric, score=round(score, 6)))
    return suspects


def _roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    positives = y == 1
    n1 = int(positives.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return 0.5
    ranks = pd.Series(score).rank(method="average").to_numpy()
    return float((ranks[positives].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    recalls = [float((pred[y == c] == c).mean()) for c in range(n_classes) if (y == c).any()]
    return float(np.mean(recalls))
