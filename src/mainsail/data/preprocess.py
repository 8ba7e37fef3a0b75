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

import itertools
import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin, clone
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
    The array is column-major (Fortran order): each column is written, and read by the steps
    after it (quantiles, medians, means), as one contiguous block.
    """

    def transform(self, X: Any) -> np.ndarray:
        """Coerce `X` to a float64 array."""
        frame = self._frame(X)
        out = np.empty(frame.shape, dtype=np.float64, order="F")
        for j, name in enumerate(frame.columns):
            out[:, j] = _float_column(frame.iloc[:, j], name)
        return out


def _float_column(col: pd.Series, name: Any) -> np.ndarray:
    """`col` as float64 (missing → NaN); text that is not a number is a ValueError naming
    `name`."""
    try:
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        values = pd.to_numeric(col.astype(object), errors="coerce")
        bad = values.isna() & col.notna()
        if bad.any():
            example = col[bad].iloc[0]
            raise ValueError(f"column {name!r}: expected a number, got {example!r}") from None
        return values.to_numpy(dtype=np.float64, na_value=np.nan)


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
        if self.strategy == "constant":  # nothing to learn from the values
            self.fill_values_ = np.asarray([self.fill_value] * self.n_features_in_, dtype=object)
            return self
        fills = []
        frame = _as_frame(X)
        for j in range(frame.shape[1]):
            values, counts = _text_counts(frame.iloc[:, j])
            # np.unique sorts: among the most frequent, the smallest text
            fills.append(str(values[np.argmax(counts)]) if len(values) else self.fill_value)
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


def _text_counts(col: pd.Series, fill: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The distinct texts of `col` (sorted, as `np.unique` gives them) and how often each
    occurs: missing values as `fill`, or left out when `fill` is None. A categorical column is
    counted from its codes, a column of plain numbers from its distinct values; in both, texts
    are merged where two values give the same text (1 and 1.0)."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        values, codes = col.cat.categories, col.cat.codes.to_numpy()
    elif _plain_numbers(col):
        codes, values = pd.factorize(col.to_numpy())  # NaN → -1, as a missing code
    else:  # objects: True and 1 are equal keys but different texts, so text every row
        texts, missing = CategoryImputer._texts(col.to_frame(), [fill or ""])[0]
        return np.unique(texts if fill is not None else texts[~missing], return_counts=True)
    cats = [_text(c) for c in values]
    counts = np.bincount(np.where(codes < 0, len(cats), codes), minlength=len(cats) + 1)
    if fill is None:
        counts[-1] = 0
    # The table as CategoryImputer._texts builds it, fill included: the same text width.
    texts, where = np.unique(np.asarray([*cats, fill or ""], dtype=str), return_inverse=True)
    merged = np.bincount(where, weights=counts, minlength=len(texts)).astype(np.int64)
    seen = merged > 0
    return texts[seen], merged[seen]


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
    train = TrainRows(X_train, rows)
    missing = _columns_missing_in(X_train, numeric, rows)
    pipe = build_preprocessor(cfg, numeric, categorical, missing)
    if not _fit_without_output(pipe, train.columns(names), train):
        pipe.fit(train.frame(names))
    return pipe


class TrainRows:
    """The training rows of a table (`rows`, or all of them when None), taken column group by
    column group as the preprocessor's fit asks for them."""

    def __init__(self, table: pd.DataFrame, rows: np.ndarray | None) -> None:
        self.table = table
        self.rows = rows

    def columns(self, names: list[str]) -> pd.DataFrame:
        """The columns without any row: rows first, then columns (`iloc[:0, positions]` would
        take the columns from every row before slicing, a copy of the table's features)."""
        return self.table.iloc[:0].iloc[:, self.table.columns.get_indexer(names)]

    def frame(self, names: list[str], limit: int | None = None) -> pd.DataFrame:
        """The train rows of these columns (the first `limit` of them when given)."""
        take: Any = slice(None) if self.rows is None else self.rows
        if limit is not None:
            take = slice(limit) if self.rows is None else self.rows[:limit]
        return self.table.iloc[take, self.table.columns.get_indexer(names)]

    def floats(self, names: list[str]) -> np.ndarray:
        """`NumericCoercer().transform(self.frame(names))` without taking the frame: each
        column's train rows gathered straight into a column of one float64 column-major array
        (numpy's gathers and casts release the GIL: one column per core on a long table)."""
        n = len(self.table) if self.rows is None else len(self.rows)
        out = np.empty((n, len(names)), dtype=np.float64, order="F")
        columns = [self.table[name] for name in names]  # looked up here, not in the threads

        def fill(j: int) -> None:
            col = columns[j]
            if _plain_numbers(col):
                values = col.to_numpy()
                out[:, j] = values if self.rows is None else np.take(values, self.rows)
            else:  # the train rows only are coerced (and named when one is not a number)
                out[:, j] = _float_column(
                    col if self.rows is None else col.iloc[self.rows], names[j]
                )

        columnwise.map_columns(fill, range(len(names)), rows=n)
        return out


def _plain_numbers(col: pd.Series) -> bool:
    """A numpy-backed column of numbers or booleans (its values cast to float64 exactly as
    `to_numpy(dtype=float64)` casts them)."""
    return isinstance(col.dtype, np.dtype) and col.dtype.kind in "biuf"


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


def _fit_without_output(pipe: Pipeline, X: pd.DataFrame, train: TrainRows) -> bool:
    """Fit `pipe` (one ColumnTransformer) as `pipe.fit(train.frame(list(X.columns)))` does,
    without its output. `X` has the columns (no rows needed); `train` gives the training rows.

    `ColumnTransformer.fit` is its `fit_transform`: every branch's last step also transforms
    the rows and the results are stacked into one dense array (twice the size of the input
    on a wide table: most of the fitting time and the peak memory on a million rows), only
    to be thrown away. Here each branch is fitted (its last step with `fit`, see
    :func:`_fit_branch`), and the width of its output, which the transformer records, comes
    from transforming one row. The fitted pipeline is the same object, attribute for
    attribute: pickled, it has the same bytes (`tests/data/test_data_preprocess.py` checks
    that against `pipe.fit`). Returns False, having changed nothing, when this scikit-learn
    lacks a method used here.
    """
    try:
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
        names = list(_safe_indexing(X, selection, axis=1).columns)
        branch = _fit_branch(clone(transformer), names, train)
        width = np.shape(branch.transform(train.frame(names, limit=1).copy()))[1]
        fitted.append(branch)
        widths.append(np.empty((0, width)))
    columns.sparse_output_ = False
    columns._update_fitted_transformers(fitted)
    columns._record_output_indices(widths)
    return True


def _fit_branch(branch: Any, names: list[str], train: TrainRows) -> Any:
    """`branch.fit(train.frame(names))`, step by step as `Pipeline.fit` does for a pipeline
    without a cache (each step fitted in place, `fit_transform` but for the last, `fit`),
    except that no array is held longer than the next step needs it, and:

    - a numeric branch (`NumericCoercer` first) starts from the train rows gathered straight
      into the coercer's float64 array (:meth:`TrainRows.floats`); the coercer itself learns
      only the column names, from the columns without rows;
    - a branch whose fitted state depends on the columns and not on the rows (the coercer and
      a `MissingIndicator` of all its features) is fitted on the first train row;
    - a step after the first transforms its input in place where it can
      (:func:`_fit_transform_owned`).
    """
    if not isinstance(branch, Pipeline) or branch.memory is not None:
        return branch.fit(train.frame(names))
    if branch.transform_input is not None:
        return branch.fit(train.frame(names))  # pragma: no cover - never built here
    branch.steps = list(branch.steps)
    branch._validate_steps()
    steps = [step for _name, step in branch.steps]
    if len(steps) == 1:
        return branch.fit(train.frame(names))
    if _rows_free(steps):
        return branch.fit(train.frame(names, limit=1))
    if _counts_suffice(steps):
        frame = train.frame(names)
        steps[0].fit(frame)
        proxy = _category_proxy(frame, list(steps[0].fill_values_))
        steps[1].fit(steps[0].transform(frame) if proxy is None else proxy)
        return branch
    X: Any
    if type(steps[0]) is NumericCoercer:
        steps[0].fit(train.columns(names))
        X = train.floats(names)
    else:
        X = steps[0].fit_transform(train.frame(names))
    for step in steps[1:-1]:
        X = _fit_transform_owned(step, X)
    if steps[-1] != "passthrough" and not _fit_scaler_by_columns(steps[-1], X):
        steps[-1].fit(X)
    return branch


_SCALER_FITTED = frozenset({"n_features_in_", "n_samples_seen_", "mean_", "var_", "scale_"})
"""What `StandardScaler.fit` of a numpy array adds to the scaler (scikit-learn 1.9)."""


def _fit_scaler_by_columns(scaler: Any, X: Any) -> bool:
    """`scaler.fit(X)` for a long float64 column-major `X` (the imputer's output), as blocks of
    columns fitted side by side, one per usable core (:mod:`mainsail.core.columnwise`).

    A `StandardScaler`'s statistics are per column, and on a column-major array each column's
    sums run over its own contiguous values whatever the other columns are: a block's fit gives
    its columns' figures to the bit, and numpy releases the GIL while it sums. In the data
    stage at a million rows the plain fit took 0.65 s, one core (it turns a copy of the NaN
    mask into floats and subtracts the means into another, 200 MB each of fresh memory), the
    blocks 0.34 s on two (medians of 4 stage runs each, alternated). The blocks' fitted
    attributes are joined in the order `fit` sets them; the pickled scaler has the same bytes
    as after `fit` (`tests/data/test_data_preprocess.py`). Returns False, having fitted
    nothing, for another step, a short or row-major `X`, one core, or a scikit-learn whose fit
    sets other attributes."""
    if not (
        type(scaler) is StandardScaler
        and scaler.with_mean
        and scaler.with_std
        and isinstance(X, np.ndarray)
        and X.ndim == 2
        and X.dtype == np.float64
        and X.flags.f_contiguous
    ):
        return False
    rows, width = X.shape
    workers = min(width, columnwise.usable_cores())
    if rows < columnwise.MIN_ROWS or workers < 2:
        return False
    edges = [round(i * width / workers) for i in range(workers + 1)]
    blocks = list(itertools.pairwise(edges))
    fitted = columnwise.map_columns(
        lambda block: clone(scaler).fit(X[:, block[0] : block[1]]), blocks, rows=rows
    )
    unfitted = set(vars(scaler))
    added = [[key for key in vars(part) if key not in unfitted] for part in fitted]
    if any(set(keys) != _SCALER_FITTED for keys in added):
        return False  # pragma: no cover - another scikit-learn
    # Per column: a block with the same count in every column keeps one number, as fit does.
    counts = np.concatenate(
        [
            np.full(stop - start, part.n_samples_seen_)
            if np.ndim(part.n_samples_seen_) == 0
            else part.n_samples_seen_
            for (start, stop), part in zip(blocks, fitted, strict=True)
        ]
    )
    joined: dict[str, Any] = {
        "n_features_in_": width,
        "n_samples_seen_": counts[0] if counts.max() == counts.min() else counts,
    }
    for key in ("mean_", "var_", "scale_"):
        joined[key] = np.concatenate([getattr(part, key) for part in fitted])
    for key in added[0]:
        setattr(scaler, key, joined[key])
    return True


def _counts_suffice(steps: list[Any]) -> bool:
    """The category imputer, then a one-hot encoder that learns its categories and, with
    `max_categories`, which of them are infrequent from the order of their counts alone (no
    `min_frequency`: a threshold on the counts themselves)."""
    return (
        len(steps) == 2
        and type(steps[0]) is CategoryImputer
        and type(steps[1]) is OneHotEncoder
        and isinstance(steps[1].categories, str)
        and steps[1].categories == "auto"
        and steps[1].min_frequency is None
    )


def _category_proxy(frame: pd.DataFrame, fills: list[str]) -> np.ndarray | None:
    """A small array that fits the one-hot encoder of :func:`_counts_suffice` exactly as the
    category imputer's output for `frame` does (millions of texts, which the encoder sorts),
    or None when this one cannot be made.

    Each column has the same distinct texts, of the same width, with counts in the same
    order, equal where they were equal: the dense rank of each count (1 for the rarest),
    which is what the encoder's stable argsort of the counts sees. The columns are then
    evened out to one length by adding the difference to the most frequent text of each;
    when several texts share the top count that would break their tie, so the difference must
    divide evenly among them, else None (and the encoder is fitted on the real output)."""
    columns = []
    for j, fill in enumerate(fills):
        texts, counts = _text_counts(frame.iloc[:, j], fill)
        if not len(texts):
            return None  # no rows: the encoder's own error
        rank = np.unique(counts, return_inverse=True)[1].reshape(-1)
        columns.append((texts, rank + 1))
    length = max(int(ranks.sum()) for _, ranks in columns)
    repeated = []
    for texts, ranks in columns:
        top = ranks == ranks.max()
        extra, left = divmod(length - int(ranks.sum()), int(top.sum()))
        if left:
            return None
        repeated.append(np.repeat(texts, ranks + extra * top))
    return np.column_stack(repeated)


def _rows_free(steps: list[Any]) -> bool:
    """Steps whose fit learns the columns only: the numeric coercer, then a missing indicator
    of every feature (its `features_` is all of them, whatever the rows hold)."""
    return (
        len(steps) == 2
        and type(steps[0]) is NumericCoercer
        and isinstance(steps[1], MissingIndicator)
        and steps[1].features == "all"
    )


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
        and (X.flags.c_contiguous or X.flags.f_contiguous)
    ):
        return step.fit(X)._apply(X)
    return step.fit_transform(X)
