"""Fitting one candidate: the preprocessed arrays (with the imbalance handling applied) and the
final fit, wrapped with the data stage's preprocessor into a TabularModel.

A final fit runs in this process, or on Ray Train for large data (`train.distributed`): the MLP
on TorchTrainer, LightGBM on LightGBMTrainer over Ray Data. The refit after selection
(:func:`refit`) fits the chosen family again on the train and validation rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mainsail.config import ProjectConfig
from mainsail.data.prepared import DataStageResult
from mainsail.train.candidates import fit_arrays, oversample_indices, sample_weights
from mainsail.train.model import TabularModel, to_dense
from mainsail.train.threads import limit_threads

#: Families that can fit on Ray Train.
DISTRIBUTED_FAMILIES = ("mlp", "lightgbm")


def class_labels(data: DataStageResult) -> np.ndarray | None:
    """Class labels (classification) in the data stage's order: sorted, the positive class of
    a binary target last. Every probability output is aligned to it."""
    if data.problem_type != "classification":
        return None
    if data.classes is not None:
        return np.asarray(data.classes)
    import pandas as pd

    return np.array(sorted(pd.unique(data.frame[data.target].dropna()).tolist()))


def row_arrays(
    data: DataStageResult, rows: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Preprocessed rows with the imbalance handling applied (weights, or oversampling)."""
    frame = data.frame.iloc[rows]
    y = frame[data.target].to_numpy()
    if data.problem_type == "classification" and data.oversample:
        keep = oversample_indices(y, seed)
        rows = np.asarray(rows)[keep]
        frame = data.frame.iloc[rows]
        y = frame[data.target].to_numpy()
    Xt = to_dense(data.preprocessor.transform(frame[data.features]))
    w = sample_weights(y, data.class_weight) if data.problem_type == "classification" else None
    return Xt, y, w


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


def distributed(family: str, cfg: ProjectConfig, n_rows: int) -> bool:
    """Whether the final fit of `family` runs on Ray Train (see `train.distributed`)."""
    if family not in DISTRIBUTED_FAMILIES:
        return False
    mode = cfg.train.distributed
    if mode == "auto":
        return n_rows >= cfg.train.distributed_rows or bool(cfg.train.ray.address)
    return mode == "always"


def fit_final(
    family: str,
    params: dict[str, Any],
    data: DataStageResult,
    cfg: ProjectConfig,
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    X_valid: np.ndarray,
    ray_dir: Path,
    use_ray: bool = True,
    y_valid: np.ndarray | None = None,
) -> TabularModel:
    """Fit one family on `arrays` (the train rows); wrap it with the fitted preprocessor.

    On Ray Train when :func:`distributed` says so (and `use_ray`), in this process otherwise.
    """
    Xt, y, w = arrays
    yv = data.y("valid").to_numpy() if y_valid is None else y_valid
    est: Any
    if use_ray and distributed(family, cfg, len(Xt)) and family == "mlp":
        from mainsail.train.mlp_model import MLPModel, MLPParams, TargetCoding
        from mainsail.train.mlp_ray import fit_mlp_on_ray

        coding = TargetCoding.fit(y, data.problem_type)
        mlp_params = MLPParams.from_dict(params)
        fit = fit_mlp_on_ray(
            Xt,
            y,
            X_valid,
            yv,
            coding,
            mlp_params,
            seed=cfg.seed,
            ray_cfg=cfg.train.ray,
            storage_dir=ray_dir,
            sample_weight=w,
        )
        est = MLPModel(fit.state, Xt.shape[1], mlp_params, coding)
        est.history = fit.history
    elif use_ray and distributed(family, cfg, len(Xt)) and family == "lightgbm":
        from mainsail.train.lgbm_ray import fit_lightgbm_on_ray

        est = fit_lightgbm_on_ray(
            Xt,
            y,
            params,
            problem_type=data.problem_type,
            seed=cfg.seed,
            ray_cfg=cfg.train.ray,
            storage_dir=ray_dir,
            sample_weight=w,
        )
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
                y_valid=yv,
                threads=cfg.train.threads,
            )
    return TabularModel(
        data.preprocessor,
        est,
        family=family,
        problem_type=data.problem_type,
        features=data.features,
        params=params,
        classes=class_labels(data),
    )


def refit_params(family: str, params: dict[str, Any], model: TabularModel) -> dict[str, Any]:
    """The hyperparameters of a refit: the MLP trains for the epochs that were best on the
    validation rows (no early stopping: those rows are now training rows)."""
    if family != "mlp":
        return dict(params)
    history = getattr(model.estimator, "history", None) or []
    best = min(history, key=lambda h: h["valid_loss"])["epoch"] if history else params["epochs"]
    return {**params, "epochs": int(best), "patience": int(best) + 1}


def refit(
    family: str,
    params: dict[str, Any],
    data: DataStageResult,
    cfg: ProjectConfig,
    model: TabularModel,
    ray_dir: Path,
) -> TabularModel:
    """The chosen family fitted again on the train and validation rows (same preprocessor,
    fitted on the train rows; same imbalance handling); `fitted_on` says so."""
    rows = np.sort(np.concatenate([data.split.train, data.split.valid]))
    arrays = row_arrays(data, rows, cfg.seed)
    X_valid = to_dense(data.preprocessor.transform(data.X("valid")))
    final = fit_final(
        family,
        refit_params(family, params, model),
        data,
        cfg,
        arrays,
        X_valid,
        ray_dir,
    )
    final.params = dict(params)
    final.fitted_on = "train+valid"
    return final
