"""Config sections of training and tuning: candidates, Ray placement, the MLP, the search."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mainsail.config.base import StrictModel

Candidate = Literal["baseline", "linear", "tree", "lightgbm", "forest", "mlp"]
TunedCandidate = Literal["linear", "tree", "lightgbm", "forest", "mlp"]


def _default_candidates() -> list[Candidate]:
    return ["baseline", "linear", "tree", "lightgbm", "mlp"]


def _default_tuned() -> list[TunedCandidate]:
    return ["lightgbm"]


class RayConfig(StrictModel):
    """Where Ray work runs."""

    address: str | None = None
    """Ray cluster address (`ray://host:10001` or `auto`); local Ray when null."""
    num_cpus: int | None = Field(None, ge=1)
    """CPUs for local Ray; all of this machine's when null."""
    num_workers: int = Field(1, ge=1)
    """Data-parallel workers of Ray Train (the MLP's TorchTrainer, LightGBM's LightGBMTrainer)."""
    use_gpu: bool = False
    """Train the PyTorch model on GPUs (one per worker)."""


class MLPConfig(StrictModel):
    """Defaults of the PyTorch MLP candidate (tuning overrides them)."""

    hidden: list[int] = Field(default_factory=lambda: [64, 32])
    """Width of each hidden layer."""
    epochs: int = Field(20, ge=1, le=1000)
    """Training epochs."""
    batch_size: int = Field(256, ge=8)
    """Mini-batch size per worker."""
    lr: float = Field(1e-3, gt=0.0)
    """Adam learning rate."""
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    """Dropout between hidden layers."""


class TrainConfig(StrictModel):
    """Which candidates are trained."""

    candidates: list[Candidate] = Field(default_factory=_default_candidates)
    """Model families to train; `baseline` is always added when missing."""
    ray: RayConfig = Field(default_factory=RayConfig)
    """Ray placement for training and tuning."""
    mlp: MLPConfig = Field(default_factory=MLPConfig)
    """PyTorch MLP defaults."""
    threads: int = Field(1, ge=1, le=256)
    """Threads each fit may use (OpenMP, BLAS, torch). Fits run side by side on Ray instead;
    more threads than free cores slows gradient boosting down badly on shared machines."""
    distributed: Literal["auto", "always", "never"] = "auto"
    """Where the final fits of the MLP and LightGBM run: `always` on Ray Train (TorchTrainer,
    LightGBMTrainer over Ray Data, `ray.num_workers` workers), `never` in this process, `auto`
    on Ray Train when the training rows reach `distributed_rows` or `ray.address` names a
    cluster (in this process otherwise: Ray's start-up costs more than a small fit)."""
    distributed_rows: int = Field(200_000, ge=1)
    """Training rows from which `distributed: auto` fits on Ray Train."""
    refit: bool = True
    """After selection, refit the chosen model on train+validation rows (with the chosen
    hyperparameters; the MLP for its best number of epochs); false keeps the train-only fit.
    The model card says which rows the served model saw."""


class TuneConfig(StrictModel):
    """Hyperparameter search budget."""

    enabled: bool = True
    """Tune the candidates listed in `candidates`."""
    candidates: list[TunedCandidate] = Field(default_factory=_default_tuned)
    """Candidates to tune (others keep their defaults)."""
    num_trials: int = Field(20, ge=1, le=10_000)
    """Trials per tuned candidate (at most: `auto_budget` may run fewer on large data)."""
    max_rows: int | None = Field(20_000, ge=100)
    """Trials fit on a seeded sample of this many training rows when there are more (they are
    scored on every validation row); the final fits use every row. Null: every row."""
    auto_budget: bool = True
    """Scale the number of trials to the data: `num_trials` up to 20,000 training rows, then
    fewer in proportion to the square root of the rows (at least 4); deterministic, unlike a
    time budget. False runs `num_trials`."""
    time_budget_s: float | None = Field(None, gt=0)
    """Stop a candidate's search after this many seconds."""
    max_concurrent: int | None = Field(None, ge=1)
    """Trials at once; the CPUs Ray has when null."""
    backend: Literal["auto", "optuna", "ray", "ray_tune"] = "auto"
    """Where trials run: `optuna` in this process; `ray` on Ray (independent trials as batches
    of Ray tasks, iterative MLP trials on Ray Tune with ASHA); `ray_tune` always on Ray Tune;
    `auto` probes one trial in-process and moves to `ray` only when it took `short_trial_s` or
    longer."""
    short_trial_s: float = Field(3.0, gt=0)
    """Trials shorter than this stay in-process under `auto` (Ray's per-trial overhead would
    dominate them)."""
