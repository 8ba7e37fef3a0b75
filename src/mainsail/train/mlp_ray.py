"""Fit the PyTorch MLP data-parallel with Ray Train's TorchTrainer (pipeline env only).

Each worker trains on its rank's shard of the (already preprocessed) training rows; Ray's
`prepare_model` wraps the network in DDP when there is more than one worker, and moves it to
the worker's GPU when `use_gpu` is set. Rank 0 hands the best weights back as a checkpoint,
and reports the device its weights trained on (`MLPFit.device`), so a caller can tell that
`use_gpu` really put the work on a GPU.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mainsail.config.train import RayConfig
from mainsail.train.mlp_model import MLPParams, TargetCoding
from mainsail.train.torch_model import MLPFit

_STATE_FILE = "mlp_state.npz"
_HISTORY_KEY = "history"


def _train_loop_per_worker(config: dict[str, Any]) -> None:
    """Runs inside every Ray Train worker."""
    import json

    import ray
    import ray.train
    import ray.train.torch
    import torch

    from mainsail.train.ray_runtime import report_from_rank0
    from mainsail.train.torch_model import train_mlp

    torch.set_num_threads(1)  # one CPU per worker: avoid oversubscribing the node
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    X, y, Xv, yv, w = ray.get(config["data"])
    shard = slice(rank, None, world)  # rows interleaved across workers, disjoint and covering
    fit = train_mlp(
        X[shard],
        y[shard],
        Xv,
        yv,
        TargetCoding(**config["coding"]),
        MLPParams.from_dict(config["params"]),
        seed=int(config["seed"]),
        sample_weight=None if w is None else w[shard],
        wrap_model=ray.train.torch.prepare_model,
    )
    metrics = {"best_epoch": fit.best_epoch, "epochs_run": len(fit.history), "device": fit.device}

    def write(folder: Path) -> None:
        np.savez(folder / _STATE_FILE, **fit.state)  # type: ignore[arg-type]
        (folder / "history.json").write_text(json.dumps(fit.history))

    report_from_rank0(metrics, write)


def fit_mlp_on_ray(
    X: np.ndarray,
    y: np.ndarray,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    coding: TargetCoding,
    params: MLPParams,
    *,
    seed: int,
    ray_cfg: RayConfig,
    storage_dir: Path,
    sample_weight: np.ndarray | None = None,
) -> MLPFit:
    """Train on Ray with `ray_cfg.num_workers` workers (GPUs when `ray_cfg.use_gpu`)."""
    import json

    from mainsail.train.ray_runtime import ensure_ray, ray_storage

    ensure_ray(ray_cfg)
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    data_ref = ray.put((X, y, X_valid, y_valid, sample_weight))
    storage = ray_storage(storage_dir, "mlp")
    trainer = TorchTrainer(
        _train_loop_per_worker,
        train_loop_config={
            "data": data_ref,
            "coding": asdict(coding),
            "params": asdict(params),
            "seed": seed,
        },
        scaling_config=ScalingConfig(
            num_workers=ray_cfg.num_workers,
            use_gpu=ray_cfg.use_gpu,
            resources_per_worker={"CPU": 1, **({"GPU": 1} if ray_cfg.use_gpu else {})},
        ),
        run_config=RunConfig(
            name="mlp", storage_path=storage.path, storage_filesystem=storage.filesystem
        ),
    )
    try:
        result = trainer.fit()
        if result.checkpoint is None:
            raise RuntimeError(f"Ray Train finished without a checkpoint: {result.error!r}")
        with result.checkpoint.as_directory() as ckpt:
            with np.load(Path(ckpt) / _STATE_FILE) as npz:
                state = {k: npz[k].copy() for k in npz.files}
            history = json.loads((Path(ckpt) / "history.json").read_text())
    finally:
        storage.cleanup()
    metrics = result.metrics or {}
    return MLPFit(state, int(metrics["best_epoch"]), history, str(metrics["device"]))
