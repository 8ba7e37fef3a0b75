"""The predict-ready model object that is pickled into model.joblib.

It imports only numpy (and scipy for sparse input), so the serving env unpickles it without
Ray, Optuna, Feast or kfp. The fitted preprocessor (scikit-learn), the fitted estimator
(scikit-learn, LightGBM or :class:`mainsail.train.mlp_model.MLPModel`), the probability
calibration and the decision threshold chosen on held-out predictions travel inside it.

Class order: `classes_` is the data stage's order, which for a binary target puts the positive
class last (column 1 of `predict_proba` is the positive class's probability, whatever its label
sorts as); the estimator's own columns (sorted labels) are reordered to it.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def to_dense(X: Any) -> np.ndarray:
    """Preprocessor output as a dense float64 array (one-hot encoders may return sparse)."""
    if hasattr(X, "toarray"):
        X = X.toarray()
    return np.asarray(X, dtype=np.float64)


def align_columns(proba: np.ndarray, have: Any, want: Any) -> np.ndarray:
    """Probability columns (in the order of `have`) put in the order of `want`; a class that
    `have` lacks (a fold without a rare class) gets zeros."""
    have_list, want_list = np.asarray(have).tolist(), np.asarray(want).tolist()
    if have_list == want_list:
        return proba
    out = np.zeros((len(proba), len(want_list)))
    index = {c: i for i, c in enumerate(want_list)}
    for j, c in enumerate(have_list):
        out[:, index[c]] = proba[:, j]
    return out


class Calibrator:
    """A fitted map from raw to calibrated probabilities (numpy only, so serving unpickles it).

    `sigmoid`: Platt scaling of each class's logit, p' = 1 / (1 + exp(-(a * logit(p) + b)));
    `isotonic`: a monotone step function, interpolated between its knots. Multiclass columns are
    calibrated one-vs-rest and renormalised.
    """

    def __init__(self, method: str, maps: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.method = method
        self.maps = maps
        """Per calibrated column: (a, b) for sigmoid, (knots x, values y) for isotonic."""

    def _one(self, p: np.ndarray, k: int) -> np.ndarray:
        first, second = self.maps[k]
        if self.method == "sigmoid":
            q = np.clip(p, 1e-12, 1 - 1e-12)
            z = float(first[0]) * np.log(q / (1 - q)) + float(second[0])
            return np.asarray(1.0 / (1.0 + np.exp(-z)))
        return np.asarray(np.interp(p, first, second))

    def transform(self, proba: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (rows sum to one)."""
        proba = np.asarray(proba, dtype=np.float64)
        if proba.shape[1] == 2:
            p1 = np.clip(self._one(proba[:, 1], 0), 0.0, 1.0)
            return np.column_stack([1.0 - p1, p1])
        cols = np.column_stack([self._one(proba[:, k], k) for k in range(proba.shape[1])])
        cols = np.clip(cols, 1e-12, None)
        return np.asarray(cols / cols.sum(axis=1, keepdims=True))


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
        classes: Any = None,
    ) -> None:
        self.preprocessor = preprocessor
        self.estimator = estimator
        self.family = family
        self.problem_type = problem_type
        self.features = list(features)
        self.params = dict(params)
        self.calibrator: Calibrator | None = None
        """Applied to the estimator's probabilities (set after selection, on validation rows)."""
        self.threshold: float | None = None
        """Binary: the positive class is predicted when its probability reaches this (chosen on
        validation rows); None = the most probable class."""
        self.fitted_on: str = "train"
        """Which rows the estimator saw: `train`, or `train+valid` after a refit."""
        if problem_type == "classification":
            own = np.asarray(estimator.classes_)
            self.classes_ = np.asarray(classes) if classes is not None else own

    def transform(self, X: Any) -> np.ndarray:
        """Preprocessed model input for the raw feature frame `X`."""
        missing = [c for c in self.features if c not in getattr(X, "columns", [])]
        if missing:
            raise ValueError(f"input is missing feature columns: {', '.join(missing)}")
        return to_dense(self.preprocessor.transform(X[self.features]))

    def raw_proba(self, X: Any) -> np.ndarray:
        """The estimator's probabilities in the order of `classes_`, before calibration."""
        proba = np.asarray(self.estimator.predict_proba(self.transform(X)), dtype=np.float64)
        return align_columns(proba, self.estimator.classes_, self.classes_)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities in the order of `classes_` (classification only), calibrated."""
        if self.problem_type != "classification":
            raise AttributeError("predict_proba is only available for classification models")
        proba = self.raw_proba(X)
        calibrator = getattr(self, "calibrator", None)
        return calibrator.transform(proba) if calibrator is not None else proba

    def labels_from_proba(self, proba: np.ndarray) -> np.ndarray:
        """Labels for probabilities in the order of `classes_`: the decision threshold for a
        binary model that has one, the most probable class otherwise."""
        threshold = getattr(self, "threshold", None)
        if threshold is not None and proba.shape[1] == 2:
            return np.asarray(self.classes_[(proba[:, 1] >= threshold).astype(np.int64)])
        return np.asarray(self.classes_[np.argmax(proba, axis=1)])

    def predict(self, X: Any) -> np.ndarray:
        """Class labels (classification) or values (regression)."""
        if self.problem_type == "classification":
            return self.labels_from_proba(self.predict_proba(X))
        return np.asarray(self.estimator.predict(self.transform(X)))
