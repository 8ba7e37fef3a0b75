"""Fitting one candidate on the train rows: the preprocessed arrays (with the imbalance handling
applied) and the final fit, wrapped with the data stage's preprocessor into a TabularModel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mainsail.config import ProjectConfig
from mainsail.data.prepared import DataStageResult
from mainsail.train.candidates import fit_arrays, oversample_indices, sample_weights
from mainsail.train.model import TabularModel, to_dense
from mainsail.train.threads import limit_threads


def class_labels(data: DataStageResult) -> np.ndarray | None:
    """Sorted class labels (classification), as every estimator orders predict_proba."""
    if data.problem_type != "classification":
        return None
    return np.array(sorted(pd.unique(data.frame[data.target].dropna()).tolist()))


def train_arrays(
    data: DataStageResult, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Preprocessed train rows with imbalance handling applied (weights or oversampling)."""
    rows = data.split.train
    if data.problem_type == "classification" and data.oversample:
        rows = (
            data.oversampled_train
            if data.oversampled_train is not None
            else rows[oversample_indices(data.y("train").to_numpy(), seed)]
        )
    frame = data.frame.iloc[rows]
    Xt = to_dense(data.preprocessor.transform(frame[data.features]))
    y = frame[data.target].to_numpy()
    w = sample_weights(y, data.class_weight) if data.problem_type == "classification" else None
    return Xt, y, w


def fit_final(
    family: str,
    params: dict[str, Any],
    data: DataStageResult,
    cfg: ProjectConfig,
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    X_valid: np.ndarray,
    ray_dir: Path,
    use_ray: bool = True,
) -> TabularModel:
    """Fit one family on the train rows; wrap it with the data stage's fitted preprocessor."""
    Xt, y, w = arrays
    if family == "mlp" and use_ray:
        from mainsail.train.mlp_model import MLPModel, MLPParams, TargetCoding
        from mainsail.train.mlp_ray import fit_mlp_on_ray

        coding = TargetCoding.fit(y, data.problem_type)
        mlp_params = MLPParams.from_dict(params)
        fit = fit_mlp_on_ray(
            Xt,
            y,
            X_valid,
            data.y("valid").to_numpy(),
            coding,
            mlp_params,
            seed=cfg.seed,
            ray_cfg=cfg.train.ray,
            storage_dir=ray_dir,
            sample_weight=w,
        )
        est: Any = MLPModel(fit.state, Xt.shape[1], mlp_params, coding)
        est.history = fit.history
    else:
        with limit_threads(cfg.train.threads, torch_too=family == "mlp"):
            est = fit_arrays(
                family,
                params,
                Xt,
                y,
                problem_type=data.problem_type,
                seed=cfg.seed,
                sample_weight=w,
                X_valid=X_valid,
                y_valid=data.y("valid").to_numpy(),
            )
    return TabularModel(
        data.preprocessor,
        est,
        family=family,
        problem_type=data.problem_type,
        features=data.features,
        params=params,
    )
