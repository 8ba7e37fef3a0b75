"""Every candidate family fits and predicts on small data, wrapped with its preprocessor."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from mainsail.config import ProjectConfig
from mainsail.data.prepared import DataStageResult
from mainsail.train.candidates import (
    FAMILIES,
    default_params,
    fit_arrays,
    mlp_params_dict,
    oversample_indices,
    sample_weights,
)
from mainsail.train.fit import class_labels, fit_final, train_arrays
from mainsail.train.model import TabularModel, to_dense


def _params(family: str, cfg: ProjectConfig) -> dict:
    p = default_params(family, cfg)
    return mlp_params_dict(p) if family == "mlp" else p


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_fits_and_predicts_churn(
    family: str, churn_cfg: ProjectConfig, churn_data: DataStageResult, tmp_path
) -> None:
    arrays = train_arrays(churn_data, churn_cfg.seed)
    X_valid = to_dense(churn_data.preprocessor.transform(churn_data.X("valid")))
    model = fit_final(
        family, _params(family, churn_cfg), churn_data, churn_cfg, arrays, X_valid, tmp_path,
        use_ray=False,
    )  # fmt: skip
    X_test = churn_data.X("test")
    proba = model.predict_proba(X_test)
    assert proba.shape == (len(X_test), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert list(model.classes_) == list(class_labels(churn_data))
    assert set(np.unique(model.predict(X_test))) <= set(model.classes_)
    if family == "baseline":
        assert np.ptp(proba[:, 1]) == 0.0  # a constant predictor
    else:
        assert np.ptp(proba[:, 1]) > 0.05
    # The pickled object predicts the same (it is what model.joblib holds).
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(X_test), proba)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_fits_regression(family: str) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5))
    y = 3 * X[:, 0] - 2 * X[:, 1] + rng.normal(0, 0.3, 400)
    params = default_params(family, _regression_cfg())
    if family == "mlp":
        params = {**mlp_params_dict(params), "epochs": 30, "lr": 1e-2}
    model = fit_arrays(family, params, X[:300], y[:300], problem_type="regression", seed=0)
    pred = model.predict(X[300:])
    rmse = float(np.sqrt(np.mean((pred - y[300:]) ** 2)))
    if family == "baseline":
        assert rmse > 2.5
    else:
        assert rmse < 1.6, f"{family} rmse {rmse:.3f}"


def _regression_cfg() -> ProjectConfig:
    from mainsail.config import parse_config

    return parse_config(
        {"name": "r", "data": {"path": "x.csv", "target": "y", "problem_type": "regression"}}
    )


def test_tabular_model_names_missing_columns(churn_cfg, churn_data, tmp_path) -> None:
    arrays = train_arrays(churn_data, churn_cfg.seed)
    model = fit_final("linear", {"C": 1.0}, churn_data, churn_cfg, arrays, arrays[0], tmp_path)
    with pytest.raises(ValueError, match="missing feature columns: support_calls"):
        model.predict(churn_data.X("test").drop(columns=["support_calls"]))


def test_unknown_family_is_a_clear_error(churn_cfg) -> None:
    with pytest.raises(ValueError, match="unknown candidate family 'xgb'"):
        default_params("xgb", churn_cfg)


def test_class_weights_become_sample_weights_and_missing_classes_are_named() -> None:
    w = sample_weights(np.array([0, 1, 1, 0]), {0: 0.5, 1: 2.0})
    np.testing.assert_array_equal(w, [0.5, 2.0, 2.0, 0.5])
    with pytest.raises(ValueError, match=r"no weight for classes \['2'\]"):
        sample_weights(np.array([0, 2]), {0: 1.0, 1: 1.0})


def test_oversampling_balances_classes_deterministically() -> None:
    y = np.array([0] * 90 + [1] * 10)
    idx = oversample_indices(y, seed=3)
    counts = pd.Series(y[idx]).value_counts()
    assert counts[0] == counts[1] == 90
    np.testing.assert_array_equal(idx, oversample_indices(y, seed=3))


@pytest.mark.slow
def test_mlp_trains_data_parallel_on_ray_train(
    ray_session, churn_cfg, churn_data, tmp_path
) -> None:
    """TorchTrainer with two workers (DDP over gloo): each trains on half of the rows."""
    cfg = churn_cfg.model_copy(deep=True)
    cfg.train.ray.num_workers = 2
    cfg.train.distributed = "always"  # small data fits in process under `auto`
    arrays = train_arrays(churn_data, cfg.seed)
    X_valid = to_dense(churn_data.preprocessor.transform(churn_data.X("valid")))
    params = {**_params("mlp", cfg), "lr": 1e-2, "epochs": 5}
    model = fit_final("mlp", params, churn_data, cfg, arrays, X_valid, tmp_path)
    assert isinstance(model, TabularModel)
    assert model.estimator.history, "the Ray worker's loss history came back"
    proba = model.predict_proba(churn_data.X("test"))
    from sklearn.metrics import roc_auc_score

    y = (churn_data.y("test").to_numpy() == 1).astype(int)
    assert roc_auc_score(y, proba[:, 1]) > 0.65


@pytest.mark.slow
def test_lightgbm_trains_data_parallel_on_ray_train_over_ray_data(
    ray_session, churn_cfg, churn_data, tmp_path
) -> None:
    """LightGBMTrainer with two workers, the rows as a Ray Dataset sharded across them
    (`data_parallel` tree learner): scores like the in-process fit of the same parameters,
    and the served object unpickles and scores in the serving env (no Ray, no torch)."""
    import subprocess

    from mainsail.train.fit import distributed
    from mainsail.train.lgbm_model import BoosterModel
    from tests.support.configs import REPO

    cfg = churn_cfg.model_copy(deep=True)
    cfg.train.ray.num_workers = 2
    assert not distributed("lightgbm", cfg, len(churn_data.split.train))  # small: in process
    cfg.train.distributed = "always"
    assert distributed("lightgbm", cfg, len(churn_data.split.train))
    arrays = train_arrays(churn_data, cfg.seed)
    X_valid = to_dense(churn_data.preprocessor.transform(churn_data.X("valid")))
    params = {**_params("lightgbm", cfg), "n_estimators": 60}
    model = fit_final("lightgbm", params, churn_data, cfg, arrays, X_valid, tmp_path)
    assert isinstance(model.estimator, BoosterModel)
    assert model.estimator.booster.num_trees() == 60
    local = fit_final("lightgbm", params, churn_data, cfg, arrays, X_valid, tmp_path, use_ray=False)
    from sklearn.metrics import roc_auc_score

    X_test = churn_data.X("test")
    y = (churn_data.y("test").to_numpy() == 1).astype(int)
    auc_ray = roc_auc_score(y, model.predict_proba(X_test)[:, 1])
    auc_local = roc_auc_score(y, local.predict_proba(X_test)[:, 1])
    assert auc_ray > 0.65 and abs(auc_ray - auc_local) < 0.05
    path = tmp_path / "lgbm.pkl"
    path.write_bytes(pickle.dumps(model))
    sample = tmp_path / "rows.parquet"
    X_test.head(20).to_parquet(sample)
    script = (
        "import sys, pickle, json, pandas as pd\n"
        f"m = pickle.load(open({str(path)!r}, 'rb'))\n"
        f"p = m.predict_proba(pd.read_parquet({str(sample)!r}))[:, 1]\n"
        "bad = [x for x in ('ray', 'torch', 'optuna') if x in sys.modules]\n"
        "print(json.dumps({'p': p.tolist(), 'bad': bad}))\n"
    )
    python = REPO / ".venv" / "serving" / "bin" / "python"
    out = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    got = __import__("json").loads(out.stdout.strip().splitlines()[-1])
    assert got["bad"] == []
    np.testing.assert_allclose(got["p"], model.predict_proba(X_test.head(20))[:, 1], rtol=1e-9)


@pytest.mark.parametrize(
    ("problem_type", "n_classes"), [("classification", 2), ("classification", 3), ("regression", 0)]
)
def test_served_mlp_forward_pass_matches_the_torch_network(
    problem_type: str, n_classes: int
) -> None:
    # Serving has no torch: MLPModel computes the network in numpy. It must give what the
    # torch network that was trained gives, dropout off.
    import torch

    from mainsail.train.mlp_model import MLPModel, MLPParams, TargetCoding
    from mainsail.train.torch_model import build_network

    rng = np.random.default_rng(3)
    X = rng.normal(size=(64, 7)).astype(np.float32)
    y = rng.integers(0, n_classes, 64) if n_classes else rng.normal(size=64)
    coding = TargetCoding.fit(y, problem_type)
    params = MLPParams(hidden=(16, 8), dropout=0.2)
    torch.manual_seed(0)
    net = build_network(7, coding.n_out, params.hidden, params.dropout).eval()
    state = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
    served = MLPModel(state, 7, params, coding)
    with torch.no_grad():
        expected = net(torch.as_tensor(X)).numpy()
    np.testing.assert_allclose(served._raw(X), expected, rtol=1e-5, atol=1e-6)
    again = pickle.loads(pickle.dumps(served))
    np.testing.assert_array_equal(again.predict(X), served.predict(X))
