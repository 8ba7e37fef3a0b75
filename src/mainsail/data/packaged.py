"""Real datasets that a Python package ships offline (today: ISLP's `load_data`).

`data.packaged` in a config names one; the ingest step writes it to `data.path` on first use, so
the rest of the data stage reads an ordinary CSV or parquet file like any user's data.
"""

from __future__ import annotations

import pandas as pd

from mainsail.config.data import PackagedData
from mainsail.data.errors import DataSourceError


def load_packaged(source: PackagedData) -> pd.DataFrame:
    """Load the named dataset from its package as a DataFrame with a plain RangeIndex."""
    if source.package != "ISLP":  # pragma: no cover - the config only admits ISLP
        raise DataSourceError(f"data.packaged.package {source.package!r} is not supported")
    try:
        from ISLP import load_data
    except ImportError as err:
        raise DataSourceError(
            "data.packaged needs the ISLP package, which is not installed in this environment"
        ) from err
    try:
        frame = load_data(source.name)
    except (ValueError, KeyError, FileNotFoundError) as err:
        raise DataSourceError(
            f"data.packaged.name: ISLP has no dataset {source.name!r} ({err})"
        ) from None
    if not isinstance(frame, pd.DataFrame):
        raise DataSourceError(
            f"data.packaged.name: ISLP dataset {source.name!r} is not a table "
            f"(got {type(frame).__name__}); choose a tabular dataset such as Default or Carseats"
        )
    return frame.reset_index(drop=True)
