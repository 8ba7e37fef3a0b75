"""The sidecar's label-free performance estimate of one model version.

Built when a version is loaded, from two optional files of its folder (next to the drift
reference): the labelled calibration sample (`drift.calibration_file`: held-out rows with the
target, the model's `prediction` and, for classifiers, `proba_<class>` columns; written by
training) and the model card (`drift.card_file`), whose `metrics.test` are the validated
figures the estimate is compared with. Binary classifiers get CBPE (expected accuracy, F1, ROC
AUC of the window's scores, after the calibration check and an isotonic recalibration on the
sample), regressors DLE (expected MAE and RMSE); other models, or versions without the sample,
get none. Each check estimates over the window's rows that carry what the estimator needs
(scores for CBPE, predictions for DLE).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mainsail.data.schema import FeatureSchema
from mainsail.drift.detectors import class_label
from mainsail.drift.encoding import Encoder

__all__ = ["VersionPerformance", "validated_metrics"]

log = logging.getLogger("mainsail.drift")

#: The metrics each estimator exports, and whether higher is better.
CLASSIFICATION_METRICS = ("accuracy", "f1", "roc_auc")
REGRESSION_METRICS = ("mae", "rmse")


def validated_metrics(card_text: bytes | str | None) -> dict[str, float]:
    """The validated test metrics of a model card (`metrics.test`, else numeric `metrics`)."""
    if not card_text:
        return {}
    import yaml

    try:
        card = yaml.safe_load(card_text)
    except yaml.YAMLError:
        return {}
    metrics = card.get("metrics") if isinstance(card, dict) else None
    if not isinstance(metrics, dict):
        return {}
    nested = metrics.get("test")
    test: dict[str, Any] = nested if isinstance(nested, dict) else metrics
    return {
        str(k): float(v)
        for k, v in test.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


@dataclass
class VersionPerformance:
    """A fitted estimator for one model version, and what it is compared with."""

    kind: str
    """`cbpe` (binary classification) or `dle` (regression)."""
    estimator: Any
    validated: dict[str, float]
    positive: str | None = None
    """CBPE: the positive class (the model's last class), as text."""
    calibration: dict[str, Any] = field(default_factory=dict)
    """CBPE: the calibration check on the sample (raw and recalibrated ECE)."""
    reference: dict[str, float] = field(default_factory=dict)
    """The realised metrics on the labelled sample."""

    @classmethod
    def build(
        cls,
        schema: FeatureSchema,
        encoder: Encoder,
        calibration: bytes,
        card: bytes | None,
        *,
        prediction_column: str,
        recalibrate: bool,
        seed: int,
    ) -> VersionPerformance | None:
        """The estimator of a version from its calibration sample; None (logged) when the
        sample cannot serve (no target, no scores, a multi-class model)."""
        import pandas as pd

        frame = pd.read_parquet(io.BytesIO(calibration))
        target = schema.target
        if not target or target not in frame.columns or len(frame) < 50:
            log.warning("calibration sample without target column %r or too small", target)
            return None
        validated = validated_metrics(card)
        if schema.problem_type == "regression":
            from mainsail.performance.dle import DirectLossEstimator

            if prediction_column not in frame.columns:
                log.warning("calibration sample has no %r column", prediction_column)
                return None
            num, cat = encoder.encode_frame(frame)
            dle = DirectLossEstimator(seed=seed).fit(
                np.hstack([num, cat.astype(np.float64)]),
                frame[prediction_column].to_numpy(np.float64),
                frame[target].to_numpy(np.float64),
            )
            return cls("dle", dle, validated, reference=dict(dle.reference_metrics))
        from mainsail.performance.cbpe import CBPE

        classes = [str(c) for c in (schema.classes or [])] or sorted(
            c.removeprefix("proba_") for c in frame.columns if c.startswith("proba_")
        )
        if len(classes) != 2 or f"proba_{classes[-1]}" not in frame.columns:
            log.warning("CBPE needs a binary classifier with proba_<class> in the sample")
            return None
        positive = class_label(classes[-1])
        scores = frame[f"proba_{classes[-1]}"].to_numpy(np.float64)
        labels = np.array([class_label(v) == positive for v in frame[target].tolist()], dtype=float)
        predicted = (
            np.array([class_label(v) == positive for v in frame[prediction_column].tolist()], float)
            if prediction_column in frame.columns
            else None
        )
        cbpe = CBPE.fit(scores, labels, predicted, recalibrate=recalibrate, seed=seed)
        return cls(
            "cbpe",
            cbpe,
            validated,
            positive=positive,
            calibration=cbpe.check.to_dict(),
            reference=dict(cbpe.reference_metrics),
        )

    @property
    def metrics(self) -> tuple[str, ...]:
        return CLASSIFICATION_METRICS if self.kind == "cbpe" else REGRESSION_METRICS

    def estimate(
        self,
        predictions: list[Any],
        scores: list[float | None],
        num: np.ndarray,
        cat: np.ndarray,
        min_rows: int,
    ) -> dict[str, Any] | None:
        """The estimate over the window (None when fewer than `min_rows` rows can be used)."""
        if self.kind == "cbpe":
            keep = [i for i, s in enumerate(scores) if s is not None]
            if len(keep) < min_rows:
                return None
            s = np.array([scores[i] for i in keep], dtype=np.float64)
            predicted = np.array(
                [
                    class_label(predictions[i]) == self.positive
                    if predictions[i] is not None
                    else float(scores[i] or 0.0) >= 0.5
                    for i in keep
                ]
            ).astype(bool)
            values = self.estimator.estimate(s, predicted)
        else:
            ok = np.array(
                [isinstance(p, int | float) and not isinstance(p, bool) for p in predictions]
            )
            if int(ok.sum()) < min_rows:
                return None
            preds = np.array([p for p, k in zip(predictions, ok, strict=True) if k], float)
            features = np.hstack([num[ok], cat[ok].astype(np.float64)])
            values = self.estimator.estimate(features, preds)
        return {
            "kind": self.kind,
            "estimate": {m: values[m] for m in self.metrics if m in values},
            "rows": int(values.get("rows", 0)),
            "validated": {m: self.validated[m] for m in self.metrics if m in self.validated},
            "calibration": self.calibration,
            "reference": self.reference,
        }
