"""model.joblib's bytes depend on the fitted model only, not on how its objects came to be.

`mainsail run` writes a model it fitted in-process; the pipeline's evaluate step writes one it
unpickled from the train step. Equal models must give equal files (the registry and the model
card identify a model by the file's sha256), and the file must load as a TabularModel.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mainsail.core.files import sha256_file
from mainsail.evaluate.document import save_model
from mainsail.train.model import TabularModel


def _model() -> tuple[TabularModel, pd.DataFrame]:
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"x": rng.normal(size=200), "plan": rng.choice(["basic", "premium"], 200)})
    y = (X["x"] + (X["plan"] == "premium") > 0.5).astype(int).to_numpy()
    pre = ColumnTransformer(
        [("num", StandardScaler(), ["x"]), ("cat", OneHotEncoder(drop=None), ["plan"])],
        remainder="drop",
    ).fit(X)
    est = LogisticRegression(solver="lbfgs").fit(pre.transform(X), y)
    model = TabularModel(
        pre,
        est,
        family="linear",
        problem_type="classification",
        features=["x", "plan"],
        params={"C": 1.0},
    )
    return model, X


def test_a_fitted_model_and_its_unpickled_copy_give_the_same_file(tmp_path: Path) -> None:
    model, X = _model()
    fitted = save_model(model, tmp_path / "fitted.joblib")
    # What a pipeline step holds: the model after a trip through a pickle file (equal strings
    # that were one object in the fitting process are separate objects now).
    joblib.dump(model, tmp_path / "candidate.joblib")
    copy = joblib.load(tmp_path / "candidate.joblib")
    assert pickle.dumps(copy) != pickle.dumps(model)  # the identities really differ
    unpickled = save_model(copy, tmp_path / "unpickled.joblib")
    assert sha256_file(fitted) == sha256_file(unpickled)

    loaded = joblib.load(fitted)
    assert isinstance(loaded, TabularModel)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert not list(tmp_path.glob("*.tmp"))


def test_positive_class_order_threshold_and_calibration_travel_with_the_model(
    tmp_path: Path,
) -> None:
    """Text labels whose positive class sorts first ("bad" < "good"): the model's columns are
    put in the data stage's order (positive last), the stored threshold decides the label,
    and the calibration is applied; all of it survives model.joblib."""
    from mainsail.train.calibration import choose_threshold, fit_map

    rng = np.random.default_rng(4)
    X = pd.DataFrame({"x": rng.normal(size=400)})
    y = np.where(X["x"] + rng.normal(0, 0.8, 400) > 1.2, "bad", "good")
    est = LogisticRegression(class_weight="balanced").fit(X[["x"]].to_numpy(), y)
    assert list(est.classes_) == ["bad", "good"]  # sorted: the positive class first
    model = TabularModel(
        StandardScaler().set_output(transform="pandas").fit(X),
        est,
        family="linear",
        problem_type="classification",
        features=["x"],
        params={},
        classes=["good", "bad"],
    )
    proba = model.predict_proba(X)
    assert list(model.classes_) == ["good", "bad"]
    np.testing.assert_allclose(proba[:, 1], est.predict_proba(model.transform(X))[:, 0])
    codes = (y == "bad").astype(int)
    model.calibrator = fit_map("sigmoid", proba, codes)
    calibrated = model.predict_proba(X)
    assert abs(calibrated[:, 1].mean() - codes.mean()) < abs(proba[:, 1].mean() - codes.mean())
    model.threshold = choose_threshold(calibrated[:, 1], codes == 1, objective="f1").threshold
    assert model.threshold is not None
    expected = np.where(calibrated[:, 1] >= model.threshold, "bad", "good")
    np.testing.assert_array_equal(model.predict(X), expected)
    loaded = joblib.load(save_model(model, tmp_path / "m.joblib"))
    np.testing.assert_array_equal(loaded.predict(X), expected)
    np.testing.assert_allclose(loaded.predict_proba(X), calibrated)


def test_cost_threshold_weighs_misses_against_false_alarms() -> None:
    from mainsail.train.calibration import choose_threshold

    p = np.linspace(0.01, 0.99, 99)
    truth = np.random.default_rng(1).random(99) < p  # calibrated scores
    cheap_misses = choose_threshold(p, truth, objective="cost", cost_fp=5.0, cost_fn=1.0)
    dear_misses = choose_threshold(p, truth, objective="cost", cost_fp=1.0, cost_fn=5.0)
    assert cheap_misses.threshold is not None and dear_misses.threshold is not None
    assert dear_misses.threshold < cheap_misses.threshold
