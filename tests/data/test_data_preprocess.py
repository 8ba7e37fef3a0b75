"""The preprocessor: fitted on train rows only, robust to unseen input, follows sklearn rules."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import check_estimator

from mainsail.config.data import PreprocessConfig
from mainsail.core import columnwise
from mainsail.data.preprocess import (
    CategoryImputer,
    NumericCoercer,
    NumericImputer,
    QuantileClipper,
    fit_preprocessor,
)
from mainsail.lifecycle.data import run_data_stage
from tests.support.configs import make_config


@pytest.fixture(scope="module")
def shifted_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Rows whose later half is shifted: `amount` jumps by +100, a new `channel` appears."""
    rng = np.random.default_rng(0)
    n = 2_000
    late = np.arange(n) >= n // 2
    frame = pd.DataFrame(
        {
            "event_timestamp": pd.Timestamp("2024-01-01", tz="UTC")
            + pd.to_timedelta(np.arange(n), unit="h"),
            "amount": rng.normal(0, 1, n) + np.where(late, 100.0, 0.0),
            "score": np.where(rng.random(n) < 0.1, np.nan, rng.normal(5, 2, n)),
            "channel": np.where(late, "app", rng.choice(["web", "store"], n)),
            "y": (rng.random(n) < 0.3).astype(int),
        }
    )
    path = tmp_path_factory.mktemp("shift") / "shift.csv"
    frame.to_csv(path, index=False)
    return path


def _time_cfg(path: Path) -> object:
    return make_config(
        path,
        data={"target": "y", "entity_key": None, "event_timestamp": "event_timestamp"},
        split={"strategy": "time", "test_size": 0.25, "valid_size": 0.25},
    )


def test_preprocessor_is_fitted_on_train_rows_only(shifted_file: Path) -> None:
    result = run_data_stage(_time_cfg(shifted_file), None)  # type: ignore[arg-type]
    frame = result.frame
    train = frame.iloc[result.split.train]
    # The time split puts the shifted half in valid and test only.
    assert train["amount"].max() < 50 and frame["amount"].max() > 50

    num = result.preprocessor.named_steps["columns"].named_transformers_["num"]
    cols = list(result.numeric)
    j = cols.index("amount")
    clipper, scaler = num.named_steps["clip"], num.named_steps["scale"]
    imputer = num.named_steps["impute"]
    train_amount = train["amount"].to_numpy()
    all_amount = frame["amount"].to_numpy()
    lo, hi = np.quantile(train_amount, [0.005, 0.995])
    assert clipper.lower_[j] == pytest.approx(lo) and clipper.upper_[j] == pytest.approx(hi)
    clipped = np.clip(train_amount, lo, hi)
    assert scaler.mean_[j] == pytest.approx(clipped.mean())
    assert scaler.scale_[j] == pytest.approx(clipped.std())
    # Fitted on all rows, these would be about 50 and 100: the assertions above would fail.
    assert (
        abs(scaler.mean_[j] - np.clip(all_amount, *np.quantile(all_amount, [0.005, 0.995])).mean())
        > 40
    )
    k = cols.index("score")
    assert imputer.statistics_[k] == pytest.approx(np.nanmedian(train["score"].to_numpy()))

    cat = result.preprocessor.named_steps["columns"].named_transformers_["cat"]
    categories = set(cat.named_steps["onehot"].categories_[0])
    assert categories == {"web", "store"}, "a category seen only in valid/test leaked into fit"
    assert result.schema.get("channel").categories == ["store", "web"]
    assert result.schema.get("amount").max == pytest.approx(train_amount.max())


def test_unseen_categories_and_odd_values_do_not_crash_transform(shifted_file: Path) -> None:
    result = run_data_stage(_time_cfg(shifted_file), None)  # type: ignore[arg-type]
    pre = result.preprocessor
    n_out = len(pre.get_feature_names_out())
    new = pd.DataFrame(
        {
            "amount": [0.5, None, "1e3"],
            "score": [np.nan, 3.0, 4.0],
            "channel": ["never-seen", None, "web"],
        }
    )
    out = pre.transform(new)
    assert out.shape == (3, n_out)
    assert np.isfinite(out).all()
    names = list(pre.get_feature_names_out())
    onehot = [i for i, name in enumerate(names) if name.startswith("cat__channel_")]
    # Unknown and missing categories light no known category's column.
    known = [i for i in onehot if names[i] in ("cat__channel_web", "cat__channel_store")]
    assert out[0, known].sum() == 0 and out[2, names.index("cat__channel_web")] == 1.0
    # The value far above the train range is clipped to the train bound, then scaled.
    clipped_max = pre.transform(pd.DataFrame({"amount": [1e9], "score": [1.0], "channel": ["web"]}))
    assert clipped_max[0, names.index("num__amount")] == pytest.approx(
        pre.transform(pd.DataFrame({"amount": [1e3], "score": [1.0], "channel": ["web"]}))[
            0, names.index("num__amount")
        ]
    )


def test_preprocessor_round_trips_through_joblib(churn_file: Path, tmp_path: Path) -> None:
    result = run_data_stage(make_config(churn_file), tmp_path / "run")
    loaded = joblib.load(tmp_path / "run" / "preprocessor.joblib")
    X = result.X("test")
    assert np.array_equal(loaded.transform(X), result.preprocessor.transform(X))
    assert list(loaded.get_feature_names_out()) == list(result.preprocessor.get_feature_names_out())


def test_preprocess_options_shape_the_pipeline() -> None:
    rng = np.random.default_rng(2)
    X = pd.DataFrame(
        {
            "a": np.where(rng.random(300) < 0.2, np.nan, rng.normal(10, 3, 300)),
            "b": rng.normal(size=300),
            "c": pd.Categorical(rng.choice([f"k{i}" for i in range(12)], 300)),
        }
    )
    full = fit_preprocessor(PreprocessConfig(), X, ["a", "b"], ["c"])
    names = list(full.get_feature_names_out())
    assert "missing__missingindicator_a" in names and "missing__missingindicator_b" not in names
    assert sum(n.startswith("cat__c_") for n in names) == 12

    bare = fit_preprocessor(
        PreprocessConfig(
            numeric_impute="zero",
            clip_quantiles=None,
            scale=False,
            add_missing_indicators=False,
            max_categories=4,
            categorical_impute="most_frequent",
        ),
        X,
        ["a", "b"],
        ["c"],
    )
    names = list(bare.get_feature_names_out())
    assert not any(n.startswith("missing__") for n in names)
    assert sum(n.startswith("cat__c_") for n in names) == 4  # three kept + infrequent
    assert "cat__c_infrequent_sklearn" in names
    out = bare.transform(X)
    a = names.index("num__a")
    assert np.array_equal(out[:, a], X["a"].fillna(0.0).to_numpy())  # no clipping, no scaling


def test_numeric_coercer_names_the_column_with_text() -> None:
    coercer = NumericCoercer().fit(pd.DataFrame({"price": [1.0, 2.0]}))
    with pytest.raises(ValueError, match=r"column 'price': expected a number, got 'cheap'"):
        coercer.transform(pd.DataFrame({"price": ["3", "cheap"]}))


# check_estimator skips only its array-API check (SCIPY_ARRAY_API unset): not our concern.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
def test_quantile_clipper_follows_scikit_learn_conventions() -> None:
    clipper = QuantileClipper(low=0.1, high=0.9)
    assert not hasattr(clipper, "lower_"), "fitted attributes exist only after fit"
    with pytest.raises(NotFittedError):
        clipper.transform(np.zeros((2, 1)))
    X = np.arange(100, dtype=float).reshape(-1, 1)
    X[5, 0] = np.nan
    out = clipper.fit(X).transform(X)
    assert np.isnan(out[5, 0]) and np.nanmin(out) == pytest.approx(clipper.lower_[0])
    assert clone(clipper).get_params() == {"low": 0.1, "high": 0.9}
    with pytest.raises(ValueError, match="0 <= low < high <= 1"):
        QuantileClipper(low=0.9, high=0.1).fit(X)
    check_estimator(QuantileClipper())


def test_category_imputer_fills_learned_values_and_treats_numbers_as_text() -> None:
    train = pd.DataFrame(
        {
            "plan": pd.Categorical(["b", "a", None, "a", "b"]),
            "code": pd.Series([1, 2, 2, None, 3], dtype=object),
        }
    )
    most = CategoryImputer(strategy="most_frequent").fit(train)
    assert list(most.fill_values_) == ["a", "2"]  # tie a/b → the smaller; 2 wins outright
    out = most.transform(pd.DataFrame({"plan": [None, "z"], "code": [2.0, None]}))
    assert out.tolist() == [["a", "2"], ["z", "2"]]  # 2.0 is the category "2"
    const = CategoryImputer().fit(train)
    assert const.transform(train)[2, 0] == "__missing__"
    assert list(const.get_feature_names_out()) == ["plan", "code"]
    with pytest.raises(ValueError, match="strategy must be constant or most_frequent"):
        CategoryImputer(strategy="mode").fit(train)


# check_estimator skips only its array-API check (SCIPY_ARRAY_API unset): not our concern.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
def test_numeric_imputer_fills_train_statistics_and_follows_conventions() -> None:
    X = np.array(
        [[1.0, np.nan, np.nan], [3.0, 4.0, np.nan], [np.nan, 8.0, np.nan], [10.0, 6.0, np.nan]]
    )
    median = NumericImputer().fit(X)
    assert median.statistics_.tolist() == [3.0, 6.0, 0.0]  # all-missing column → 0
    assert NumericImputer("mean").fit(X).statistics_[0] == pytest.approx(14 / 3)
    assert NumericImputer("zero").fit(X).transform(X)[2, 0] == 0.0
    out = median.transform(X)
    assert out[2, 0] == 3.0 and out[0, 1] == 6.0 and np.isnan(X[2, 0]), "input left untouched"
    with pytest.raises(ValueError, match="strategy must be median, mean or zero"):
        NumericImputer("mode").fit(X)
    check_estimator(NumericImputer())


def _numbers_of_each_kind(rng: np.random.Generator, n: int) -> dict[str, object]:
    """float32 with missing values, int32, bool and nullable Int64 with missing values."""
    return {
        "x": np.where(rng.random(n) < 0.05, np.nan, rng.normal(0, 1, n)).astype(np.float32),
        "k": rng.poisson(3, n).astype(np.int32),
        "flag": rng.random(n) < 0.4,
        "m": pd.array(np.where(rng.random(n) < 0.1, None, rng.integers(0, 9, n)), "Int64"),
    }


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"clip_quantiles": None, "scale": False, "add_missing_indicators": False},
        {"categorical_impute": "most_frequent", "numeric_impute": "mean", "max_categories": 3},
    ],
)
@pytest.mark.parametrize("rows", ["all", "some"])
@pytest.mark.parametrize("threads", [False, True])
def test_fitting_without_output_pickles_the_same_bytes_as_pipeline_fit(
    options: dict[str, object], rows: str, threads: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`fit_preprocessor` skips the stacked output that `ColumnTransformer.fit` computes and
    throws away, gathers the numeric train rows itself and fits the missing indicator on one
    row; the fitted pipeline must be the very object `Pipeline.fit` makes on the train frame
    (same pickle bytes, hence the same model digest), and transform the same way. `some`: the
    train rows of a larger table, out of order, the first of them without a missing value.
    `threads`: the per-column work (the gather, the scaler's blocks) in threads, as on a long
    table, whatever this machine's cores."""
    import io

    from mainsail.data.preprocess import build_preprocessor

    if threads:
        monkeypatch.setattr(columnwise, "MIN_ROWS", 0)
        monkeypatch.setattr(columnwise, "usable_cores", lambda: 3)

    rng = np.random.default_rng(5)
    n = 1_500
    table = pd.DataFrame(
        {
            **_numbers_of_each_kind(rng, n),
            "t": rng.choice(["1.5", "2", None], n).astype(object),  # numbers as text
            "city": pd.Categorical(rng.choice(["a", "b", "c", "d", None], n)),
            "plan": rng.choice(["basic", "pro", "team"], n).astype(object),
            "code": rng.integers(0, 12, n),
            "unused": rng.normal(0, 1, n),
        }
    )
    numeric, categorical = ["x", "k", "flag", "m", "t"], ["city", "plan", "code"]
    features = numeric + categorical
    train = None
    if rows == "some":
        train = rng.permutation(n)[:900]
        complete = np.flatnonzero(table[["x", "m", "t"]].notna().all(axis=1).to_numpy()[train])
        train[[0, complete[0]]] = train[[complete[0], 0]]
    frame = table[features] if train is None else table.iloc[train][features]
    cfg = PreprocessConfig(**options)  # type: ignore[arg-type]
    fast = fit_preprocessor(cfg, table, numeric, categorical, rows=train, features=features)
    flagged = [c for c in numeric if frame[c].isna().any()]
    plain = build_preprocessor(cfg, numeric, categorical, flagged).fit(frame)

    def dumped(pipe: object) -> bytes:
        buffer = io.BytesIO()
        joblib.dump(pipe, buffer)
        return buffer.getvalue()

    assert dumped(fast) == dumped(plain)
    np.testing.assert_array_equal(fast.transform(frame), plain.transform(frame))
    np.testing.assert_array_equal(fast.transform(frame.iloc[:7]), plain.transform(frame.iloc[:7]))


@pytest.mark.parametrize("make", [QuantileClipper, NumericImputer])
def test_a_step_after_the_first_writes_its_output_over_its_input(make: type) -> None:
    """In the fit, the clipper's and the imputer's input is the previous step's array, which
    nothing else holds: they overwrite it instead of copying it (on ten million rows, the copy
    was the data stage's peak memory), with the same fitted step and the same values."""
    from mainsail.data.preprocess import _fit_transform_owned

    rng = np.random.default_rng(3)
    X = rng.normal(0, 1, (2_000, 3))
    X[rng.random(X.shape) < 0.05] = np.nan
    X[0, 0] = 80.0
    expected_step = make().fit(X)
    expected = expected_step.transform(X)

    step = make()
    out = _fit_transform_owned(step, X)
    assert out is X  # no second array
    np.testing.assert_array_equal(out, expected)
    assert joblib.hash(step) == joblib.hash(expected_step)
    # A frame (the first step's input, the taken rows) is never written over.
    frame = pd.DataFrame(rng.normal(0, 1, (50, 2)))
    before = frame.copy()
    _fit_transform_owned(make(), frame)
    pd.testing.assert_frame_equal(frame, before)


def test_feature_schema_from_train_rows_of_the_table_equals_that_of_the_taken_frame() -> None:
    """The data stage builds the schema from the table and the train row numbers, column by
    column (categories from their codes), without taking the train frame: it must be the
    schema of that frame, category seen only outside train rows, missing shares and ranges
    included."""
    from mainsail.data import preprocess
    from mainsail.data.prepared import build_feature_schema

    rng = np.random.default_rng(8)
    n = 2_000
    table = pd.DataFrame(
        {
            **_numbers_of_each_kind(rng, n),
            "city": pd.Categorical(rng.choice(["a", "b", "c", None], n), ["a", "b", "c", "z"]),
            "plan": rng.choice(["basic", "pro", None], n).astype(object),
            "other": rng.normal(0, 1, n),
            "zone": rng.choice([3.0, 1.0, 2.5, np.nan], n),  # numbers declared categorical
        }
    )
    train = rng.permutation(n)[:1_200]
    table.loc[train[:5], "city"] = None
    only_outside = np.setdiff1d(np.arange(n), train)[0]
    table.loc[only_outside, "x"] = 1e9  # beyond every train value: not in the schema's range
    features = ["plan", "x", "city", "k", "flag", "m", "zone"]
    numeric, categorical = ["x", "k", "flag", "m"], ["city", "plan", "zone"]
    options = {
        "target": "y",
        "problem_type": "classification",
        "classes": [0, 1],
        "entity_key": None,
        "event_timestamp": None,
    }
    direct = build_feature_schema(
        table, numeric, categorical, rows=train, features=features, **options
    )  # type: ignore[arg-type]
    taken = build_feature_schema(table.iloc[train][features], numeric, categorical, **options)  # type: ignore[arg-type]
    assert direct == taken
    assert [f.name for f in direct.features] == features
    assert direct.features[1].max is not None and direct.features[1].max < 1e9
    # Categories are the sorted texts of the values seen in train rows, 3.0 written as "3".
    seen = table.iloc[train]
    for spec in direct.features:
        if spec.kind == "categorical":
            values = seen[spec.name].dropna().unique()
            assert spec.categories == sorted({preprocess._text(v) for v in values}), spec.name
            assert spec.missing_share == round(seen[spec.name].isna().mean(), 6), spec.name
    assert direct.features[-1].categories == ["1", "2.5", "3"]


def test_one_hot_encoder_fitted_from_counts_is_the_one_fitted_on_the_texts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The categorical branch fits its encoder on a small stand-in with each column's texts
    and the order of their counts (`_category_proxy`) instead of every train row's text. On
    small tables full of tied counts (ties at the top, ties across the `max_categories` cut,
    a category and the fill value sharing a text), the pickled pipeline must be the one
    `Pipeline.fit` makes; the stand-in must be used in most, and refused in some."""
    import io

    from mainsail.data import preprocess

    made: list[bool] = []
    proxy = preprocess._category_proxy

    def counted(frame: pd.DataFrame, fills: list[str]) -> np.ndarray | None:
        out = proxy(frame, fills)
        made.append(out is not None)
        return out

    monkeypatch.setattr(preprocess, "_category_proxy", counted)

    def dumped(pipe: object) -> bytes:
        buffer = io.BytesIO()
        joblib.dump(pipe, buffer)
        return buffer.getvalue()

    rng = np.random.default_rng(11)
    for case in range(60):
        n = int(rng.integers(6, 30))
        levels = ["a", "b", "c", "dd", "__missing__", None]
        frame = pd.DataFrame(
            {
                "u": pd.Categorical(rng.choice(levels, n), ["a", "b", "c", "dd", "__missing__"]),
                "v": rng.choice(["x", "y", "zzz", None], n).astype(object),
                "w": pd.Categorical(rng.choice([1.0, 2.0, 3.0], n)),
                # numbers declared categorical, counted from their distinct values
                "f": rng.choice([1.0, 2.5, 3.0, -0.0, 0.0, np.nan], n),
                "i": rng.choice([7, 10, 12], n),
            }
        )
        cfg = PreprocessConfig(
            categorical_impute="most_frequent" if case % 2 else "constant",
            max_categories=int(rng.integers(2, 5)),
        )
        columns = ["u", "v", "w", "f", "i"]
        fast = fit_preprocessor(cfg, frame, [], columns)
        plain = preprocess.build_preprocessor(cfg, [], columns, []).fit(frame)
        assert dumped(fast) == dumped(plain), f"case {case}"
    assert made.count(True) > 30 and made.count(False) > 0


@pytest.mark.parametrize("missing", [False, True])
@pytest.mark.parametrize("cores", [2, 3, 8])
def test_a_scaler_fitted_by_column_blocks_pickles_the_same_bytes_as_its_fit(
    missing: bool, cores: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scaler of a long table is fitted as blocks of columns side by side; joined, it is
    the scaler `fit` makes, to the byte: one count for all columns or one per column (a
    missing value in some), a constant column, more cores than columns."""
    import io

    from sklearn.preprocessing import StandardScaler

    from mainsail.data.preprocess import _fit_scaler_by_columns

    monkeypatch.setattr(columnwise, "MIN_ROWS", 0)
    monkeypatch.setattr(columnwise, "usable_cores", lambda: cores)
    rng = np.random.default_rng(cores)
    X = np.asfortranarray(rng.normal(3, 2, (5_000, 5)) * [1, 1e6, 1e-6, 1, 1])
    X[:, 3] = 7.25  # constant: scale 1
    if missing:
        X[rng.random(5_000) < 0.01, 1] = np.nan

    def dumped(scaler: object) -> bytes:
        buffer = io.BytesIO()
        joblib.dump(scaler, buffer)
        return buffer.getvalue()

    blocks = StandardScaler()
    assert _fit_scaler_by_columns(blocks, X)
    assert dumped(blocks) == dumped(StandardScaler().fit(X))
    assert not _fit_scaler_by_columns(StandardScaler(), np.ascontiguousarray(X))  # row-major
