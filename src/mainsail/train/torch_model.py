"""Training the MLP with PyTorch: its network and its training loop.

The fitted model is :class:`mainsail.train.mlp_model.MLPModel` (numpy only, so serving needs
no torch). Ray-specific code (TorchTrainer) lives in :mod:`mainsail.train.mlp_ray`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mainsail.train.mlp_model import MLPParams, TargetCoding


def build_network(n_in: int, n_out: int, hidden: Sequence[int], dropout: float) -> nn.Sequential:
    """Linear → ReLU → Dropout blocks, then a linear output layer (logits or value)."""
    layers: list[nn.Module] = []
    width = n_in
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = int(h)
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def _loss(coding: TargetCoding, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample loss (weights are applied by the caller)."""
    if coding.problem_type == "regression":
        return (out.squeeze(1) - target) ** 2
    if coding.n_out == 1:
        return nn.functional.binary_cross_entropy_with_logits(
            out.squeeze(1), target, reduction="none"
        )
    return nn.functional.cross_entropy(out, target, reduction="none")


@dataclass
class MLPFit:
    """What a training run returns: weights, the epoch they come from and the loss curve."""

    state: dict[str, np.ndarray]
    best_epoch: int
    history: list[dict[str, float]]
    device: str = "cpu"
    """Where the weights were trained (`cpu`, `cuda:0`, ...): the device of the parameters."""


def train_mlp(
    X: np.ndarray,
    y: np.ndarray,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    coding: TargetCoding,
    params: MLPParams,
    *,
    seed: int,
    sample_weight: np.ndarray | None = None,
    wrap_model: Callable[[nn.Module], nn.Module] | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    device: str = "cpu",
) -> MLPFit:
    """Train with Adam and early stopping on the validation loss; keep the best weights.

    `X`/`y` may be this worker's shard in data-parallel training: `wrap_model` (Ray's
    `prepare_model`, which wraps DDP) then keeps the replicas in sync. Every worker scores the
    full validation set, so all workers take the same early-stopping decision.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = build_network(X.shape[1], coding.n_out, params.hidden, params.dropout)
    model = wrap_model(net) if wrap_model is not None else net.to(device)
    dev = next(model.parameters()).device
    opt = torch.optim.Adam(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    Xt = torch.as_tensor(np.asarray(X, dtype=np.float32))
    yt = torch.as_tensor(coding.encode(np.asarray(y)))
    wt = torch.as_tensor(
        np.ones(len(X), np.float32) if sample_weight is None else sample_weight.astype(np.float32)
    )
    Xv = torch.as_tensor(np.asarray(X_valid, dtype=np.float32)).to(dev)
    yv = torch.as_tensor(coding.encode(np.asarray(y_valid))).to(dev)
    best_loss, best_epoch, stale = float("inf"), 0, 0
    best_state = copy.deepcopy(net.state_dict())
    history: list[dict[str, float]] = []
    for epoch in range(1, params.epochs + 1):
        model.train()
        order = torch.randperm(len(Xt), generator=gen)
        total = 0.0
        for start in range(0, len(order), params.batch_size):
            idx = order[start : start + params.batch_size]
            xb, yb, wb = Xt[idx].to(dev), yt[idx].to(dev), wt[idx].to(dev)
            opt.zero_grad()
            loss = (_loss(coding, model(xb), yb) * wb).sum() / wb.sum()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        model.eval()
        with torch.no_grad():
            valid_loss = float(_loss(coding, net(Xv), yv).mean())
        history.append(
            {"epoch": epoch, "train_loss": total / max(len(Xt), 1), "valid_loss": valid_loss}
        )
        if on_epoch is not None:
            on_epoch(epoch, valid_loss)
        if valid_loss < best_loss - 1e-6:
            best_loss, best_epoch, stale = valid_loss, epoch, 0
            best_state = copy.deepcopy(net.state_dict())
        else:
            stale += 1
            if stale >= params.patience:
                break
    state = {k: v.detach().cpu().numpy().copy() for k, v in best_state.items()}
    return MLPFit(state, best_epoch, history, str(dev))
