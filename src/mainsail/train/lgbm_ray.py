"""Fit LightGBM data-parallel with Ray Train's LightGBMTrainer over Ray Data (pipeline env).

The preprocessed rows become a Ray Dataset (one column per feature, the label coded as a
number, the sample weight); Ray Train shards it across `train.ray.num_workers` workers, and each
worker trains on its shard with LightGBM's `data_parallel` tree learner, the network set up by
Ray (`get_network_params`). Rank 0 saves the booster as the run's checkpoint; the fitted model
is a :class:`mainsail.train.lgbm_model.BoosterModel`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mainsail.config.train import RayConfig
from mainsail.train.lgbm_model import BoosterModel

_MODEL_FILE = "model.txt"
_LABEL, _WEIGHT = "__label__", "__weight__"


def objective_params(problem_type: str, n_classes: int) -> dict[str, Any]:
    """LightGBM's objective for the problem type."""
    if problem_type == "regression":
        return {"objective": "regression"}
    if n_classes == 2:
        return {"objective": "binary"}
    return {"objective": "multiclass", "num_class": n_classes}


def booster_params(params: dict[str, Any], seed: int) -> dict[str, Any]:
    """The family's hyperparameters in LightGBM's native names (what `lgb.train` takes)."""
    out = {
        "learning_rate": params["learning_rate"],
        "num_leaves": params["num_leaves"],
        "min_child_samples": params["min_child_samples"],
        "bagging_fraction": params["subsample"],
        "bagging_freq": 1 if float(params["subsample"]) < 1.0 else 0,
        "feature_fraction": params["colsample_bytree"],
        "lambda_l2": params["reg_lambda"],
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 1,
        "verbose": -1,
    }
    return out


def _train_loop_per_worker(config: dict[str, Any]) -> None:
    """Runs inside every Ray Train worker: its shard of the rows, data-parallel LightGBM."""
    import lightgbm as lgb
    import ray.train
    from ray.train.lightgbm import get_network_params

    from mainsail.train.ray_runtime import report_from_rank0

    shard = ray.train.get_dataset_shard("train").materialize().to_pandas()
    y = shard.pop(_LABEL).to_numpy()
    w = shard.pop(_WEIGHT).to_numpy()
    X = shard.to_numpy(dtype=np.float64)
    params = {
        **config["params"],
        "tree_learner": "data_parallel",
        "pre_partition": True,
        **get_network_params(),
    }
    booster = lgb.train(params, lgb.Dataset(X, label=y, weight=w), config["rounds"])
    metrics = {"rows": len(X), "trees": booster.num_trees()}

    def write(folder: Path) -> None:
        booster.save_model(str(folder / _MODEL_FILE))

    report_from_rank0(metrics, write)


def fit_lightgbm_on_ray(
    X: np.ndarray,
    y: np.ndarray,
    params: dict[str, Any],
    *,
    problem_type: str,
    seed: int,
    ray_cfg: RayConfig,
    storage_dir: Path,
    sample_weight: np.ndarray | None = None,
) -> BoosterModel:
    """Train on Ray Train with `ray_cfg.num_workers` workers; returns the served model."""
    from mainsail.train.ray_runtime import ensure_ray, ray_storage

    ensure_ray(ray_cfg)
    import lightgbm as lgb
    import pandas as pd
    import ray.data
    from ray.train import RunConfig, ScalingConfig
    from ray.train.lightgbm import LightGBMTrainer

    classes: list[Any] | None = None
    if problem_type == "classification":
        classes = sorted(np.unique(y).tolist())
        index = {c: i for i, c in enumerate(classes)}
        label = np.array([index[v] for v in y.tolist()], dtype=np.float64)
    else:
        label = np.asarray(y, dtype=np.float64)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    frame[_LABEL] = label
    frame[_WEIGHT] = np.ones(len(X)) if sample_weight is None else sample_weight
    # Ray Data splits the rows into blocks that Ray Train hands out, one shard per worker.
    blocks = np.array_split(np.arange(len(frame)), max(2, ray_cfg.num_workers))
    dataset = ray.data.from_pandas([frame.iloc[b[0] : b[-1] + 1] for b in blocks if len(b)])
    storage = ray_storage(storage_dir, "lightgbm")
    native = {
        **booster_params(params, seed),
        **objective_params(problem_type, len(classes or [])),
    }
    trainer = LightGBMTrainer(
        _train_loop_per_worker,
        train_loop_config={"params": native, "rounds": int(params["n_estimators"])},
        scaling_config=ScalingConfig(
            num_workers=ray_cfg.num_workers, resources_per_worker={"CPU": 1}
        ),
        run_config=RunConfig(
            name="lightgbm", storage_path=storage.path, storage_filesystem=storage.filesystem
        ),
        datasets={"train": dataset},
    )
    try:
        result = trainer.fit()
        if result.checkpoint is None:
            raise RuntimeError(f"Ray Train finished without a checkpoint: {result.error!r}")
        with result.checkpoint.as_directory() as ckpt:
            booster = lgb.Booster(model_file=str(Path(ckpt) / _MODEL_FILE))
    finally:
        storage.cleanup()
    return BoosterModel(booster, problem_type, classes)
