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
