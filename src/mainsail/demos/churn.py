"""Churn reference samples and served-row batches for the drift demo, tests and benchmark.

The registry writes the real reference sample and schema of a model version; this module makes
the same two files from the synthetic churn generator (`mainsail.data.synthetic`), so the
sidecar can be run and checked without a trained model. `score()` is a fixed logistic score that
stands in for a model's predicted churn probability.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mainsail.data.schema import FeatureSchema, FeatureSpec
from mainsail.data.synthetic import BOOLEAN, CATEGORICAL, FEATURES, NUMERIC, generate_churn

__all__ = [
    "CHURN_FEATURES",
    "churn_labelled_rows",
    "churn_rows",
    "churn_schema",
    "score",
    "write_churn_reference",
]

CHURN_FEATURES = FEATURES


def churn_schema(specs: list[FeatureSpec] | None = None) -> FeatureSchema:
    """The feature schema of a model trained on the churn generator's columns; `specs` replaces
    the generic per-column specs (e.g. ones with ranges measured on training rows)."""
    if specs is None:
        specs = [FeatureSpec(name=n, kind="numeric", dtype="float64") for n in NUMERIC]
        specs += [
            FeatureSpec(
                name=n, kind="categorical", dtype="string", categories=[str(c) for c in cats]
            )
            for n, cats in CATEGORICAL.items()
        ]
        specs += [FeatureSpec(name=n, kind="boolean", dtype="boolean") for n in BOOLEAN]
    return FeatureSchema(
        features=specs,
        target="churned",
        problem_type="classification",
        classes=["0", "1"],
        entity_key="customer_id",
        event_timestamp="event_timestamp",
        version=1,
    )


def score(frame: pd.DataFrame) -> np.ndarray:
    """A fixed churn score in [0, 1] (stands in for a model's predict_proba)."""
    sat = frame["satisfaction_score"].astype("float64").fillna(7.0).to_numpy()
    logit = (
        -2.0
        + 0.35 * frame["support_calls"].astype("float64").to_numpy()
        - 0.3 * (sat - 7.0)
        + 0.03 * frame["days_since_last_login"].astype("float64").to_numpy()
        + 0.01 * (frame["monthly_charges"].astype("float64").to_numpy() - 60.0)
    )
    return np.round(1.0 / (1.0 + np.exp(-logit)), 6)


def write_churn_reference(folder: Path, rows: int = 5000, seed: int = 42) -> Path:
    """Write `reference.parquet` (features + `prediction`) and `feature_schema.json` (the
    registry's names) into `folder`, and, as training does, `calibration.parquet` (held-out
    labelled rows with `prediction` and `proba_0` / `proba_1` of the fixed score) and a
    `model_card.yaml` whose `metrics.test` are the score's figures on those rows."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    # One snapshot per customer: served windows hold many customers, not a few repeated ones.
    frame = generate_churn(rows, entities=rows * 20, seed=seed)
    ref = frame[list(CHURN_FEATURES)].copy()
    ref["prediction"] = score(frame)
    ref.to_parquet(folder / "reference.parquet", index=False)
    churn_schema().save(folder / "feature_schema.json")
    held_out = generate_churn(rows, entities=rows * 20, seed=seed + 1000)
    cal = held_out[list(CHURN_FEATURES)].copy()
    p = score(held_out)
    cal["prediction"] = (p >= 0.5).astype(np.int64)
    cal["proba_0"], cal["proba_1"] = 1.0 - p, p
    cal["churned"] = held_out["churned"].to_numpy()
    cal.to_parquet(folder / "calibration.parquet", index=False)
    y = cal["churned"].to_numpy(np.float64)
    yhat = cal["prediction"].to_numpy(np.float64)
    tp = float((y * yhat).sum())
    order = np.argsort(p, kind="stable")
    ranks = np.empty(len(p))
    ranks[order] = np.arange(1, len(p) + 1)
    pos = y == 1
    auc = (ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * (~pos).sum())
    test = {
        "accuracy": round(float((y == yhat).mean()), 5),
        "f1": round(2 * tp / (2 * tp + float(((1 - y) * yhat).sum() + (y * (1 - yhat)).sum())), 5),
        "roc_auc": round(float(auc), 5),
    }
    card = {"model_name": "churn", "problem_type": "classification", "metrics": {"test": test}}
    (folder / "model_card.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    return folder


def churn_rows(
    rows: int, *, drift: float = 0.0, seed: int = 7
) -> tuple[list[dict[str, Any]], list[float]]:
    """Served rows (JSON-ready dicts of the features) and their scores."""
    out, preds, _ = churn_labelled_rows(rows, drift=drift, seed=seed)
    return out, preds


def churn_labelled_rows(
    rows: int, *, drift: float = 0.0, seed: int = 7
) -> tuple[list[dict[str, Any]], list[float], list[int]]:
    """Served rows, their scores, and the ground truth (`churned`) that arrives later."""
    frame = generate_churn(rows, entities=rows * 20, drift=drift, seed=seed)
    # The generator sorts by time, and tenure grows with time: shuffle so that any slice of the
    # rows is a sample of the whole period, like the reference.
    order = np.random.default_rng(seed).permutation(len(frame))
    frame = frame.iloc[order].reset_index(drop=True)
    preds = score(frame).tolist()
    feats = frame[list(CHURN_FEATURES)].astype("object")
    out: list[dict[str, Any]] = []
    for rec in feats.to_dict(orient="records"):
        out.append({k: _plain(v) for k, v in rec.items()})
    return out, preds, [int(v) for v in frame["churned"].tolist()]


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value
