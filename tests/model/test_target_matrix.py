"""Problem-type detection and every candidate family's defaults, on a matrix of target types.

Each target type (binary int / text / bool, multiclass text, integer and float regression) runs
the whole training stage with the problem type left to detection, every family trained with its
defaults (only LightGBM tuned: an untuned linear regression once got classification defaults and
crashed with `KeyError: 'alpha'`), cross-validated, selected, refit, calibrated and documented.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mainsail.config import parse_config
from mainsail.lifecycle.data import run_data_stage
from mainsail.lifecycle.run import run_training_stage

pytestmark = pytest.mark.slow

N = 400


def _frame(kind: str) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=N),
            "b": rng.normal(size=N),
            "c": rng.choice(["u", "v", "w"], N),
        }
    )
    signal = frame["a"] + 0.5 * frame["b"] + (frame["c"] == "u") + rng.normal(0, 0.7, N)
    if kind == "binary_int":
        frame["y"] = (signal > 0.8).astype(int)
    elif kind == "binary_str":
        frame["y"] = np.where(signal > 0.8, "bad", "good")
    elif kind == "binary_bool":
        frame["y"] = signal > 0.8
    elif kind == "multiclass":
        frame["y"] = pd.cut(signal, [-np.inf, 0.0, 1.0, np.inf], labels=["lo", "mid", "hi"]).astype(
            str
        )
    elif kind == "int_regression":
        frame["y"] = np.round(50 + 10 * signal).astype(int)  # many distinct integers
    else:
        frame["y"] = 3.0 * signal + rng.normal(0, 0.1, N)
    return frame


@pytest.mark.parametrize(
    ("kind", "problem_type"),
    [
        ("binary_int", "classification"),
        ("binary_str", "classification"),
        ("binary_bool", "classification"),
        ("multiclass", "classification"),
        ("int_regression", "regression"),
        ("float_regression", "regression"),
    ],
)
def test_every_family_runs_on_every_target_type(
    kind: str, problem_type: str, tmp_path: Path
) -> None:
    path = tmp_path / "d.parquet"
    _frame(kind).to_parquet(path, index=False)
    cfg = parse_config(
        {
            "name": "matrix",
            "seed": 3,
            "data": {"path": str(path), "target": "y"},  # problem type left to detection
            "split": {"strategy": "random"},
            "train": {
                "candidates": ["baseline", "linear", "tree", "lightgbm", "forest", "mlp"],
                "mlp": {"epochs": 3, "hidden": [8]},
                "ray": {"num_cpus": 2},
            },
            "tune": {"candidates": ["lightgbm"], "num_trials": 2, "backend": "optuna"},
            "evaluate": {
                "cv_folds": 2,
                "bootstrap": 100,
                "permutation_repeats": 1,
                "importance_rows": 100,
                "reference_rows": 100,
                "alpha": 0.3,
            },
        }
    )
    data = run_data_stage(cfg)
    assert data.problem_type == problem_type and data.problem_type_detected
    res = run_training_stage(cfg, data, tmp_path / "run")
    assert set(res.test_metrics) == {"baseline", "linear", "tree", "lightgbm", "forest", "mlp"}
    for family, metrics in res.test_metrics.items():
        assert all(np.isfinite(v) or family == "baseline" for v in metrics.values()), family
    assert res.chosen is not None, res.reason
    assert res.model is not None
    predicted = res.model.predict(data.X("test").head(5))
    if problem_type == "classification":
        labels = set(data.y("train").tolist())
        assert set(predicted.tolist()) <= labels
        proba = res.model.predict_proba(data.X("test").head(5))
        assert np.allclose(proba.sum(axis=1), 1.0)
    else:
        assert predicted.dtype.kind == "f"
