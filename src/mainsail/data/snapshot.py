"""Training-data snapshots: the parquet bytes a run trained from, and what they hold.

- :func:`snapshot_bytes`: the snapshot of a data file. A parquet file is kept as it is (its
  sha256 is then the lineage's `data_sha256`); a CSV file is stored as the parquet of the very
  Arrow table that ingest parsed, so reading the snapshot gives the same frame as the CSV did.
- :func:`summarize`: schema, row count and a summary per column (JSON-safe).
- :func:`diff_summaries`: what changed between two snapshots' summaries.

Storage (content-addressed, deduplicated by sha256) is `mainsail.registry.snapshots`.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mainsail.data.ingest import resolve_format


def snapshot_bytes(path: Path, fmt: str = "auto", drop: Sequence[str] = ()) -> bytes:
    """The parquet bytes of the data file at `path` (see the module docstring), without the
    columns in `drop` (sensitive ones: then a parquet source is rewritten, not kept as is)."""
    import pyarrow.parquet as pq

    from mainsail.data.ingest import _read_csv

    path = Path(path)
    parquet = resolve_format(path, fmt) == "parquet"
    if parquet and not drop:
        return path.read_bytes()
    table = pq.read_table(path) if parquet else _read_csv(path)
    if drop:
        table = table.drop_columns([c for c in drop if c in table.column_names])
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def sha256_hex(data: bytes) -> str:
    """The sha256 that addresses a snapshot."""
    return hashlib.sha256(data).hexdigest()


def read_snapshot(data: bytes) -> pd.DataFrame:
    """The frame of a snapshot, read the way ingest reads a parquet file."""
    import pyarrow.parquet as pq

    from mainsail.data.ingest import _to_pandas

    return _to_pandas(pq.read_table(io.BytesIO(data)))


def _num(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return round(x, 6) if math.isfinite(x) else None


def summarize(frame: pd.DataFrame) -> dict[str, Any]:
    """Rows, and per column its dtype, missing count, and (numeric) min/mean/max/std or
    (other) the number of distinct values and the five most frequent."""
    columns: dict[str, Any] = {}
    for name in frame.columns:
        col = frame[name]
        entry: dict[str, Any] = {"dtype": str(col.dtype), "missing": int(col.isna().sum())}
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            values = pd.to_numeric(col, errors="coerce").astype("float64")
            entry.update(
                min=_num(values.min()),
                mean=_num(values.mean()),
                max=_num(values.max()),
                std=_num(values.std()),
            )
        elif pd.api.types.is_datetime64_any_dtype(col):
            entry.update(min=str(col.min()), max=str(col.max()))
        else:
            counts = col.astype("string").value_counts(dropna=True)
            entry.update(
                distinct=len(counts),
                top={str(k): int(v) for k, v in counts.head(5).items()},
            )
        columns[str(name)] = entry
    return {"rows": len(frame), "columns": columns}


def diff_summaries(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Schema and row-count changes from `a` to `b`, and per shared column the summary fields
    that changed (`{field: [before, after]}`)."""
    cols_a, cols_b = a["columns"], b["columns"]
    changed: dict[str, Any] = {}
    for name in [c for c in cols_a if c in cols_b]:
        before, after = cols_a[name], cols_b[name]
        fields = {
            key: [before.get(key), after.get(key)]
            for key in sorted(set(before) | set(after))
            if before.get(key) != after.get(key)
        }
        if fields:
            changed[name] = fields
    return {
        "rows": {"before": a["rows"], "after": b["rows"], "change": b["rows"] - a["rows"]},
        "added_columns": [c for c in cols_b if c not in cols_a],
        "removed_columns": [c for c in cols_a if c not in cols_b],
        "dtype_changes": {
            c: [cols_a[c]["dtype"], cols_b[c]["dtype"]]
            for c in cols_a
            if c in cols_b and cols_a[c]["dtype"] != cols_b[c]["dtype"]
        },
        "changed_columns": changed,
    }
