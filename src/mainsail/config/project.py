"""The project config: one section per stage, each in its own module of this package."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import Field, model_validator

from mainsail.config.base import ConfigError, ProblemType, StrictModel, suggest
from mainsail.config.data import DataConfig, ImbalanceConfig, PreprocessConfig, SplitConfig
from mainsail.config.drift import DriftConfig
from mainsail.config.environments import EnvironmentConfig, default_environments
from mainsail.config.evaluate import (
    CLASSIFICATION_METRICS,
    DEFAULT_METRIC,
    REGRESSION_METRICS,
    EvaluateConfig,
)
from mainsail.config.features import FeaturesConfig
from mainsail.config.monitor import MonitorConfig
from mainsail.config.observability import ObservabilityConfig
from mainsail.config.pipelines import PipelinesConfig
from mainsail.config.privacy import PrivacyConfig
from mainsail.config.promotion import PromotionConfig
from mainsail.config.registry import RegistryConfig
from mainsail.config.serving import ServingConfig
from mainsail.config.snapshots import SnapshotConfig
from mainsail.config.stack import StackConfig
from mainsail.config.train import TrainConfig, TuneConfig


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
    observability: ObservabilityConfig = Field(default_factory=ObservabilityConfig)
    """JSON logs and OpenTelemetry traces of the serving path (off by default)."""
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    """Sensitive columns: declared or detected, never features, never written raw."""
    environments: dict[str, EnvironmentConfig] = Field(default_factory=default_environments)
    """Deployment environments by name (at least `staging` and `production`): registry aliases,
    namespace, overlay and the gate of `mainsail promote-env`."""
    snapshots: SnapshotConfig = Field(default_factory=SnapshotConfig)
    """Content-addressed snapshots of the training data in the registry bucket."""

    @model_validator(mode="after")
    def _check_metric_and_split(self) -> ProjectConfig:
        if self.metric is not None:
            allowed = CLASSIFICATION_METRICS + REGRESSION_METRICS
            if self.metric not in allowed:
                raise ValueError(
                    f"metric {self.metric!r} is not supported{suggest(self.metric, allowed)}; "
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
        sensitive = set(self.privacy.sensitive_columns)
        for key in ("target", "entity_key", "event_timestamp", "label_timestamp"):
            value = getattr(self.data, key)
            if value and value in sensitive:
                raise ValueError(
                    f"data.{key} {value!r} is listed in privacy.sensitive_columns; a sensitive "
                    "column is never used, so give the data a surrogate column (e.g. a salted "
                    "hash of it) and name that one instead"
                )
        if self.split.test_size + self.split.valid_size >= 0.8:
            raise ValueError("split.test_size + split.valid_size must leave at least 20% to train")
        self._check_environments()
        return self

    def _check_environments(self) -> None:
        missing = [e for e in ("staging", "production") if e not in self.environments]
        if missing:
            raise ValueError(f"environments: {' and '.join(missing)} must be defined")
        owner: dict[str, str] = {}
        for name, env in self.environments.items():
            if env.champion_alias == env.challenger_alias:
                raise ValueError(
                    f"environments.{name}: champion_alias and challenger_alias are both "
                    f"{env.champion_alias!r}"
                )
            for alias in (env.champion_alias, env.challenger_alias):
                if alias in owner:
                    raise ValueError(
                        f"environments.{name}: alias {alias!r} is already used by environment "
                        f"{owner[alias]!r}; each environment needs its own aliases"
                    )
                owner[alias] = name
        candidate = self.registry.candidate_alias
        if candidate in (*owner, self.registry.champion_alias, self.registry.challenger_alias):
            user = f"environment {owner[candidate]!r}" if candidate in owner else "the registry"
            raise ValueError(
                f"registry.candidate_alias {candidate!r} is already a champion or challenger "
                f"alias of {user}; a retraining run's candidate needs its own"
            )

    def primary_metric(self, problem_type: ProblemType) -> str:
        """The metric that ranks candidates, given the (possibly detected) problem type."""
        return self.metric or DEFAULT_METRIC[problem_type]

    def for_environment(self, name: str) -> ProjectConfig:
        """The config as environment `name` sees it: its registry aliases as champion and
        challenger, its stack folder (and so its feedback store, unless it names one, and its
        deployed cards), its namespace for Kubernetes resources."""
        if name not in self.environments:
            raise ConfigError(
                f"unknown environment {name!r}{suggest(name, self.environments)}; the config "
                f"defines {', '.join(sorted(self.environments))}"
            )
        env = self.environments[name]
        registry = self.registry.model_copy(
            update={"champion_alias": env.champion_alias, "challenger_alias": env.challenger_alias}
        )
        kubernetes = self.stack.kubernetes.model_copy(update={"namespace": env.namespace})
        stack = self.stack.model_copy(
            update={"data_dir": env.stack_data_dir or self.stack.data_dir, "kubernetes": kubernetes}
        )
        promotion = self.promotion.model_copy(
            update={"store_url": env.store_url or self.promotion.store_url}
        )
        return self.model_copy(
            update={"registry": registry, "stack": stack, "promotion": promotion}
        )

    def environment_aliases(self) -> tuple[str, ...]:
        """Every registry alias the environments use (champion and challenger of each)."""
        return tuple(
            sorted(
                {
                    a
                    for e in self.environments.values()
                    for a in (e.champion_alias, e.challenger_alias)
                }
            )
        )

    def positive_label(self) -> str:
        """The label the feedback store and the A/B analysis count as positive (text, as labels
        arrive over HTTP): `promotion.positive_label`, else `data.positive_class`, else "1"."""
        if self.promotion.positive_label is not None:
            return self.promotion.positive_label
        if self.data.positive_class is not None:
            return str(self.data.positive_class)  # as serving writes labels: "True", "bad", "1"
        return "1"

    def digest(self) -> str:
        """sha256 of the canonical JSON form: identifies the config in lineage."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()
