"""Same config and seed → identical metrics and identical model bytes.

scikit-learn models are bit-exact, so the test compares the model.joblib bytes. The PyTorch MLP
is checked through a digest of its predictions (sha256 of the float64 probability bytes): torch
on CPU is deterministic for a fixed seed and thread count, which `train.threads` pins.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from mainsail.lifecycle.data import run_data_stage
from mainsail.lifecycle.run import run_training_stage
from mainsail.train.candidates import default_params, fit_arrays, mlp_params_dict
from mainsail.train.fit import train_arrays
from mainsail.train.threads import limit_threads
from mainsail.tune.search import read_log
from tests.support.configs import small_config

pytestmark = pytest.mark.slow


def test_same_config_and_seed_give_identical_metrics_and_model_bytes(tmp_path) -> None:
    overrides = {
        "data.synthetic.rows": 1500,
        "train.candidates": ["baseline", "linear", "tree"],
        "tune.backend": "optuna",
        "tune.num_trials": 2,
    }
    runs = []
    for name in ("a", "b"):
        cfg = small_config("churn", tmp_path / "churn.parquet", **overrides)
        data = run_data_stage(cfg)
        res = run_training_stage(cfg, data, tmp_path / name / "run")
        runs.append(res)
    a, b = runs
    assert a.chosen is not None
    assert a.metrics_path.read_bytes() == b.metrics_path.read_bytes()
    assert a.model_path is not None and b.model_path is not None
    assert a.model_path.read_bytes() == b.model_path.read_bytes()
    strip = [{k: v for k, v in r.items() if k != "duration_s"} for r in read_log(a.log_path)]
    assert strip == [
        {k: v for k, v in r.items() if k != "duration_s"} for r in read_log(b.log_path)
    ]
    for name in ("roc.png", "calibration.png"):
        assert (a.model_dir / "plots" / name).read_bytes() == (
            b.model_dir / "plots" / name
        ).read_bytes()


def test_mlp_prediction_digest_is_reproducible(churn_cfg, churn_data) -> None:
    X, y, w = train_arrays(churn_data, churn_cfg.seed)
    params = mlp_params_dict(default_params("mlp", churn_cfg))
    digests = []
    for _ in range(2):
        with limit_threads(1, torch_too=True):
            model = fit_arrays("mlp", params, X, y, problem_type="classification", seed=7,
                               sample_weight=w)  # fmt: skip
        proba = np.ascontiguousarray(model.predict_proba(X[:500]), dtype=np.float64)
        digests.append(hashlib.sha256(proba.tobytes()).hexdigest())
    assert digests[0] == digests[1]
    other = fit_arrays("mlp", params, X, y, problem_type="classification", seed=8, sample_weight=w)
    assert hashlib.sha256(other.predict_proba(X[:500]).tobytes()).hexdigest() != digests[0]
