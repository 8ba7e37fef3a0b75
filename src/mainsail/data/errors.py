"""Errors of the data stage: each message names the file, column or key and what was expected.

All of them derive from :class:`DataError` (a ``ValueError``), so callers can catch one type.
When validation found the problem, the partial :class:`~mainsail.data.report.ValidationReport`
is attached as ``report`` so the CLI can show everything that was checked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mainsail.data.report import ValidationReport


class DataError(ValueError):
    """Input data that the data stage cannot use; nothing was written when this is raised."""

    #: Short machine-readable code, also used in the validation report's issues.
    code: str = "data_error"

    def __init__(
        self, message: str, *, column: str | None = None, report: ValidationReport | None = None
    ) -> None:
        super().__init__(message)
        self.column = column
        self.report = report


class DataSourceError(DataError):
    """The data file cannot be found, generated or read as a whole."""

    code = "data_source"


class DataFileNotFoundError(DataSourceError):
    """`data.path` does not exist and no generator is configured."""

    code = "file_not_found"


class UnsupportedFormatError(DataSourceError):
    """The file suffix (or `data.format`) is not CSV or parquet."""

    code = "unsupported_format"


class EmptyDataError(DataSourceError):
    """The file has no bytes, no header or no data rows."""

    code = "empty_file"


class MalformedFileError(DataSourceError):
    """The file cannot be parsed (a ragged CSV row, a corrupt parquet file)."""

    code = "malformed_file"


class MissingColumnError(DataError):
    """A column named in the config (target, entity key, timestamp, ...) is not in the data."""

    code = "missing_column"


class TargetError(DataError):
    """The target column cannot be learned from (one class, no values, wrong type)."""

    code = "bad_target"


class AllMissingColumnError(DataError):
    """A column has no values at all."""

    code = "all_missing"


class DuplicateRowsError(DataError):
    """Several rows describe the same entity at the same timestamp with different values."""

    code = "duplicate_entity_timestamp"


class MixedTypesError(DataError):
    """A column mixes numbers and text (or other incompatible types)."""

    code = "mixed_types"


class TimestampError(DataError):
    """A timestamp column holds values that cannot be parsed or are missing."""

    code = "bad_timestamp"


class SplitError(DataError):
    """The data cannot be split as configured (too few rows, entities or time points)."""

    code = "split"


class LeakageError(DataError):
    """A feature alone predicts the target almost perfectly and the config did not allow it."""

    code = "leakage_suspect"
