"""The PyTorch MLP: its network, its training loop and its predict-ready wrapper.

This module imports only numpy and torch: the serving env (MLServer, no Ray) unpickles
:class:`TorchMLPModel` from here. It holds the network weights as plain numpy arrays and
rebuilds the torch module lazily on first use.
Ray-specific code (TorchTrainer) lives in :mod:`mainsail.train.mlp_ray`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class MLPParams:
    """Hyperparameters of one MLP fit."""

    hidden: tuple[int, ...] = (64, 32)
    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    dropout: float = 0.1
    weight_decay: float = 0.0
    patience: int = 5
    """Epochs without a better validation loss before training stops."""

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> MLPParams:
        values = dict(params)
        if "hidden" in values:
            values["hidden"] = tuple(int(h) for h in values["hidden"])
        return cls(**values)


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


@dataclass
class TargetCoding:
    """How the target is turned into tensors: class indices or a standardised value."""

    problem_type: str
    classes: list[Any] = field(default_factory=list)
    mean: float = 0.0
    std: float = 1.0

    @property
    def n_out(self) -> int:
        if self.problem_type == "regression" or len(self.classes) == 2:
            return 1
        return len(self.classes)

    @classmethod
    def fit(cls, y: np.ndarray, problem_type: str) -> TargetCoding:
        if problem_type == "regression":
            y = y.astype(np.float64)
            std = float(y.std()) or 1.0
            return cls(problem_type, [], float(y.mean()), std)
        return cls(problem_type, sorted(np.unique(y).tolist()))

    def encode(self, y: np.ndarray) -> np.ndarray:
        if self.problem_type == "regression":
            return ((y.astype(np.float64) - self.mean) / self.std).astype(np.float32)
        index = {c: i for i, c in enumerate(self.classes)}
        codes = np.array([index[v] for v in y.tolist()], dtype=np.int64)
        return codes.astype(np.float32) if self.n_out == 1 else codes


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


class TorchMLPModel:
    """The fitted MLP on preprocessed arrays, with a scikit-learn-like predict interface.

    Pickles as plain data (numpy arrays and dataclasses), so it loads wherever numpy and torch
    are installed; :class:`mainsail.train.model.TabularModel` puts the preprocessor in front.
    """

    def __init__(
        self,
        state: dict[str, np.ndarray],
        n_in: int,
        params: MLPParams,
        coding: TargetCoding,
    ) -> None:
        self.state = state
        self.n_in = n_in
        self.params = params
        self.coding = coding
        self.problem_type = coding.problem_type
        if coding.problem_type != "regression":
            self.classes_ = np.array(coding.classes)
        self.history: list[dict[str, float]] = []
        """Per-epoch train/valid loss of the fit."""
        self._net: nn.Sequential | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_net"] = None  # rebuilt from `state` on load
        return state

    def _network(self) -> nn.Sequential:
        if self._net is None:
            net = build_network(
                self.n_in, self.coding.n_out, self.params.hidden, self.params.dropout
            )
            net.load_state_dict({k: torch.as_tensor(v) for k, v in self.state.items()})
            net.eval()
            self._net = net
        return self._net

    def _raw(self, X: Any) -> np.ndarray:
        Xt = np.asarray(X, dtype=np.float32)
        with torch.no_grad():
            return self._network()(torch.as_tensor(Xt)).numpy().astype(np.float64)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in the order of `classes_`."""
        if self.problem_type == "regression":
            raise AttributeError("predict_proba is only available for classification")
        out = self._raw(X)
        if self.coding.n_out == 1:
            p = 1.0 / (1.0 + np.exp(-out[:, 0]))
            return np.column_stack([1.0 - p, p])
        out = out - out.max(axis=1, keepdims=True)
        e = np.exp(out)
        return np.asarray(e / e.sum(axis=1, keepdims=True))

    def predict(self, X: Any) -> np.ndarray:
        """Class labels (classification) or values (regression)."""
        if self.problem_type == "regression":
            return np.asarray(self._raw(X)[:, 0] * self.coding.std + self.coding.mean)
        return np.asarray(self.classes_[np.argmax(self.predict_proba(X), axis=1)])
