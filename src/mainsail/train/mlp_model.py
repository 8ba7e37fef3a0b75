"""The fitted MLP as served: hyperparameters, target coding and a numpy forward pass.

This module imports only numpy, so the serving env (MLServer, no torch) unpickles
:class:`MLPModel`: a Linear → ReLU stack needs no framework at inference, and leaving torch out
of serving keeps PyPI's CUDA build of torch (several GB) out of every serving image and pod.
Training lives in :mod:`mainsail.train.torch_model` (torch) and :mod:`mainsail.train.mlp_ray`
(Ray Train); `tests/model/test_candidates.py` checks that this forward pass gives the torch
network's outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


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


def linear_layers(state: dict[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight, bias) of each Linear layer of a `build_network` state dict, in network order.

    Keys are `<index>.weight` / `<index>.bias` of the nn.Sequential (ReLU and Dropout hold no
    weights, so their indices are skipped).
    """
    indices = sorted({int(k.split(".")[0]) for k in state}, key=int)
    return [
        (np.asarray(state[f"{i}.weight"], np.float32), np.asarray(state[f"{i}.bias"], np.float32))
        for i in indices
    ]


class MLPModel:
    """The fitted MLP on preprocessed arrays, with a scikit-learn-like predict interface.

    Pickles as plain data (numpy arrays and dataclasses); the forward pass runs in numpy
    (float32, as torch computed it), Dropout being the identity at inference.
    :class:`mainsail.train.model.TabularModel` puts the preprocessor in front.
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
        self._layers: list[tuple[np.ndarray, np.ndarray]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_layers"] = None  # rebuilt from `state` on load
        return state

    def _raw(self, X: Any) -> np.ndarray:
        if self._layers is None:
            self._layers = linear_layers(self.state)
        h = np.asarray(X, dtype=np.float32)
        last = len(self._layers) - 1
        for i, (weight, bias) in enumerate(self._layers):
            h = h @ weight.T + bias
            if i < last:
                np.maximum(h, 0.0, out=h)
        return h.astype(np.float64)

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
