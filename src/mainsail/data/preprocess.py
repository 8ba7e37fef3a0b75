"""The preprocessing pipeline (scikit-learn), fitted on the training rows only.

Numeric and boolean features: coerce to float → clip to train quantiles → impute → scale.
Numeric features with missing values in train also get a 0/1 missing indicator.
Categorical features: text with missing values filled → one-hot with an ``infrequent`` bucket;
a category never seen in training maps to that bucket (or to all zeros when there is none),
never to an error.

The fitted pipeline is pickled with joblib and loaded by the serving env, so this module imports
only numpy, pandas and scikit-learn.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import MissingIndicator
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted, validate_data

from mainsail.config.data import PreprocessConfig
from mainsail.core import columnwise

MISSING_CATEGORY = "__missing__"


class QuantileClipper(TransformerMixin, BaseEstimator):
    """Clip each column to its `low` and `high` quantiles learned in `fit` (NaN passes through).

    Fitted attributes: ``lower_`` and ``upper_`` (one bound per column), ``n_features_in_`` and,
    for DataFrame input, ``feature_names_in_``.
    """

    def __init__(self, low: float = 0.005, high: float = 0.995) -> None:
        self.low = low
        self.high = high

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # missing values pass through to the imputer
        return tags

    def fit(self, X: Any, y: Any = None) -> QuantileClipper:
        """Learn the per-column bounds from `X`."""
        if not 0.0 <= self.low < self.high <= 1.0:
            raise ValueError(
                f"QuantileClipper needs 0 <= low < high <= 1, got low={self.low}, high={self.high}"
            )
        X = validate_data(self, X, reset=True, dtype=np.float64, ensure_all_finite="allow-nan")

        def bounds(j: int) -> tuple[float, float]:
            values = _observed(X, j)
            if not len(values):
                return -np.inf, np.inf
            low, high = np.quantile(values, [self.low, self.high])
            return float(low), float(high)

        with np.errstate(all="ignore"):
            found = columnwise.map_columns(bounds, range(X.shape[1]), rows=X.shape[0])
        self.lower_ = np.asarray([b[0] for b in found], dtype=np.float64).reshape(X.shape[1])
        self.upper_ = np.asarray([b[1] for b in found], dtype=np.float64).reshape(X.shape[1])
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Clip `X` to the fitted bounds."""
        check_is_fitted(self, ("lower_", "upper_"))
        X = validate_data(
            self, X, reset=False, dtype=np.float64, ensure_all_finite="allow-nan", copy=True
        )
        return self._apply(X)

    def _apply(self, X: np.ndarray) -> np.ndarray:
        """Clip `X` (a float64 array) in place."""
        return np.clip(X, self.lower_, self.upper_, out=X)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Same names as the input."""
        check_is_fitted(self, ("lower_", "upper_"))
        return np.asarray(_check_feature_names_in(self, input_features), dtype=object)


class NumericImputer(TransformerMixin, BaseEstimator):
    """Fill NaN with each column's training median or mean, or with zero.

    Fitted attributes: ``statistics_`` (the fill value per column; 0 for a column with no value
    in training), ``n_features_in_`` and, for DataFrame input, ``feature_names_in_``. The median
    is ``numpy.nanmedian``'s (a partition of each column's observed values), which on a million
    rows costs a fraction of scikit-learn's ``SimpleImputer`` (a masked-array sort per column).
    """

    def __init__(self, strategy: str = "median") -> None:
        self.strategy = strategy

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    def fit(self, X: Any, y: Any = None) -> NumericImputer:
        """Learn the fill value of each column from `X`."""
        if self.strategy not in ("median", "mean", "zero"):
            raise ValueError(
                f"NumericImputer strategy must be median, mean or zero, got {self.strategy!r}"
            )
        X = validate_data(self, X, reset=True, dtype=np.float64, ensure_all_finite="allow-nan")
        stats = np.zeros(X.shape[1])
        if self.strategy == "median" and X.shape[0]:
            # Each column's median without its NaN, as `np.nanmedian(X, axis=0)` gives it, one
            # column per core on a long table.
            def fill(j: int) -> float:
                values = _observed(X, j)
                return float(np.median(values)) if len(values) else 0.0  # all-NaN column → 0

            found = columnwise.map_columns(fill, range(X.shape[1]), rows=X.shape[0])
            stats = np.asarray(found, dtype=np.float64).reshape(X.shape[1])
        elif self.strategy == "mean" and X.shape[0]:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column → 0 below
                stats = np.nanmean(X, 0)
            stats = np.where(np.isnan(stats), 0.0, stats)
        self.statistics_ = stats
        return self

    def transform(self, X: Any) -> np.ndarray:
        """`X` with NaN replaced by the fitted fill values."""
        check_is_fitted(self, "statistics_")
        X = validate_data(
            self, X, reset=False, dtype=np.float64, ensure_all_finite="allow-nan", copy=True
        )
        return self._apply(X)

    def _apply(self, X: np.ndarray) -> np.ndarray:
        """Fill the NaN of `X` (a float64 array) in place."""
        rows, cols = np.nonzero(np.isnan(X))
        X[rows, cols] = self.statistics_[cols]
        return X

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Same names as the input."""
        check_is_fitted(self, "statistics_")
        return np.asarray(_check_feature_names_in(self, input_features), dtype=object)


def _observed(X: np.ndarray, j: int) -> np.ndarray:
    """Column `j` of `X` without its NaN (a contiguous copy: the column's own sort or partition
    runs on it, one column per core)."""
    column = np.ascontiguousarray(X[:, j])
    return column[~np.isnan(column)]


class _Coercer(TransformerMixin, BaseEstimator):
    """Base of the stateless coercers: remembers the input columns to name the outputs."""

    def fit(self, X: Any, y: Any = None) -> _Coercer:
        frame = _as_frame(X)
        self.n_features_in_ = frame.shape[1]
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        return self

    def _frame(self, X: Any) -> pd.DataFrame:
        check_is_fitted(self, "n_features_in_")
        frame = _as_frame(X)
        if frame.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{type(self).__name__} expects {self.n_features_in_} columns, got {frame.shape[1]}"
            )
        return frame

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Same names as the input."""
        check_is_fitted(self, "n_features_in_")
        return np.asarray(_check_feature_names_in(self, input_features), dtype=object)


class NumericCoercer(_Coercer):
    """Columns → float64 array: numbers, booleans and numeric text; missing → NaN.

    Text that is not a number raises a ValueError naming the column (serving answers it 4xx).
    """

    def transform(self, X: Any) -> np.ndarray:
        """Coerce `X` to a float64 array."""
        frame = self._frame(X)
        out = np.empty(frame.shape, dtype=np.float64)
        for j, name in enumerate(frame.columns):
            col = frame.iloc[:, j]
            try:
                out[:, j] = col.to_numpy(dtype=np.float64, na_value=np.nan)
            except (TypeError, ValueError):
                values = pd.to_numeric(col.astype(object), errors="coerce")
                bad = values.isna() & col.notna()
                if bad.any():
                    example = col[bad].iloc[0]
                    raise ValueError(
                        f"column {name!r}: expected a number, got {example!r}"
                    ) from None
                out[:, j] = values.to_numpy(dtype=np.float64, na_value=np.nan)
        return out


class CategoryImputer(_Coercer):
    """Columns → text array with missing values filled (the input of the one-hot encoder).

    ``strategy="constant"`` fills with ``fill_value``; ``"most_frequent"`` with each column's most
    frequent training value (ties: the smallest), learned in `fit` as ``fill_values_``. Values are
    compared as text, so 1, 1.0 and "1" are one category. The output is a fixed-width unicode
    array: scikit-learn's encoder then counts and looks up categories with numpy instead of a
    Python loop over every cell (the difference is minutes on a million rows).
    """

    def __init__(self, strategy: str = "constant", fill_value: str = MISSING_CATEGORY) -> None:
        self.strategy = strategy
        self.fill_value = fill_value

    def fit(self, X: Any, y: Any = None) -> CategoryImputer:
        """Learn the fill value of each column."""
        if self.strategy not in ("constant", "most_frequent"):
            raise ValueError(
                f"CategoryImputer strategy must be constant or most_frequent, got {self.strategy!r}"
            )
        super().fit(X, y)
        fills = []
        frame = _as_frame(X)
        for column, missing in self._texts(frame, [self.fill_value] * frame.shape[1]):
            observed = column[~missing]
            if self.strategy == "constant" or len(observed) == 0:
                fills.append(self.fill_value)
                continue
            values, counts = np.unique(observed, return_counts=True)
            fills.append(str(values[np.argmax(counts)]))  # np.unique sorts: ties → smallest
        self.fill_values_ = np.asarray(fills, dtype=object)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Text array of `X` with missing values filled."""
        frame = self._frame(X)
        check_is_fitted(self, "fill_values_")
        return np.column_stack([t for t, _ in self._texts(frame, list(self.fill_values_))])

    @staticmethod
    def _texts(frame: pd.DataFrame, fill: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per column: the text array (missing → `fill[j]`) and the missing mask."""
        out = []
        for j in range(frame.shape[1]):
            col = frame.iloc[:, j]
            if isinstance(col.dtype, pd.CategoricalDtype):
                # Map the categories once and spread them by code: no per-row str() calls.
                cats = [_text(c) for c in col.cat.categories] + [fill[j]]
                codes = col.cat.codes.to_numpy()
                missing = codes < 0
                table = np.asarray(cats, dtype=str)
                out.append((table[np.where(missing, len(cats) - 1, codes)], missing))
            else:
                values = col.to_numpy(dtype=object)
                missing = np.asarray(pd.isna(values), dtype=bool)
                texts = [fill[j] if m else _text(v) for v, m in zip(values, missing, strict=True)]
                out.append((np.asarray(texts, dtype=str), missing))
        return out


def _text(value: Any) -> str:
    # 1.0 and 1 are the same category whether they came from JSON, CSV or parquet.
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _as_frame(X: Any) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X
    array = np.asarray(X, dtype=object)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    return pd.DataFrame(array)


def build_preprocessor(
    cfg: PreprocessConfig,
    numeric: list[str],
    categorical: list[str],
    missing_in_train: list[str],
) -> Pipeline:
    """An unfitted pipeline for these columns; `missing_in_train` get missing indicators."""
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        steps: list[tuple[str, Any]] = [("coerce", NumericCoercer())]
        if cfg.clip_quantiles is not None:
            low, high = cfg.clip_quantiles
            steps.append(("clip", QuantileClipper(low=low, high=high)))
        imputer = NumericImputer(strategy=cfg.numeric_impute)
        steps.append(("impute", imputer))
        if cfg.scale:
            steps.append(("scale", StandardScaler()))
        transformers.append(("num", Pipeline(steps), list(numeric)))
        flagged = [c for c in numeric if c in set(missing_in_train)]
        if cfg.add_missing_indicators and flagged:
            indicator = Pipeline(
                [
                    ("coerce", NumericCoercer()),
                    ("flag", MissingIndicator(features="all", error_on_new=False)),
                ]
            )
            transformers.append(("missing", indicator, flagged))
    if categorical:
        encoder = OneHotEncoder(
            handle_unknown="infrequent_if_exist",
            max_categories=cfg.max_categories,
            sparse_output=False,
            dtype=np.float64,
        )
        imputer_step = CategoryImputer(strategy=cfg.categorical_impute)
        transformers.append(
            (
                "cat",
                Pipeline([("impute", imputer_step), ("onehot", encoder)]),
                list(categorical),
            )
        )
    columns = ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
    return Pipeline([("columns", columns)])


def fit_preprocessor(
    cfg: PreprocessConfig,
    X_train: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    *,
    rows: np.ndarray | None = None,
    features: list[str] | None = None,
) -> Pipeline:
    """Build and fit the pipeline on the training rows `X_train` only.

    With `rows` (and `features`), `X_train` is the whole table and the pipeline is fitted on
    `X_train.iloc[rows][features]`, as if that frame had been given, without making it: each
    group of columns is taken from the table as its transformer needs it (on ten million rows,
    a copy of the train rows' features is a gigabyte held through the whole fit).
    """
    names = list(X_train.columns) if features is None else list(features)
    positions = X_train.columns.get_indexer(names)
    take = slice(None) if rows is None else rows

    def train_part(columns: list[str]) -> pd.DataFrame:
        return X_train.iloc[take, positions[[names.index(c) for c in columns]]]

    missing = _columns_missing_in(X_train, numeric, rows)
    pipe = build_preprocessor(cfg, numeric, categorical, missing)
    # The columns without rows: rows first, then columns (`iloc[:0, positions]` would take the
    # columns from every row before slicing: a copy of the table's features, held the whole fit).
    if not _fit_without_output(pipe, X_train.iloc[:0].iloc[:, positions], train_part):
        pipe.fit(train_part(names))
    return pipe


def _columns_missing_in(
    frame: pd.DataFrame, columns: list[str], rows: np.ndarray | None
) -> list[str]:
    """The `columns` of `frame` with a missing value in `rows` (all rows when None), found with
    one boolean mask of the rows instead of a copy of each column's rows."""
    if rows is None:
        return [c for c in columns if bool(frame[c].isna().any())]
    mask = np.zeros(len(frame), dtype=bool)
    mask[rows] = True
    return [c for c in columns if bool((frame[c].isna().to_numpy() & mask).any())]


#: The private ColumnTransformer methods that :func:`_fit_without_output` calls in the order
#: its `fit_transform` does (scikit-learn 1.9); without one of them the plain `fit` runs.
_COLUMN_TRANSFORMER_STEPS = (
    "_validate_params",
    "_validate_transformers",
    "_validate_column_callables",
    "_validate_remainder",
    "_iter",
    "_update_fitted_transformers",
    "_record_output_indices",
)


def _fit_without_output(
    pipe: Pipeline, X: pd.DataFrame, rows_of: Callable[[list[str]], pd.DataFrame]
) -> bool:
    """Fit `pipe` (one ColumnTransformer) as `pipe.fit(rows_of(list(X.columns)))` does, without
    its output. `X` has the columns (no rows needed); `rows_of(columns)` gives the training rows
    of those columns.

    `ColumnTransformer.fit` is its `fit_transform`: every branch's last step also transforms
    the rows and the results are stacked into one dense array (twice the size of the input
    on a wide table: most of the fitting time and the peak memory on a million rows), only
    to be thrown away. Here each branch is fitted (its last step with `fit`), and the width
    of its output, which the transformer records, comes from transforming one row. The fitted
    pipeline is the same object, attribute for attribute: pickled, it has the same bytes
    (`tests/data/test_data_preprocess.py` checks that against `pipe.fit`). Returns False,
    having changed nothing, when this scikit-learn lacks a method used here.
    """
    try:
        from sklearn.base import clone
        from sklearn.compose._column_transformer import _check_X
        from sklearn.utils import _safe_indexing
    except ImportError:  # pragma: no cover - another scikit-learn
        return False
    if len(pipe.steps) != 1 or not isinstance(pipe.steps[0][1], ColumnTransformer):
        return False
    columns = pipe.steps[0][1]
    if not all(hasattr(columns, name) for name in _COLUMN_TRANSFORMER_STEPS):
        return False  # pragma: no cover - another scikit-learn
    pipe.steps = list(pipe.steps)
    columns._validate_params()
    validate_data(columns, X=X, skip_check_array=True)
    X = _check_X(X)
    columns._validate_transformers()
    columns._validate_column_callables(X)
    columns._validate_remainder(X)
    fitted: list[Any] = []
    widths: list[np.ndarray] = []
    for _name, transformer, selection, _weight in columns._iter(
        fitted=False, column_as_labels=False, skip_drop=True, skip_empty_columns=True
    ):
        rows = [rows_of(list(_safe_indexing(X, selection, axis=1).columns))]
        first = rows[0].iloc[:1].copy()
        branch = _fit_branch(clone(transformer), rows)
        width = np.shape(branch.transform(first))[1]
        fitted.append(branch)
        widths.append(np.empty((0, width)))
    columns.sparse_output_ = False
    columns._update_fitted_transformers(fitted)
    columns._record_output_indices(widths)
    return True


def _fit_branch(branch: Any, rows: list[pd.DataFrame]) -> Any:
    """`branch.fit(rows.pop())`, step by step as `Pipeline.fit` does for a pipeline without a
    cache (each step fitted in place, `fit_transform` but for the last, `fit`), except that no
    array is held longer than the next step needs it: the taken rows go as soon as the first
    step has read them (a gigabyte on ten million rows, with the float copies after it), and
    a step after the first transforms its input in place where it can
    (:func:`_fit_transform_owned`)."""
    X = rows.pop()
    if not isinstance(branch, Pipeline) or branch.memory is not None:
        return branch.fit(X)
    if branch.transform_input is not None:
        return branch.fit(X)  # pragma: no cover - never built here
    branch.steps = list(branch.steps)
    branch._validate_steps()
    for i, (_name, step) in enumerate(branch.steps[:-1]):
        X = _fit_transform_owned(step, X) if i else step.fit_transform(X)
    final = branch.steps[-1][1]
    if final != "passthrough":
        final.fit(X)
    return branch


def _fit_transform_owned(step: Any, X: Any) -> Any:
    """`step.fit_transform(X)` for an `X` that nothing else holds (the previous step's output):
    the clipper and the imputer write their output over it instead of into a copy. Their
    `transform` copies its input, as scikit-learn's transformers must; on ten million train rows
    that copy is two gigabytes beside the input, the peak of the whole data stage. The fitted
    step is the same either way: `fit` is the same call."""
    if (
        isinstance(step, QuantileClipper | NumericImputer)
        and isinstance(X, np.ndarray)
        and X.dtype == np.float64
        and X.ndim == 2
        and X.flags.writeable
        and X.flags.c_contiguous
    ):
        return step.fit(X)._apply(X)
    return step.fit_transform(X)
