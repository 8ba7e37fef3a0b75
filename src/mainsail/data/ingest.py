"""Ingest: make sure the data file exists, then read CSV or parquet into memory-conscious dtypes.

Reading goes through pyarrow for both formats: it is strict about ragged CSV rows (pandas' C
parser silently pads short rows with NaN), multi-threaded, and lets text columns arrive as pandas
categoricals (dictionary encoded) instead of millions of Python strings.

A missing file is generated (`data.synthetic`) or copied from a package (`data.packaged`) and
written atomically: to a temporary file in the same folder, then renamed, so a crash never leaves
a half-written dataset that a later run would trust.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pandas as pd

from mainsail.config.data import DataConfig
from mainsail.data.errors import (
    DataFileNotFoundError,
    DataSourceError,
    EmptyDataError,
    MalformedFileError,
    UnsupportedFormatError,
)

if TYPE_CHECKING:
    import pyarrow as pa

FileFormat = Literal["csv", "parquet"]
_SUFFIXES: dict[str, FileFormat] = {
    ".csv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def resolve_format(path: Path, fmt: str = "auto") -> FileFormat:
    """The file format: `fmt` when given, else decided by the suffix."""
    if fmt in ("csv", "parquet"):
        return fmt  # type: ignore[return-value]
    if fmt != "auto":
        raise UnsupportedFormatError(f"data.format must be auto, csv or parquet, got {fmt!r}")
    found = _SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise UnsupportedFormatError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}; "
            f"expected one of {', '.join(sorted(_SUFFIXES))} or set data.format to csv or parquet"
        )
    return found


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_table(frame: pd.DataFrame, path: Path, fmt: str = "auto") -> None:
    """Write `frame` to CSV or parquet (by suffix) atomically."""
    kind = resolve_format(path, fmt)
    with atomic_path(path) as tmp:
        if kind == "parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)


def ensure_data_file(data: DataConfig, seed: int) -> bool:
    """Make sure `data.path` exists; generate or materialise it when configured.

    Returns True when the file was created by this call.
    """
    path = Path(data.path)
    if path.is_dir():
        raise DataSourceError(f"data.path {path} is a folder; expected a CSV or parquet file")
    if path.exists():
        return False
    if data.synthetic is not None and data.packaged is not None:
        raise DataSourceError(
            "data.synthetic and data.packaged are both set; choose one way to create "
            f"the missing file {path}"
        )
    if data.synthetic is not None:
        from mainsail.data.synthetic import generate_churn

        syn = data.synthetic
        frame = generate_churn(
            syn.rows,
            entities=syn.entities,
            drift=syn.drift,
            seed=seed if syn.seed is None else syn.seed,
        )
        write_table(frame, path, data.format)
        return True
    if data.packaged is not None:
        from mainsail.data.packaged import load_packaged

        write_table(load_packaged(data.packaged), path, data.format)
        return True
    raise DataFileNotFoundError(
        f"data file not found: {path} (data.path); check the path, or set data.synthetic "
        "or data.packaged to create it on first use"
    )


def read_table(path: Path, fmt: str = "auto") -> pd.DataFrame:
    """Read a CSV or parquet file into pandas.

    Text columns become categoricals, booleans nullable ``boolean``; integers with missing values
    become floats. Raises a :class:`DataSourceError` subclass naming the file and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise DataFileNotFoundError(f"data file not found: {path}")
    if path.is_dir():
        raise DataSourceError(f"{path} is a folder; expected a CSV or parquet file")
    kind = resolve_format(path, fmt)
    if path.stat().st_size == 0:
        raise EmptyDataError(f"{path}: the file is empty (0 bytes); expected a header and rows")
    table = _read_csv(path) if kind == "csv" else _read_parquet(path)
    frame = _checked_frame(path, table)
    del table
    # pyarrow's allocator keeps freed memory for reuse (by pyarrow only): on a large file
    # that is the size of the whole table, held while the rest of the stage runs. Give it back.
    _release_arrow_memory()
    return frame


def _release_arrow_memory() -> None:
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def _checked_frame(path: Path, table: pa.Table) -> pd.DataFrame:
    """`table` as pandas, after checking it has columns, rows and unique column names."""
    if table.num_columns == 0:
        raise EmptyDataError(f"{path}: the file has no columns")
    if table.num_rows == 0:
        raise EmptyDataError(
            f"{path}: the file has a header ({table.num_columns} columns) but no data rows"
        )
    names = [str(c) for c in table.column_names]
    repeated = sorted({c for c in names if names.count(c) > 1})
    if repeated:
        raise MalformedFileError(
            f"{path}: column name(s) {', '.join(map(repr, repeated))} appear more than once; "
            "expected unique column names"
        )
    return _to_pandas(table)


def _read_csv(path: Path) -> pa.Table:
    import pyarrow as pa
    from pyarrow import csv as pacsv

    try:
        return pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(strings_can_be_null=True),
        )
    except pa.ArrowInvalid as err:
        text = str(err)
        if "Empty CSV file" in text:
            raise EmptyDataError(f"{path}: the file has no header and no rows") from None
        if "Expected" in text and "columns" in text:
            raise MalformedFileError(_ragged_row_message(path)) from None
        raise MalformedFileError(f"{path}: not a readable CSV file: {text}") from None


def _ragged_row_message(path: Path) -> str:
    """Find the first row whose field count differs from the header's (error path only)."""
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        for row in reader:
            if row and len(row) != len(header):
                return (
                    f"{path}: malformed CSV: line {reader.line_num} has {len(row)} fields but "
                    f"the header has {len(header)} ({', '.join(header)})"
                )
    return f"{path}: malformed CSV: a row's field count differs from the header's"


def _read_parquet(path: Path) -> pa.Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise MalformedFileError(f"{path}: not a readable parquet file: {err}") from None


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.compute as pc

    # Text → dictionary (pandas categorical): codes plus one copy of each distinct value.
    columns = []
    for column in table.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            column = pc.dictionary_encode(column)
        columns.append(column)
    table = pa.Table.from_arrays(columns, names=table.column_names)
    mapping = {pa.bool_(): pd.BooleanDtype()}
    frame = table.to_pandas(ignore_metadata=True, types_mapper=mapping.get)
    # A non-default index written by pandas comes back as a column; it is not data.
    # (`drop` copies every column, so only when there is one.)
    extra = [c for c in frame.columns if str(c).startswith("__index_level_")]
    if extra:
        frame = frame.drop(columns=extra)
    # Dictionary categories arrive unsorted (first-seen order); sort them for stable output.
    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.CategoricalDtype):
            categories = frame[name].cat.categories
            ordered = sorted(categories, key=str)
            if not categories.equals(pd.Index(ordered, dtype=categories.dtype)):
                frame[name] = frame[name].cat.reorder_categories(ordered)
    frame.columns = [str(c) for c in frame.columns]
    return frame
