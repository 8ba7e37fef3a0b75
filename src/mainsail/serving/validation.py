"""Turn V2 request inputs into the model's feature frame, validating them against its schema.

The request layout (Open Inference Protocol V2, REST or gRPC):

* **raw features** — one input per feature, named as in the feature schema, shape `[n]` or
  `[n, 1]` (n rows), datatype `FP64`/`FP32`/`INT*`/`UINT*` for numeric features, `BYTES` for
  categorical ones, `BOOL` for boolean ones; `null` marks a missing value where the schema
  allows one. Every feature must be present; order does not matter.
* **feature matrix** (all-numeric models only) — a single numeric input named `features` of
  shape `[n, k]`, columns in the schema's feature order; `parameters.columns`, when given,
  must list exactly those names in that order.
* **entity keys** — a single `BYTES` (or `INT64`) input named as the schema's entity key; the
  runtime then fetches the features from the Feast feature server.

Every problem raises :class:`RequestError` with a message naming the input (and row) at fault;
the runtime turns it into HTTP 400 / gRPC INVALID_ARGUMENT. Pure numpy/pandas: no MLServer here,
so it is unit-tested in any env.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

from mainsail.data.schema import FeatureSchema, FeatureSpec

NUMERIC_TYPES = frozenset(
    {
        "FP16",
        "FP32",
        "FP64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
    }
)
_KIND_TYPES: dict[str, frozenset[str]] = {
    "numeric": NUMERIC_TYPES,
    "categorical": frozenset({"BYTES"}),
    "boolean": frozenset({"BOOL"}),
}
_EXPECTED = {"numeric": "FP64, FP32 or INT64", "categorical": "BYTES", "boolean": "BOOL"}
_SHOW = 8
MATRIX_INPUT = "features"  # categories / names listed in an error before "..."


class RequestError(ValueError):
    """A request that does not fit the model's input contract; the message names the field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class TensorIn:
    """One V2 input, independent of MLServer's types."""

    name: str
    shape: Sequence[int]
    datatype: str
    data: Any
    parameters: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class EntityRequest:
    """A request that names entities instead of sending features."""

    key: str
    ids: list[Any]


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(repr(i) for i in items[:_SHOW])
    return shown + (f", ... ({len(items)} in all)" if len(items) > _SHOW else "")


def _suggest(word: str, choices: Sequence[str]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def _rows(t: TensorIn, max_rows: int) -> int:
    shape = list(t.shape)
    if not shape or len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
        raise RequestError(
            f"input {t.name!r} has shape {shape}; expected [rows] or [rows, 1] "
            "(one input per feature)",
            t.name,
        )
    n = shape[0]
    if not isinstance(n, int) or n < 1:
        raise RequestError(f"input {t.name!r} has shape {shape}; rows must be at least 1", t.name)
    if n > max_rows:
        raise RequestError(
            f"input {t.name!r} has {n} rows; this server takes at most {max_rows} per request",
            t.name,
        )
    return n


def _flatten(t: TensorIn, n: int) -> list[Any]:
    data = t.data
    if isinstance(data, np.ndarray):
        data = data.tolist()
    if not isinstance(data, list):
        data = [data]
    if data and isinstance(data[0], list):
        if set(map(type, data)) == {list}:
            # Every row a list (the usual [n, k] body): joined in C, about half the cost of a
            # Python loop over the rows for 32 iris rows.
            data = list(chain.from_iterable(data))
        else:  # rows given as lists and as plain values
            data = [v for item in data for v in (item if isinstance(item, list) else (item,))]
        if list in set(map(type, data)):
            raise RequestError(f"input {t.name!r}: data is nested too deeply", t.name)
    if len(data) != n:
        raise RequestError(
            f"input {t.name!r}: shape {list(t.shape)} needs {n} values, got {len(data)}", t.name
        )
    return data


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _numeric(spec: FeatureSpec, values: list[Any], name: str) -> np.ndarray:
    try:
        # Fast path: a clean list of numbers converts in one call.
        arr = np.asarray(values, dtype=np.float64)
        clean = arr.ndim == 1 and not any(isinstance(v, bool | str | bytes) for v in values)
    except (TypeError, ValueError):
        clean = False
    if not clean:
        arr = np.empty(len(values), dtype=np.float64)
        for i, value in enumerate(values):
            if value is None:
                arr[i] = np.nan
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise RequestError(
                    f"feature {name!r} is numeric; row {i} holds {value!r} "
                    f"({type(value).__name__})",
                    name,
                )
            else:
                arr[i] = float(value)
    bad = np.isinf(arr)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise RequestError(f"feature {name!r}: row {row} is not a finite number", name)
    nan = np.isnan(arr)
    if not spec.nullable and nan.any():
        row = int(np.flatnonzero(nan)[0])
        raise RequestError(
            f"feature {name!r}: row {row} is missing (null/NaN), which this feature does not allow",
            name,
        )
    return arr


def _categorical(spec: FeatureSpec, values: list[Any], name: str) -> list[Any]:
    allowed = None if spec.open_vocabulary or spec.categories is None else set(spec.categories)
    out: list[Any] = []
    for i, value in enumerate(values):
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                raise RequestError(
                    f"feature {name!r}: row {i} is not valid UTF-8 text", name
                ) from None
        if value is None:
            if not spec.nullable:
                raise RequestError(
                    f"feature {name!r}: row {i} is missing, which this feature does not allow",
                    name,
                )
            out.append(pd.NA)
            continue
        if not isinstance(value, str):
            raise RequestError(
                f"feature {name!r} is categorical (BYTES); row {i} holds {value!r} "
                f"({type(value).__name__})",
                name,
            )
        if allowed is not None and value not in allowed:
            cats = spec.categories or []
            raise RequestError(
                f"feature {name!r}: row {i} value {value!r} is not a known category"
                f"{_suggest(value, cats)}; expected one of {_listing(cats)}",
                name,
            )
        out.append(value)
    return out


def _boolean(spec: FeatureSpec, values: list[Any], name: str) -> list[Any]:
    out: list[Any] = []
    for i, value in enumerate(values):
        if value is None:
            if not spec.nullable:
                raise RequestError(
                    f"feature {name!r}: row {i} is missing, which this feature does not allow",
                    name,
                )
            out.append(pd.NA)
        elif isinstance(value, bool):
            out.append(value)
        else:
            raise RequestError(f"feature {name!r} is boolean (BOOL); row {i} holds {value!r}", name)
    return out


def _column(spec: FeatureSpec, values: list[Any]) -> pd.Series:
    """A column with the dtype the model saw in training (pandas nullable types kept)."""
    return _series(spec, _validated(spec, values))


def _validated(spec: FeatureSpec, values: list[Any]) -> np.ndarray | list[Any]:
    """A feature's values checked against its spec: float64 (NaN = missing) for a numeric
    feature, a list (pandas.NA = missing) for a categorical or boolean one."""
    if spec.kind == "numeric":
        return _numeric(spec, values, spec.name)
    if spec.kind == "categorical":
        return _categorical(spec, values, spec.name)
    return _boolean(spec, values, spec.name)


def _series(spec: FeatureSpec, values: np.ndarray | list[Any]) -> pd.Series:
    if spec.kind == "numeric":
        return _column_from(spec, np.asarray(values))
    if spec.kind == "categorical":
        dtype = "string" if spec.dtype in ("string", "str") else "object"
        return pd.Series(values, dtype=dtype, name=spec.name)
    return pd.Series(values, dtype="boolean", name=spec.name)


def decode(
    inputs: Sequence[TensorIn],
    schema: FeatureSchema,
    *,
    max_rows: int = 10_000,
    as_matrix: bool = False,
    feed_values: list[list[Any]] | None = None,
) -> pd.DataFrame | np.ndarray | EntityRequest:
    """The feature frame (columns in schema order) or the entity ids a request carries.

    With `as_matrix` and an all-numeric schema, the features come back as one float64
    [rows, features] array instead (same checks; no per-column pandas objects).

    `feed_values`, when given and the features come back as a DataFrame of per-feature inputs,
    receives each feature's checked values as a Python list, in schema order (missing: NaN or
    pandas.NA): the drift feed's rows, without reading the new frame back column by column.
    """
    names = schema.names
    if not inputs:
        raise RequestError(
            f"the request has no inputs; send one input per feature ({_listing(names)})"
            + (f" or the entity key {schema.entity_key!r}" if schema.entity_key else "")
        )
    if len(inputs) == 1 and inputs[0].name == MATRIX_INPUT and MATRIX_INPUT not in names:
        return _matrix(inputs[0], schema, max_rows, as_matrix)
    by_name: dict[str, TensorIn] = {}
    for t in inputs:
        if t.name in by_name:
            raise RequestError(f"input {t.name!r} appears more than once", t.name)
        if t.name not in names and t.name != schema.entity_key:
            raise RequestError(
                f"input {t.name!r} is not a feature of this model{_suggest(t.name, names)}; "
                f"expected {_listing(names)}",
                t.name,
            )
        by_name[t.name] = t

    features_sent = [n for n in names if n in by_name]
    key = schema.entity_key
    if key is not None and key in by_name and not features_sent:
        t = by_name[key]
        n = _rows(t, max_rows)
        if t.datatype not in ("BYTES", "INT64", "INT32"):
            raise RequestError(
                f"input {key!r} (entity key) has datatype {t.datatype}; expected BYTES or INT64",
                key,
            )
        ids = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in _flatten(t, n)]
        if any(v is None or isinstance(v, float | bool | list) for v in ids):
            raise RequestError(f"input {key!r}: entity ids must be strings or integers", key)
        return EntityRequest(key, ids)

    missing = [n for n in names if n not in by_name]
    if missing:
        raise RequestError(
            f"missing feature input(s) {_listing(missing)}; send every feature "
            f"({len(names)} in all)" + (f" or only the entity key {key!r}" if key else ""),
            missing[0],
        )
    rows: int | None = None
    first = ""
    columns: dict[str, pd.Series] = {}
    matrix = as_matrix and all(spec.kind == "numeric" for spec in schema.features)
    arrays: list[np.ndarray] = []
    for spec in schema.features:
        t = by_name[spec.name]
        allowed = _KIND_TYPES[spec.kind]
        if t.datatype not in allowed:
            raise RequestError(
                f"input {spec.name!r} has datatype {t.datatype}; feature {spec.name!r} is "
                f"{spec.kind}, expected {_EXPECTED[spec.kind]}",
                spec.name,
            )
        n = _rows(t, max_rows)
        if rows is None:
            rows, first = n, spec.name
        elif n != rows:
            raise RequestError(
                f"input {spec.name!r} has {n} rows but {first!r} has {rows}; "
                "every feature needs the same number of rows",
                spec.name,
            )
        if matrix:
            arrays.append(_numeric(spec, _flatten(t, n), spec.name))
            continue
        values = _validated(spec, _flatten(t, n))
        columns[spec.name] = _series(spec, values)
        if feed_values is not None:
            feed_values.append(values.tolist() if isinstance(values, np.ndarray) else values)
    if matrix:
        return np.column_stack(arrays)
    return pd.DataFrame(columns)


def _matrix(
    t: TensorIn, schema: FeatureSchema, max_rows: int, as_matrix: bool
) -> pd.DataFrame | np.ndarray:
    names = schema.names
    k = len(names)
    if any(spec.kind != "numeric" for spec in schema.features):
        raise RequestError(
            f"input {t.name!r}: the matrix layout is for all-numeric models; this model has "
            "categorical or boolean features, send one input per feature",
            t.name,
        )
    if t.datatype not in NUMERIC_TYPES:
        raise RequestError(f"input {t.name!r} has datatype {t.datatype}; expected FP64", t.name)
    shape = list(t.shape)
    if len(shape) != 2 or shape[1] != k or not isinstance(shape[0], int) or shape[0] < 1:
        raise RequestError(
            f"input {t.name!r} has shape {shape}; expected [rows, {k}] (one column per feature)",
            t.name,
        )
    n = shape[0]
    if n > max_rows:
        raise RequestError(
            f"input {t.name!r} has {n} rows; this server takes at most {max_rows} per request",
            t.name,
        )
    columns = (t.parameters or {}).get("columns")
    if columns is not None and list(columns) != names:
        raise RequestError(
            f"input {t.name!r}: parameters.columns {columns!r} must be {names!r} (in order)",
            t.name,
        )
    flat = _flatten(TensorIn(t.name, [n * k], t.datatype, t.data), n * k)
    fast = _clean_matrix(flat, schema, n, k)
    if fast is not None:
        arrays = [fast[:, j] for j in range(k)]
    else:  # something is wrong: the per-column checks find it and name it
        arrays = [_numeric(spec, flat[j::k], spec.name) for j, spec in enumerate(schema.features)]
    if as_matrix:
        return fast if fast is not None else np.column_stack(arrays)
    return pd.DataFrame(
        {spec.name: _column_from(spec, a) for spec, a in zip(schema.features, arrays, strict=True)}
    )


_PLAIN_VALUES = frozenset({float, int, type(None)})


def _clean_matrix(flat: list[Any], schema: FeatureSchema, n: int, k: int) -> np.ndarray | None:
    """The [n, k] array when every value is a finite number (NaN only where nullable); None
    sends the request to the per-column checks, which name what is wrong."""
    # The types checked in C (a Python loop over the values cost a third of a 32-row
    # request): a bool or a numeric string, which numpy would convert, is never a plain
    # float, int or None, so it takes the per-column path, which refuses it by name.
    if not set(map(type, flat)) <= _PLAIN_VALUES:
        return None
    try:
        arr = np.asarray(flat, dtype=np.float64).reshape(n, k)
    except (TypeError, ValueError):
        return None
    if np.isfinite(arr).all():
        return arr  # the usual body: one pass over the values instead of isinf, then isnan
    if np.isinf(arr).any():
        return None
    required = np.array([not spec.nullable for spec in schema.features])
    if (np.isnan(arr) & required).any():
        return None
    return arr


def _column_from(spec: FeatureSpec, arr: np.ndarray) -> pd.Series:
    integral = spec.dtype.lower().startswith(("int", "uint"))
    if integral and not np.isnan(arr).any() and np.all(arr == np.round(arr)):
        return pd.Series(arr.astype(np.int64), name=spec.name)
    return pd.Series(arr, name=spec.name)


def frame_from_records(
    records: Sequence[dict[str, Any]], schema: FeatureSchema, *, allow_missing: bool = False
) -> pd.DataFrame:
    """Validate feature rows fetched from the feature server the same way as request inputs.

    `allow_missing` lets a missing value through for every feature, nullable or not: the
    online store's gaps (absent, stale, unreachable) are left to the model's imputers.
    """
    columns = {}
    for spec in schema.features:
        if allow_missing and not spec.nullable:
            spec = spec.model_copy(update={"nullable": True})
        values = [r.get(spec.name) for r in records]
        columns[spec.name] = _column(spec, values)
    return pd.DataFrame(columns)
