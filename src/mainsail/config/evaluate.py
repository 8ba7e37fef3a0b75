"""Config section of evaluation: cross-validation, paired tests, importance, reference rows."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mainsail.config.base import StrictModel

CLASSIFICATION_METRICS = ("roc_auc", "pr_auc", "f1", "log_loss", "accuracy", "balanced_accuracy")
REGRESSION_METRICS = ("rmse", "mae", "r2")
DEFAULT_METRIC: dict[str, str] = {"classification": "roc_auc", "regression": "rmse"}


class EvaluateConfig(StrictModel):
    """Cross-validation and statistical selection."""

    cv_folds: int = Field(5, ge=2, le=20)
    """Folds of the cross-validation on train+validation."""
    alpha: float = Field(0.05, gt=0.0, lt=0.5)
    """Significance level of the paired tests."""
    bootstrap: int = Field(1000, ge=100, le=100_000)
    """Bootstrap resamples for test-set confidence intervals."""
    permutation_repeats: int = Field(5, ge=1, le=100)
    """Repeats of the permutation importance."""
    importance_rows: int = Field(5000, ge=100)
    """Test rows (a seeded sample) used by the permutation importance."""
    reference_rows: int = Field(5000, ge=100, le=100_000)
    """Raw training rows (a seeded sample, with predictions) saved for the drift sidecar."""
    cv_candidates: list[Literal["baseline", "linear", "tree", "forest", "mlp"]] | None = None
    """Candidates that are cross-validated; all trained ones when null. A candidate left out
    cannot be selected (its evidence against the baseline is missing)."""
