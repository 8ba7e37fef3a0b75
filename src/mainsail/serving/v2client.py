"""Build Open Inference Protocol (V2) requests from a DataFrame, the way the runtime expects.

One V2 input per feature, in the schema's order: FP64 for numeric, BYTES for categorical, BOOL
for boolean features; `null` for a missing value. Used by clients, the demos and the tests.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from mainsail.data.schema import FeatureSchema


def v2_inputs(frame: pd.DataFrame, schema: FeatureSchema) -> list[dict[str, Any]]:
    """V2 REST inputs (one per feature) for the rows of `frame`."""
    inputs = []
    for spec in schema.features:
        values: list[Any] = [None if pd.isna(v) else v for v in frame[spec.name].tolist()]
        if spec.kind == "numeric":
            datatype = "FP64"
            values = [None if v is None else float(v) for v in values]
        elif spec.kind == "categorical":
            datatype = "BYTES"
            values = [None if v is None else str(v) for v in values]
        else:
            datatype = "BOOL"
            values = [None if v is None else bool(v) for v in values]
        inputs.append(
            {"name": spec.name, "shape": [len(values)], "datatype": datatype, "data": values}
        )
    return inputs


def v2_request(frame: pd.DataFrame, schema: FeatureSchema) -> dict[str, Any]:
    """A whole V2 inference request body for the rows of `frame`."""
    return {"inputs": v2_inputs(frame, schema)}
