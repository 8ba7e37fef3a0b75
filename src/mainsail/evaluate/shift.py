"""How the test rows differ from the training rows: the target and each feature.

For a time split this is the shift the model meets in its first production period; the report
shows it beside the CV-vs-test comparison, so a test score below the CV estimate can be read
against it. Numeric features: the standardised mean difference (test mean - train mean over the
train standard deviation); categorical: the total variation distance between the two category
distributions (half the sum of absolute share differences); both 0 when nothing moved.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mainsail.data.prepared import DataStageResult


def _target(data: DataStageResult, side: str) -> dict[str, Any]:
    y = data.y(side)
    if data.problem_type == "classification":
        share = y.value_counts(normalize=True)
        positive = data.positive_class
        out: dict[str, Any] = {"rows": len(y)}
        if positive is not None:
            out["positive_share"] = float(share.get(positive, 0.0))
        else:
            out["class_share"] = {str(k): float(v) for k, v in share.sort_index().items()}
        return out
    values = y.to_numpy(dtype=np.float64)
    return {"rows": len(y), "mean": float(values.mean()), "std": float(values.std())}


def shift_summary(data: DataStageResult, top: int = 10) -> dict[str, Any]:
    """Target per side and the `top` features that moved most from train to test."""
    train, test = data.X("train"), data.X("test")
    rows: list[dict[str, Any]] = []
    for name in data.features:
        a, b = train[name], test[name]
        if name in data.categorical:
            pa = a.astype(object).where(a.notna(), "(missing)").value_counts(normalize=True)
            pb = b.astype(object).where(b.notna(), "(missing)").value_counts(normalize=True)
            keys = pa.index.union(pb.index)
            tvd = 0.5 * float(
                np.abs(pa.reindex(keys, fill_value=0) - pb.reindex(keys, fill_value=0)).sum()
            )
            rows.append({"feature": name, "kind": "categorical", "measure": "TVD", "shift": tvd})
        else:
            xa = pd.to_numeric(a, errors="coerce").astype(float)
            xb = pd.to_numeric(b, errors="coerce").astype(float)
            sd = float(xa.std()) or 1.0
            smd = (float(xb.mean()) - float(xa.mean())) / sd
            rows.append({"feature": name, "kind": "numeric", "measure": "SMD", "shift": float(smd)})
    rows.sort(key=lambda r: (-abs(float(r["shift"])), str(r["feature"])))
    return {
        "target": {side: _target(data, side) for side in ("train", "valid", "test")},
        "features": rows[:top],
    }
