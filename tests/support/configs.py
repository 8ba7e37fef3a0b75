"""Project configs the tests and benchmarks share: the data-stage tests' churn-like config, the
model tests' small settings, and the one set of tiny overrides that makes a whole pipeline run
take seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mainsail.config import ProjectConfig, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
BAD_INPUTS = FIXTURES / "bad_inputs"

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


def make_config(path: Path, *, seed: int = 7, **sections: dict[str, Any]) -> ProjectConfig:
    """A config for `path`; `data`, `split`, ... sections are merged over churn-like defaults."""
    raw: dict[str, Any] = {
        "name": "test",
        "seed": seed,
        "data": {
            "path": str(path),
            "target": "churned",
            "entity_key": "customer_id",
            "event_timestamp": "event_timestamp",
        },
        "split": {"strategy": "group"},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return parse_config(raw, source="<test>")


def small_config(name: str, data_path: Path, **overrides: Any) -> ProjectConfig:
    """`configs/<name>.yaml` with SMALL and `overrides` (dotted keys) applied."""
    return load_config(
        REPO / "configs" / f"{name}.yaml",
        {"data.path": str(data_path), **SMALL, **overrides},
    )


def tiny_overrides(tmp: Path, endpoint: str | None = None) -> dict[str, Any]:
    """Small data, fast candidates (baseline + linear), two tuning trials, two CV folds; the
    registry at `endpoint` when given."""
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
