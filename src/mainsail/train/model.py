"""The predict-ready model object that is pickled into model.joblib.

It imports only numpy (and scipy for sparse input), so the serving env unpickles it without
Ray, Optuna, Feast or kfp. The fitted preprocessor (scikit-learn) and the fitted estimator
(scikit-learn or :class:`mainsail.train.mlp_model.MLPModel`) travel inside it.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def to_dense(X: Any) -> np.ndarray:
    """Preprocessor output as a dense float64 array (one-hot encoders may return sparse)."""
    if hasattr(X, "toarray"):
        X = X.toarray()
    return np.asarray(X, dtype=np.float64)


class TabularModel:
    """Raw feature frame in, predictions out: preprocessor + estimator + metadata."""

    def __init__(
        self,
        preprocessor: Any,
        estimator: Any,
        *,
        family: str,
        problem_type: str,
        features: list[str],
        params: dict[str, Any],
    ) -> None:
        self.preprocessor = preprocessor
        self.estimator = estimator
        self.family = family
        self.problem_type = problem_type
        self.features = list(features)
        self.params = dict(params)
        if problem_type == "classification":
            self.classes_ = np.asarray(estimator.classes_)

    def transform(self, X: Any) -> np.ndarray:
        """Preprocessed model input for the raw feature frame `X`."""
        missing = [c for c in self.features if c not in getattr(X, "columns", [])]
        if missing:
            raise ValueError(f"input is missing feature columns: {', '.join(missing)}")
        return to_dense(self.preprocessor.transform(X[self.features]))

    def predict(self, X: Any) -> np.ndarray:
        """Class labels (classification) or values (regression)."""
        return np.asarray(self.estimator.predict(self.transform(X)))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities in the order of `classes_` (classification only)."""
        if self.problem_type != "classification":
            raise AttributeError("predict_proba is only available for classification models")
        return np.asarray(self.estimator.predict_proba(self.transform(X)))
