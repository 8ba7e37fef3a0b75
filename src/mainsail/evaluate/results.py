"""What evaluation hands on: the candidates on the test rows, and the served model's scores.

Plain data (no logic), so the documents (card, report) and the evaluation that fills them can
share them without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mainsail.evaluate.compare import Selection
from mainsail.evaluate.stats import BootstrapCI
from mainsail.train.final import FinalModel


@dataclass
class TestEvaluation:
    """Every candidate on the test rows, the selection and the intervals."""

    outputs: dict[str, np.ndarray]
    """Model output per family (probabilities or values) on the test rows."""
    test_metrics: dict[str, dict[str, float]]
    selection: Selection
    test_ci: dict[str, BootstrapCI]
    """Bootstrap interval of the primary metric per family."""


@dataclass
class FinalEvaluation:
    """The served model (refit, calibrated, thresholded) on the test rows, and the checks."""

    final: FinalModel
    output: np.ndarray
    """Its output on the test rows (calibrated probabilities, or values)."""
    metrics: dict[str, float]
    ci: BootstrapCI
    """Bootstrap interval of the primary metric."""
    extra: dict[str, Any]
    """Calibration before/after, threshold metrics, baseline log loss, CV vs test per
    candidate, per-class metrics (JSON-safe)."""
    warnings: list[str]
    """Things a user must look at: "too good to be true", CV and test disagreeing."""
