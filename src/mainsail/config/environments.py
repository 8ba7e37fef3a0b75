"""Config section: the deployment environments (staging, production) and their promotion gates."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from mainsail.config.base import StrictModel

#: Registry alias names: like model names (lower-case letters, digits, dashes).
ALIAS_PATTERN = r"^[a-z][a-z0-9-]{0,39}$"


class GateConfig(StrictModel):
    """What a version must show before `mainsail promote-env` moves it INTO this environment.
    Every check reads evidence of the environment it comes from (`--from`)."""

    card_complete: bool = True
    """The version's model card has every required field filled (status selected, primary
    metric with its confidence interval, training data, lineage, intended use, limitations,
    the serving budget)."""
    beat_champion: bool = True
    """The lower end of the version's primary-metric CI lies above this environment's champion's
    test value (the upper end below it for a loss such as rmse); passes when there is no
    champion yet."""
    load_within_budget: bool = True
    """Latency p95 and throughput were measured in the source environment (the deployed card's
    `deployment` fields, filled by `mainsail deploy`'s load run) and lie within the card's
    `budget`."""
    rollout: Literal["none", "shadow", "canary", "shadow_or_canary"] = "shadow_or_canary"
    """Which rollout must have passed in the source environment, as its decision log records
    it: `shadow` (the shadow gate let the version ramp), `canary` (the canary promoted it)."""


class EnvironmentConfig(StrictModel):
    """One deployment environment: its registry aliases, where it runs, and its gate."""

    champion_alias: str = Field("champion", pattern=ALIAS_PATTERN)
    """Registry alias of the version this environment serves."""
    challenger_alias: str = Field("challenger", pattern=ALIAS_PATTERN)
    """Registry alias of the version under test in this environment."""
    namespace: str = Field("mainsail", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    """Kubernetes namespace of the environment's stack."""
    overlay: Path | None = None
    """Kustomize overlay that installs the environment (`manifests/overlays/<name>`)."""
    stack_data_dir: Path | None = None
    """Data folder of the environment's local stack (its feedback store and deployed model
    cards); null = `stack.data_dir`."""
    store_url: str | None = None
    """SQLAlchemy URL of the environment's feedback store, which holds its decision log; null =
    `promotion.store_url`, else `feedback.db` in the environment's stack data folder."""
    gate: GateConfig = Field(default_factory=GateConfig)
    """What a version must show to enter this environment."""


def default_environments() -> dict[str, EnvironmentConfig]:
    """`staging` (its own aliases, namespace and stack folder; a version enters with a complete
    card) and `production` (the served champion/challenger; the full gate)."""
    return {
        "staging": EnvironmentConfig(
            champion_alias="staging",
            challenger_alias="staging-challenger",
            namespace="mainsail-staging",
            overlay=Path("manifests/overlays/staging"),
            stack_data_dir=Path(".stack-staging"),
            gate=GateConfig(beat_champion=False, load_within_budget=False, rollout="none"),
        ),
        "production": EnvironmentConfig(overlay=Path("manifests/overlays/production")),
    }
