"""Helpers shared by the pipeline tests (imported by name; the test folders are not packages)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]


def tiny_overrides(tmp: Path, endpoint: str | None = None) -> dict[str, Any]:
    """Small data, fast candidates (baseline + linear), two tuning trials, two CV folds."""
    out: dict[str, Any] = {
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
    if endpoint:
        out["registry.endpoint"] = endpoint
    return out
