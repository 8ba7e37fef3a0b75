"""Served rows and reference samples as the matrices the detectors take (numpy only).

Numeric features become float64 columns with NaN for a missing value. Categorical and boolean
features become small integer codes: the schema's categories in order, then one code for a
category never seen in training and one for a missing value; a surge of either is drift too.

Rows arrive as JSON, as {feature: value} objects or as value arrays under one `columns` list;
:func:`parse_batch` checks a decoded body and says exactly what is wrong (which row, which
feature, what was expected) before anything is stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mainsail.data.schema import FeatureSchema, FeatureSpec

__all__ = ["BatchError", "Encoder", "ParsedBatch", "parse_batch"]


class BatchError(ValueError):
    """A batch that cannot be used; the message names the field, row and feature."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        """The HTTP status that answers it (400, or 413 for an oversized batch)."""


@dataclass(frozen=True)
class ParsedBatch:
    """One validated batch of served rows."""

    model: str
    version: str
    rows: list[dict[str, Any]]
    predictions: list[Any] | None
    scores: list[float | None] | None = None
    """Classification: the model's probability of its last class per row (label-free
    performance estimation); None when the batch carries none."""
    request_ids: list[str] | None = None
    """The served requests the rows came from (the runtime sends them with structured logs or
    tracing on); only logged."""


def parse_batch(body: Any, max_rows: int) -> ParsedBatch:
    """Check the shape of a decoded `POST /v1/rows` body (values are checked by the encoder).

    Rows are {feature: value} objects, or, when the body names its `columns`, arrays of values
    in that order (the serving runtime's form: names once per batch, not once per row)."""
    if not isinstance(body, dict):
        raise BatchError("body: expected a JSON object with model, version and rows")
    known = {"model", "version", "columns", "rows", "predictions", "scores", "request_ids"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise BatchError(
            f"body: unknown field(s) {unknown}; expected model, version, rows, predictions "
            "and optionally columns, scores and request_ids"
        )
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BatchError(f"model: expected a non-empty string, got {model!r}")
    version = body.get("version")
    if isinstance(version, bool) or not isinstance(version, str | int) or str(version) == "":
        raise BatchError(f"version: expected a non-empty string or integer, got {version!r}")
    columns = body.get("columns")
    rows = body.get("rows")
    if not isinstance(rows, list) or not rows:
        expected = "arrays of values" if columns is not None else "objects (feature name -> value)"
        raise BatchError(f"rows: expected a non-empty list of {expected}")
    if len(rows) > max_rows:
        raise BatchError(
            f"rows: {len(rows)} rows in one batch, at most {max_rows} are accepted", status=413
        )
    if columns is not None:
        rows = _rows_from_arrays(columns, rows)
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise BatchError(f"rows[{i}]: expected an object, got {type(row).__name__}")
    predictions = body.get("predictions")
    if predictions is not None and (
        not isinstance(predictions, list) or len(predictions) != len(rows)
    ):
        n = len(predictions) if isinstance(predictions, list) else type(predictions).__name__
        raise BatchError(
            f"predictions: expected a list with one value per row ({len(rows)}), got {n}"
        )
    scores = body.get("scores")
    if scores is not None:
        if not isinstance(scores, list) or len(scores) != len(rows):
            n = len(scores) if isinstance(scores, list) else type(scores).__name__
            raise BatchError(
                f"scores: expected a list with one value per row ({len(rows)}), got {n}"
            )
        for i, v in enumerate(scores):
            if v is not None and (
                isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 <= v <= 1.0
            ):
                raise BatchError(
                    f"scores[{i}]: expected a probability in [0, 1] or null, got {v!r}"
                )
    ids = body.get("request_ids")
    if ids is not None and (
        not isinstance(ids, list)
        or len(ids) > len(rows)
        or not all(isinstance(i, str) and 0 < len(i) <= 128 for i in ids)
    ):
        raise BatchError(
            f"request_ids: expected at most {len(rows)} request ids (strings of 1 to 128 chars)"
        )
    return ParsedBatch(model, str(version), rows, predictions, scores, ids)


def _rows_from_arrays(columns: Any, rows: list[Any]) -> list[dict[str, Any]]:
    """Value arrays under `columns` as {feature: value} rows; BatchError says what is wrong."""
    if (
        not isinstance(columns, list)
        or not columns
        or not all(isinstance(c, str) and c for c in columns)
    ):
        raise BatchError(f"columns: expected a non-empty list of feature names, got {columns!r}")
    if len(set(columns)) != len(columns):
        twice = sorted({c for c in columns if columns.count(c) > 1})
        raise BatchError(f"columns: {twice} named more than once")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            got = f"{len(row)} values" if isinstance(row, list) else type(row).__name__
            raise BatchError(
                f"rows[{i}]: expected an array of {len(columns)} values (one per column), got {got}"
            )
        out.append(dict(zip(columns, row, strict=True)))
    return out


def _categories(spec: FeatureSpec) -> list[str]:
    if spec.kind == "boolean":
        return ["false", "true"]
    return list(spec.categories or [])


class Encoder:
    """Turns rows (dicts) or a reference frame into a numeric and a categorical matrix."""

    def __init__(self, schema: FeatureSchema) -> None:
        self.schema = schema
        self.numeric = [f.name for f in schema.features if f.kind == "numeric"]
        self.categorical = [f.name for f in schema.features if f.kind != "numeric"]
        self._specs = {f.name: f for f in schema.features}
        self._codes: dict[str, dict[str, int]] = {}
        for name in self.categorical:
            cats = _categories(self._specs[name])
            self._codes[name] = {c: i for i, c in enumerate(cats)}

    def n_codes(self, name: str) -> int:
        """Codes of a categorical feature: its categories, `unseen`, `missing`."""
        return len(self._codes[name]) + 2

    def unseen_code(self, name: str) -> int:
        return len(self._codes[name])

    def missing_code(self, name: str) -> int:
        return len(self._codes[name]) + 1

    def _category_code(self, name: str, value: Any) -> int:
        codes = self._codes[name]
        is_bool = isinstance(value, bool | np.bool_)
        key = ("true" if value else "false") if is_bool else str(value)
        return codes.get(key, len(codes))

    def encode_rows(self, rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """(numeric float64 [n, n_num], categorical int64 [n, n_cat]); raises BatchError."""
        n = len(rows)
        num = np.empty((n, len(self.numeric)), dtype=np.float64)
        cat = np.empty((n, len(self.categorical)), dtype=np.int64)
        for i, row in enumerate(rows):
            for j, name in enumerate(self.numeric):
                if name not in row:
                    raise BatchError(
                        f"rows[{i}]: feature {name!r} is missing (send null for a missing value)"
                    )
                value = row[name]
                if value is None:
                    num[i, j] = math.nan
                elif isinstance(value, bool) or not isinstance(value, int | float):
                    raise BatchError(
                        f"rows[{i}].{name}: expected a number or null (numeric feature), "
                        f"got {value!r}"
                    )
                else:
                    num[i, j] = float(value)
            for j, name in enumerate(self.categorical):
                if name not in row:
                    raise BatchError(
                        f"rows[{i}]: feature {name!r} is missing (send null for a missing value)"
                    )
                value = row[name]
                if value is None:
                    cat[i, j] = self.missing_code(name)
                    continue
                kind = self._specs[name].kind
                if kind == "boolean" and not isinstance(value, bool):
                    raise BatchError(
                        f"rows[{i}].{name}: expected true, false or null, got {value!r}"
                    )
                if kind == "categorical" and not isinstance(value, str | int):
                    raise BatchError(
                        f"rows[{i}].{name}: expected a category string or null, got {value!r}"
                    )
                cat[i, j] = self._category_code(name, value)
        return num, cat

    def encode_frame(self, frame: Any) -> tuple[np.ndarray, np.ndarray]:
        """The same matrices from a pandas frame (the reference sample)."""
        missing = [c for c in self.numeric + self.categorical if c not in frame.columns]
        if missing:
            raise ValueError(
                f"reference sample lacks feature column(s) {missing} named in the feature schema"
            )
        if self.numeric:
            num = frame[self.numeric].astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            num = np.empty((len(frame), 0))
        cat = np.empty((len(frame), len(self.categorical)), dtype=np.int64)
        for j, name in enumerate(self.categorical):
            col = frame[name]
            isna = col.isna().to_numpy()
            arr = np.full(len(frame), self.missing_code(name), dtype=np.int64)
            present = col[~isna].astype("object").tolist()
            arr[~isna] = [self._category_code(name, v) for v in present]
            cat[:, j] = arr
        return num, cat
