"""Helpers of the model tests (a uniquely named module: tests/ folders are not packages)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mainsail.config import ProjectConfig, load_config

REPO = Path(__file__).resolve().parents[2]

#: Overrides that keep a whole training stage small (merged under each test's own).
SMALL: dict[str, Any] = {
    "train.mlp.epochs": 4,
    "train.mlp.hidden": [16],
    "train.ray.num_cpus": 2,
    "tune.num_trials": 3,
    "tune.time_budget_s": 60,
    "evaluate.cv_folds": 3,
    "evaluate.bootstrap": 200,
    "evaluate.permutation_repeats": 2,
    "evaluate.importance_rows": 600,
}


def small_config(name: str, data_path: Path, **overrides: Any) -> ProjectConfig:
    """`configs/<name>.yaml` with SMALL and `overrides` (dotted keys) applied."""
    return load_config(
        REPO / "configs" / f"{name}.yaml",
        {"data.path": str(data_path), **SMALL, **overrides},
    )
