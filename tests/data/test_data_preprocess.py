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


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"clip_quantiles": None, "scale": False, "add_missing_indicators": False},
        {"categorical_impute": "most_frequent", "numeric_impute": "mean", "max_categories": 3},
    ],
)
def test_fitting_without_output_pickles_the_same_bytes_as_pipeline_fit(
    options: dict[str, object],
) -> None:
    """`fit_preprocessor` skips the stacked output that `ColumnTransformer.fit` computes and
    throws away; the fitted pipeline must be the very object `Pipeline.fit` makes (same pickle
    bytes, hence the same model digest), and transform the same way."""
    import io

    from mainsail.data.preprocess import build_preprocessor

    rng = np.random.default_rng(5)
    n = 1_500
    frame = pd.DataFrame(
        {
            "x": np.where(rng.random(n) < 0.05, np.nan, rng.normal(0, 1, n)).astype(np.float32),
            "k": rng.poisson(3, n).astype(np.int32),
            "flag": rng.random(n) < 0.4,
            "city": pd.Categorical(rng.choice(["a", "b", "c", "d", None], n)),
            "plan": rng.choice(["basic", "pro", "team"], n).astype(object),
            "code": rng.integers(0, 12, n),
        }
    )
    numeric, categorical = ["x", "k", "flag"], ["city", "plan", "code"]
    cfg = PreprocessConfig(**options)  # type: ignore[arg-type]
    fast = fit_preprocessor(cfg, frame, numeric, categorical)
    plain = build_preprocessor(cfg, numeric, categorical, ["x"]).fit(frame)

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
