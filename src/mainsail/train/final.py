"""The served model, made from the selected candidate: refit, calibration, decision threshold.

1. Calibration (classification) and the decision threshold (binary) are chosen on out-of-fold
   predictions: the cross-validation's fold models (fitted like the served model, on parts of
   the train+validation rows, with the same imbalance handling) scoring the rows they did not
   see (:mod:`mainsail.train.calibration`). Without them (the family was not cross-validated),
   on the validation rows' predictions of the train-only fit.
2. The refit (`train.refit`, on by default) fits the family again on the train and validation
   rows with the same hyperparameters (:func:`mainsail.train.fit.refit`); the calibration and the
   threshold from step 1 go with it. Out-of-fold predictions come from models trained the way
   the refit is (on most of those rows), which a calibration learnt on the train-only fit's
   validation predictions is not: on a time split, the validation period's base rate would be
   corrected for twice.

`mainsail.lifecycle.evaluation` calls :func:`finalize` after the selection, for `mainsail run`
and the kfp evaluate step alike.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mainsail.config import ProjectConfig
from mainsail.data.prepared import DataStageResult
from mainsail.train.calibration import (
    CalibrationChoice,
    ThresholdChoice,
    choose_threshold,
    fit_calibration,
)
from mainsail.train.fit import class_labels, refit
from mainsail.train.model import TabularModel


@dataclass
class FinalModel:
    """The model to serve and how it was made from the selected candidate."""

    model: TabularModel
    family: str
    rows: dict[str, int]
    """Rows the served estimator was fitted on, by side (`train`, and `valid` after a refit)."""
    calibration: CalibrationChoice | None = None
    threshold: ThresholdChoice | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-safe facts for metrics.json and the card."""
        cal = self.calibration
        thr = self.threshold
        return {
            "family": self.family,
            "fitted_on": self.model.fitted_on,
            "rows": dict(self.rows),
            "calibration": None
            if cal is None
            else {"method": cal.method, "cv_log_loss": cal.cv_log_loss, "reason": cal.reason},
            "threshold": None
            if thr is None
            else {"objective": thr.objective, "value": thr.threshold, "score": thr.value},
        }


def finalize(
    cfg: ProjectConfig,
    data: DataStageResult,
    family: str,
    params: dict[str, Any],
    model: TabularModel,
    storage_dir: Path,
    out_of_fold: tuple[np.ndarray, np.ndarray] | None = None,
) -> FinalModel:
    """Calibrate, choose the threshold, and refit (see the module docstring); `out_of_fold` is
    (row positions, fold models' probabilities in the order of the data stage's classes)."""
    calibration: CalibrationChoice | None = None
    threshold: ThresholdChoice | None = None
    if data.problem_type == "classification":
        classes = class_labels(data)
        assert classes is not None
        if out_of_fold is not None:
            held, raw = out_of_fold
            y_held = data.frame[data.target].to_numpy()[held]
        else:
            y_held = data.y("valid").to_numpy()
            raw = model.raw_proba(data.X("valid"))
        reweighted = bool(data.class_weight) or bool(data.oversample)
        calibration = fit_calibration(
            raw,
            y_held,
            classes,
            setting=cfg.evaluate.calibration,
            reweighted=reweighted,
            seed=cfg.seed,
        )
        proba = raw if calibration.calibrator is None else calibration.calibrator.transform(raw)
        if len(classes) == 2:
            ev = cfg.evaluate
            threshold = choose_threshold(
                proba[:, 1],
                y_held == classes[1],
                objective=ev.threshold,
                cost_fp=ev.cost_fp,
                cost_fn=ev.cost_fn,
            )
    rows = {"train": len(data.split.train)}
    final = copy.copy(model)  # the candidate itself stays as it was evaluated
    if cfg.train.refit:
        final = refit(family, params, data, cfg, model, storage_dir)
        rows["valid"] = len(data.split.valid)
    final.calibrator = None if calibration is None else calibration.calibrator
    final.threshold = None if threshold is None else threshold.threshold
    return FinalModel(final, family, rows, calibration, threshold)
