"""Class-imbalance handling for classification: class weights or random oversampling.

`auto` switches handling on (class weights) when the minority class's share of the training rows
is under `imbalance.threshold`; `class_weight` and `oversample` always apply; `none` never does.
Weights are "balanced": rows / (classes × rows of the class), so every class weighs the same in
total. Oversampling repeats randomly drawn (seeded) training rows of each smaller class until it
has as many rows as the largest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mainsail.config import ProblemType
from mainsail.config.data import ImbalanceConfig


@dataclass(frozen=True)
class ImbalancePlan:
    """What the data stage decided about class imbalance."""

    applied: str
    """`none`, `class_weight` or `oversample`."""
    reason: str
    """Why (strategy and minority share)."""
    minority_share: float | None = None
    """Share of the rarest class in the training rows (classification)."""
    class_weight: dict[Any, float] | None = None
    """Per-class weights (when `applied` is `class_weight`)."""
    oversampled_train: np.ndarray | None = None
    """Training row positions with the repeats (when `applied` is `oversample`), sorted."""

    def summary(self) -> dict[str, Any]:
        """JSON-safe summary."""
        return {
            "applied": self.applied,
            "reason": self.reason,
            "minority_share": self.minority_share,
            "class_weight": (
                {str(k): v for k, v in self.class_weight.items()} if self.class_weight else None
            ),
            "oversampled_train_rows": (
                len(self.oversampled_train) if self.oversampled_train is not None else None
            ),
        }


def plan_imbalance(
    y: pd.Series,
    train: np.ndarray,
    cfg: ImbalanceConfig,
    problem_type: ProblemType,
    seed: int,
) -> ImbalancePlan:
    """Decide and prepare the handling from the training labels `y.iloc[train]`."""
    if problem_type != "classification":
        return ImbalancePlan("none", "regression: no class imbalance handling")
    y_train = y.iloc[train]
    counts = y_train.value_counts(sort=False)
    counts = counts[counts > 0].sort_index()
    share = float(counts.min() / counts.sum())
    if cfg.strategy == "none":
        return ImbalancePlan("none", "imbalance.strategy is none", share)
    if cfg.strategy == "auto" and share >= cfg.threshold:
        return ImbalancePlan(
            "none",
            f"auto: minority share {share:.1%} is not under the threshold {cfg.threshold:.0%}",
            share,
        )
    why = (
        f"auto: minority share {share:.1%} is under the threshold {cfg.threshold:.0%}"
        if cfg.strategy == "auto"
        else f"imbalance.strategy is {cfg.strategy}"
    )
    if cfg.strategy == "oversample":
        rng = np.random.default_rng(seed)
        labels = y_train.to_numpy()
        largest = int(counts.max())
        parts = [np.asarray(train, dtype=np.int64)]
        for label, count in counts.items():
            if count < largest:
                members = np.asarray(train)[labels == label]
                parts.append(rng.choice(members, largest - int(count), replace=True))
        return ImbalancePlan(
            "oversample", why, share, oversampled_train=np.sort(np.concatenate(parts))
        )
    total, k = float(counts.sum()), len(counts)
    weights = {_native(label): total / (k * float(c)) for label, c in counts.items()}
    return ImbalancePlan("class_weight", why, share, class_weight=weights)


def _native(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
