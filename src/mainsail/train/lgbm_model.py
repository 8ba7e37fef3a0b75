"""A LightGBM booster trained on Ray Train, as served: the scikit-learn-like face
(`classes_`, `predict_proba`, `predict`) that :class:`mainsail.train.model.TabularModel` expects.

In-process fits are LightGBM's own `LGBMClassifier` / `LGBMRegressor`; a booster that
Ray Train's LightGBMTrainer returns is wrapped here. Imports lightgbm only when it predicts, so
unpickling needs lightgbm (in the pipeline and serving envs) but not Ray.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class BoosterModel:
    """A trained `lightgbm.Booster` with its problem type and class labels (sorted)."""

    def __init__(self, booster: Any, problem_type: str, classes: list[Any] | None) -> None:
        self.booster = booster
        self.problem_type = problem_type
        if problem_type == "classification":
            self.classes_ = np.asarray(classes)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in the order of `classes_`."""
        if self.problem_type != "classification":
            raise AttributeError("predict_proba is only available for classification")
        out = np.asarray(self.booster.predict(np.asarray(X, dtype=np.float64)), dtype=np.float64)
        if out.ndim == 1:
            return np.column_stack([1.0 - out, out])
        return out

    def predict(self, X: Any) -> np.ndarray:
        """Class labels (classification) or values (regression)."""
        if self.problem_type == "classification":
            return np.asarray(self.classes_[np.argmax(self.predict_proba(X), axis=1)])
        return np.asarray(self.booster.predict(np.asarray(X, dtype=np.float64)))
