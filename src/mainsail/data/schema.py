"""The feature schema saved with every model: names, dtypes, ranges and categories.

Serving validates requests against it, the drift sidecar picks detectors from it, Feast
definitions are checked against it. It depends on pydantic only, so every env can load it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FeatureKind = Literal["numeric", "categorical", "boolean"]


class FeatureSpec(BaseModel):
    """One input feature as seen in the training data."""

    model_config = ConfigDict(extra="forbid")

    name: str
    """Column name."""
    kind: FeatureKind
    """How the model treats it: numeric, categorical (strings) or boolean."""
    dtype: str
    """pandas dtype in the training frame (e.g. `float64`, `int64`, `string`, `boolean`)."""
    nullable: bool = True
    """Whether a missing value is acceptable (it is imputed as at training time)."""
    min: float | None = None
    """Smallest training value (numeric)."""
    max: float | None = None
    """Largest training value (numeric)."""
    categories: list[str] | None = None
    """Categories seen in training (categorical); others are rejected unless `open_vocabulary`."""
    open_vocabulary: bool = False
    """Accept categories never seen in training (mapped to the infrequent bucket)."""
    missing_share: float = 0.0
    """Share of missing values in training."""


class FeatureSchema(BaseModel):
    """The model's input contract."""

    model_config = ConfigDict(extra="forbid")

    features: list[FeatureSpec]
    """Inputs in the order the model expects them."""
    target: str
    """Name of the predicted column."""
    problem_type: Literal["classification", "regression"]
    """What the model predicts."""
    classes: list[str] | None = None
    """Class labels (classification), in the order of predict_proba's columns."""
    entity_key: str | None = None
    """Entity key column, when the dataset has one (requests may send it instead of features)."""
    event_timestamp: str | None = None
    """Event timestamp column, when the dataset has one."""
    version: int = Field(1, ge=1)
    """Schema format version."""

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def get(self, name: str) -> FeatureSpec:
        for spec in self.features:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> FeatureSchema:
        return cls.model_validate_json(path.read_text())
