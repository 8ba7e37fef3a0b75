"""The project config: one typed, validated YAML file that drives the whole lifecycle.

Load it once at the entry point with :func:`load_config` and pass the object down; nothing below
the entry point reads files or environment variables for settings. Every model forbids unknown
keys, and :func:`load_config` turns pydantic's errors into messages that name the key, the file
and the closest valid spelling.

This module imports only pydantic and PyYAML, so it loads in every runtime environment.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from mainsail.settings.base import StrictModel
from mainsail.settings.drift import DriftConfig
from mainsail.settings.features import FeaturesConfig
from mainsail.settings.monitor import MonitorConfig
from mainsail.settings.pipelines import PipelinesConfig
from mainsail.settings.promotion import PromotionConfig
from mainsail.settings.registry import RegistryConfig
from mainsail.settings.serving import ServingConfig
from mainsail.settings.stack import StackConfig

ProblemType = Literal["classification", "regression"]
Candidate = Literal["baseline", "linear", "tree", "forest", "mlp"]
TunedCandidate = Literal["linear", "tree", "forest", "mlp"]


def _default_candidates() -> list[Candidate]:
    return ["baseline", "linear", "tree", "mlp"]


def _default_tuned() -> list[TunedCandidate]:
    return ["tree"]


CLASSIFICATION_METRICS = ("roc_auc", "pr_auc", "f1", "log_loss", "accuracy", "balanced_accuracy")
REGRESSION_METRICS = ("rmse", "mae", "r2")
DEFAULT_METRIC: dict[str, str] = {"classification": "roc_auc", "regression": "rmse"}


class ConfigError(ValueError):
    """A config file that cannot be used; the message says which key and why."""


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

    package: Literal["ISLP"] = "ISLP"
    """Package that ships the dataset; only ISLP (`ISLP.load_data`) is supported today."""
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
    positive_class: str | int | None = None
    """Label of the positive class for binary classification; the minority class when omitted."""
    categorical: list[str] | None = None
    """Categorical feature columns; inferred from dtypes when omitted."""
    drop: list[str] = Field(default_factory=list)
    """Columns never used as features (free text, identifiers other than the entity key)."""
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


class RayConfig(StrictModel):
    """Where Ray work runs."""

    address: str | None = None
    """Ray cluster address (`ray://host:10001` or `auto`); local Ray when null."""
    num_cpus: int | None = Field(None, ge=1)
    """CPUs for local Ray; all of this machine's when null."""
    num_workers: int = Field(1, ge=1)
    """Data-parallel workers for the PyTorch trainer."""
    use_gpu: bool = False
    """Train the PyTorch model on GPUs (one per worker)."""


class MLPConfig(StrictModel):
    """Defaults of the PyTorch MLP candidate (tuning overrides them)."""

    hidden: list[int] = Field(default_factory=lambda: [64, 32])
    """Width of each hidden layer."""
    epochs: int = Field(20, ge=1, le=1000)
    """Training epochs."""
    batch_size: int = Field(256, ge=8)
    """Mini-batch size per worker."""
    lr: float = Field(1e-3, gt=0.0)
    """Adam learning rate."""
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    """Dropout between hidden layers."""


class TrainConfig(StrictModel):
    """Which candidates are trained."""

    candidates: list[Candidate] = Field(default_factory=_default_candidates)
    """Model families to train; `baseline` is always added when missing."""
    ray: RayConfig = Field(default_factory=RayConfig)
    """Ray placement for training and tuning."""
    mlp: MLPConfig = Field(default_factory=MLPConfig)
    """PyTorch MLP defaults."""
    threads: int = Field(1, ge=1, le=256)
    """Threads each fit may use (OpenMP, BLAS, torch). Fits run side by side on Ray instead;
    more threads than free cores slows gradient boosting down badly on shared machines."""


class TuneConfig(StrictModel):
    """Hyperparameter search budget."""

    enabled: bool = True
    """Tune the candidates listed in `candidates`."""
    candidates: list[TunedCandidate] = Field(default_factory=_default_tuned)
    """Candidates to tune (others keep their defaults)."""
    num_trials: int = Field(20, ge=1, le=10_000)
    """Trials per tuned candidate."""
    time_budget_s: float | None = Field(None, gt=0)
    """Stop a candidate's search after this many seconds."""
    max_concurrent: int | None = Field(None, ge=1)
    """Trials at once; the CPUs Ray has when null."""
    backend: Literal["auto", "optuna", "ray", "ray_tune"] = "auto"
    """Where trials run: `optuna` in this process; `ray` on Ray (independent trials as batches
    of Ray tasks, iterative MLP trials on Ray Tune with ASHA); `ray_tune` always on Ray Tune;
    `auto` probes one trial in-process and moves to `ray` only when it took `short_trial_s` or
    longer."""
    short_trial_s: float = Field(1.0, gt=0)
    """Trials shorter than this stay in-process under `auto` (Ray's per-trial overhead would
    dominate them)."""


class EvaluateConfig(StrictModel):
    """Cross-validation and statistical selection."""

    cv_folds: int = Field(5, ge=2, le=20)
    """Folds of the cross-validation on train+validation."""
    alpha: float = Field(0.05, gt=0.0, lt=0.5)
    """Significance level of the paired tests."""
    bootstrap: int = Field(1000, ge=100, le=100_000)
    """Bootstrap resamples for test-set confidence intervals."""
    permutation_repeats: int = Field(5, ge=1, le=100)
    """Repeats of the permutation importance."""
    importance_rows: int = Field(5000, ge=100)
    """Test rows (a seeded sample) used by the permutation importance."""
    reference_rows: int = Field(5000, ge=100, le=100_000)
    """Raw training rows (a seeded sample, with predictions) saved for the drift sidecar."""
    cv_candidates: list[Literal["baseline", "linear", "tree", "forest", "mlp"]] | None = None
    """Candidates that are cross-validated; all trained ones when null. A candidate left out
    cannot be selected (its evidence against the baseline is missing)."""


class ProjectConfig(StrictModel):
    """A Mainsail project: one dataset, one model name, and how every stage treats them."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,39}$")
    """Model name (lower-case letters, digits, dashes): names registry entries and resources."""
    description: str = ""
    """One line shown in reports and the model card."""
    seed: int = 42
    """Seed for every random choice: generator, splits, models, tuning."""
    metric: str | None = None
    """Primary metric; `roc_auc` for classification and `rmse` for regression when omitted."""
    runs_dir: Path = Path("runs")
    """Folder that receives one sub-folder per run, relative to the config file's folder."""
    data: DataConfig
    """The dataset."""
    split: SplitConfig = Field(default_factory=SplitConfig)
    """Train/validation/test split."""
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    """Preprocessing."""
    imbalance: ImbalanceConfig = Field(default_factory=ImbalanceConfig)
    """Class-imbalance handling."""
    train: TrainConfig = Field(default_factory=TrainConfig)
    """Candidates and Ray placement."""
    tune: TuneConfig = Field(default_factory=TuneConfig)
    """Tuning budget."""
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    """Cross-validation and selection."""
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    """Feast feature store."""
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    """Model registry."""
    serving: ServingConfig = Field(default_factory=ServingConfig)
    """Serving runtime."""
    stack: StackConfig = Field(default_factory=StackConfig)
    """Local stack, router and deployers."""
    drift: DriftConfig = Field(default_factory=DriftConfig)
    """Drift sidecar."""
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    """Monitoring, alerting, retraining and promotion."""
    pipelines: PipelinesConfig = Field(default_factory=PipelinesConfig)
    """Kubeflow Pipelines: image, resources, GPU placement, KubeRay, submission."""
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)
    """Feedback store, A/B analysis and metric-gated promotion."""

    @model_validator(mode="after")
    def _check_metric_and_split(self) -> ProjectConfig:
        if self.metric is not None:
            allowed = CLASSIFICATION_METRICS + REGRESSION_METRICS
            if self.metric not in allowed:
                raise ValueError(
                    f"metric {self.metric!r} is not supported{_suggest(self.metric, allowed)}; "
                    f"choose one of {', '.join(allowed)}"
                )
            if self.data.problem_type == "classification" and self.metric in REGRESSION_METRICS:
                raise ValueError(f"metric {self.metric!r} is a regression metric")
            if self.data.problem_type == "regression" and self.metric in CLASSIFICATION_METRICS:
                raise ValueError(f"metric {self.metric!r} is a classification metric")
        if self.split.strategy == "group" and not self.data.entity_key:
            raise ValueError("split.strategy 'group' needs data.entity_key")
        if self.split.strategy == "time" and not self.data.event_timestamp:
            raise ValueError("split.strategy 'time' needs data.event_timestamp")
        if self.split.test_size + self.split.valid_size >= 0.8:
            raise ValueError("split.test_size + split.valid_size must leave at least 20% to train")
        return self

    def primary_metric(self, problem_type: ProblemType) -> str:
        """The metric that ranks candidates, given the (possibly detected) problem type."""
        return self.metric or DEFAULT_METRIC[problem_type]

    def digest(self) -> str:
        """sha256 of the canonical JSON form: identifies the config in lineage."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()


def _suggest(word: str, choices: Any) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else ""


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The config model that holds the key at `loc` (for unknown-key suggestions)."""
    model: type[BaseModel] = ProjectConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        nested = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if nested is None:
            return None
        model = nested
    return model


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per problem: `file: dotted.key: what is wrong`."""
    lines = []
    for item in err.errors():
        loc = tuple(item["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        if item["type"] == "extra_forbidden":
            model = _model_at(loc)
            hint = _suggest(str(loc[-1]), model.model_fields) if model else ""
            lines.append(f"{source}: {key}: unknown key{hint}")
        elif item["type"] == "missing":
            lines.append(f"{source}: {key}: required key is missing")
        else:
            msg = str(item["msg"]).removeprefix("Value error, ")
            lines.append(f"{source}: {key}: {msg} (got {item.get('input')!r})")
    return "\n".join(lines)


def parse_config(
    raw: dict[str, Any], source: str = "<config>", base_dir: Path | None = None
) -> ProjectConfig:
    """Validate a config mapping; relative paths are resolved against `base_dir`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of keys at the top level")
    try:
        cfg = ProjectConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None
    if base_dir is not None:
        if not cfg.data.path.is_absolute():
            cfg.data.path = (base_dir / cfg.data.path).resolve()
        if not cfg.runs_dir.is_absolute():
            cfg.runs_dir = (base_dir / cfg.runs_dir).resolve()
        if not cfg.features.repo_dir.is_absolute():
            cfg.features.repo_dir = (base_dir / cfg.features.repo_dir).resolve()
    if cfg.features.training_set is None:
        # A features section means the features come from Feast (see FeaturesConfig).
        cfg.features.training_set = isinstance(raw.get("features"), dict)
    return cfg


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> ProjectConfig:
    """Read, validate and resolve a YAML project config.

    `overrides` maps dotted keys to values (`{"data.synthetic.rows": 1000}`), applied before
    validation so they are checked like the file's own keys.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    # Relative paths are relative to the config file, so a config works from any directory.
    return parse_config(raw, str(path), base_dir=path.resolve().parent)
