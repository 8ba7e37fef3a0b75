"""Direct loss estimation (DLE) for regression: the expected error of served rows, no labels.

On the labelled reference sample, a gradient-boosted model learns the absolute error |y - yhat|
and another the squared error (y - yhat)^2 from the features and the model's own prediction.
For a window of served rows the estimated MAE is the mean of the first model's predictions and
the estimated RMSE the square root of the mean of the second's (clipped at 0). This is NannyML's
DLE: when the served rows move to where the model errs more (or less), the estimate follows,
because the error's dependence on the features was learnt; like CBPE it assumes that the
relation between features and target stays the reference's (covariate shift only). The
reference's own realised MAE and RMSE are kept for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["DirectLossEstimator"]


def _one_thread() -> Any:
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def _design(features: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    return np.hstack([x, np.asarray(predictions, dtype=np.float64).reshape(-1, 1)])


@dataclass
class DirectLossEstimator:
    """Fit with :meth:`fit` on the labelled reference; :meth:`estimate` a window."""

    seed: int = 0
    reference_metrics: dict[str, float] = field(default_factory=dict)
    _abs: Any = None
    _sq: Any = None

    def fit(
        self, features: np.ndarray, predictions: np.ndarray, targets: np.ndarray
    ) -> DirectLossEstimator:
        from sklearn.ensemble import HistGradientBoostingRegressor

        x = _design(features, predictions)
        err = np.asarray(targets, dtype=np.float64) - np.asarray(predictions, dtype=np.float64)
        keep = np.isfinite(err)
        x, err = x[keep], err[keep]

        def model() -> Any:
            return HistGradientBoostingRegressor(
                max_iter=80,
                learning_rate=0.1,
                min_samples_leaf=40,
                early_stopping=False,
                random_state=self.seed,
            )

        # One thread: a sidecar (or a test) sharing a small machine must not have OpenMP spin
        # every core; a few thousand reference rows fit in about a second.
        with _one_thread():
            self._abs = model().fit(x, np.abs(err))
            self._sq = model().fit(x, err**2)
        self.reference_metrics = {
            "mae": float(np.abs(err).mean()),
            "rmse": float(np.sqrt((err**2).mean())),
        }
        return self

    def estimate(self, features: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
        if self._abs is None:
            raise RuntimeError("fit the estimator on the labelled reference first")
        x = _design(features, predictions)
        keep = np.isfinite(x[:, -1])
        x = x[keep]
        if x.shape[0] == 0:
            return {"rows": 0.0}
        with _one_thread():
            mae = float(np.maximum(self._abs.predict(x), 0.0).mean())
            rmse = float(np.sqrt(np.maximum(self._sq.predict(x), 0.0).mean()))
        return {"mae": mae, "rmse": rmse, "rows": float(x.shape[0])}
