"""A tiny churn project for the step functions that the kfp components wrap (no kfp here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mainsail.config import ProjectConfig, config_to_json, load_config

REPO = Path(__file__).resolve().parents[3]


def tiny_overrides(tmp: Path) -> dict[str, Any]:
    """Small data, fast candidates (baseline + linear), two tuning trials, two CV folds."""
    return {
        "data.path": str(tmp / "churn.parquet"),
        "data.synthetic.rows": 600,
        "runs_dir": str(tmp / "runs"),
        "train.candidates": ["baseline", "linear"],
        "tune.candidates": ["linear"],
        "tune.num_trials": 2,
        "tune.backend": "optuna",
        "evaluate.cv_folds": 2,
        "evaluate.alpha": 0.3,
        "evaluate.bootstrap": 100,
        "evaluate.importance_rows": 100,
        "evaluate.reference_rows": 100,
        "evaluate.permutation_repeats": 1,
        "registry.cache_dir": str(tmp / "cache"),
    }


@pytest.fixture
def tiny_cfg(tmp_path: Path) -> ProjectConfig:
    return load_config(REPO / "configs" / "churn.yaml", tiny_overrides(tmp_path))


@pytest.fixture
def tiny_json(tiny_cfg: ProjectConfig) -> str:
    return config_to_json(tiny_cfg)
