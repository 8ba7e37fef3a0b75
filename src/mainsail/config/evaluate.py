"""Config section of evaluation: cross-validation, paired tests, importance, reference rows."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

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
    """Bootstrap resamples for test-set confidence intervals (fewer in proportion above 20,000
    test rows, at least 200: such intervals are narrow and each resample costs per row)."""
    permutation_repeats: int = Field(5, ge=1, le=100)
    """Repeats of the permutation importance."""
    cv_max_rows: int | None = Field(40_000, ge=100)
    """Cross-validation folds are cut from a seeded sample of this many train+validation rows
    (in time order for time splits) when there are more; null uses every row."""
    importance_rows: int = Field(5000, ge=100)
    """Test rows (a seeded sample) used by the permutation importance."""
    reference_rows: int = Field(5000, ge=100, le=100_000)
    """Raw training rows (a seeded sample, with predictions) saved for the drift sidecar."""
    cv_candidates: (
        list[Literal["baseline", "linear", "tree", "lightgbm", "forest", "mlp"]] | None
    ) = None
    """Candidates that are cross-validated; all trained ones when null. A candidate left out
    cannot be selected (its evidence against the baseline is missing)."""
    recent_folds: int = Field(2, ge=1, le=20)
    """For time splits: the selection ranks candidates by their mean over this many latest
    forward-in-time folds (what predicts the most recent period), not over all folds."""
    calibration: Literal["auto", "sigmoid", "isotonic", "none"] = "auto"
    """Probability calibration of the chosen classifier, fitted on held-out predictions (the
    cross-validation's out-of-fold outputs of the chosen family): `auto` picks none, sigmoid or
    isotonic by cross-validated log loss on those rows (always sigmoid or isotonic after class
    weights or oversampling, which distort probabilities)."""
    threshold: Literal["f1", "cost", "none"] = "f1"
    """Decision threshold of a binary classifier, chosen on the same held-out predictions: `f1`
    maximises the positive class's F1, `cost` minimises `cost_fp` * false positives +
    `cost_fn` * false negatives; `none` keeps 0.5. Stored with the model; serving's `label`
    output uses it."""
    cost_fp: float = Field(1.0, ge=0.0)
    """Cost of a false positive (threshold `cost`)."""
    cost_fn: float = Field(1.0, ge=0.0)
    """Cost of a false negative (threshold `cost`)."""
    too_good: float = Field(0.99, gt=0.5, le=1.0)
    """A final test ROC AUC, R2 or balanced accuracy at or above this is reported as "too good
    to be true" (a warning in the card, the report and the CLI: look for leakage)."""

    @model_validator(mode="after")
    def _costs(self) -> EvaluateConfig:
        if self.threshold == "cost" and self.cost_fp + self.cost_fn <= 0:
            raise ValueError("evaluate.threshold 'cost' needs cost_fp + cost_fn > 0")
        return self
