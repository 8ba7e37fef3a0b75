"""Traffic backends for the promotion controller, and the decision log in the model card.

- `LocalRouterBackend`: the local stack. Reads the split from the router's admin API (a
  challenger at weight 0 that the router mirrors to is in the shadow), ramps by setting weights
  (the first canary step also removes the mirror), promotes by moving the registry's `champion`
  alias and loading the version on the champion MLServer, rolls back by sending all traffic to
  the champion and removing the mirror.
- `SeldonBackend`: a cluster. Reads the challenger's share (and whether the Experiment mirrors to
  it) from the Seldon Core 2 Experiment, ramps, promotes (all traffic to the challenger,
  `champion` alias moved) and rolls back (all traffic to the champion) by re-applying the
  Experiment rendered by the same code as `mainsail deploy --backend kubernetes`. Seldon's
  mirror discards the mirrored answers: pairing them needs the mainsail router in front, which
  records them in the feedback store.
- `GatewayBackend`: a cluster whose chart serves with `serving.backend: mlserver`. Reads the split
  from the gateway's admin API, ramps and rolls back by setting its weights, promotes by pointing
  the champion's MLServer Deployment at the challenger's version, waiting for its rollout, then
  moving the gateway's champion and all traffic to it and the registry's `champion` alias
  (`mainsail.deploy.gateway`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mainsail.config import ProjectConfig
from mainsail.promotion.ab import Decision

if TYPE_CHECKING:
    from mainsail.registry import ModelRegistry


class LocalRouterBackend:
    """The local stack's router and MLServers (see `mainsail up`)."""

    def __init__(self, cfg: ProjectConfig, registry: ModelRegistry | None = None) -> None:
        from mainsail.deploy.local import LocalDeployer
        from mainsail.registry import open_registry

        self.cfg = cfg
        self.registry = registry if registry is not None else open_registry(cfg)
        self.deployer = LocalDeployer(cfg)

    def _state(self) -> dict[str, Any]:
        return self.deployer._admin("GET", "/admin/state", {})

    def current(self, model: str) -> tuple[str, str | None, int]:
        variants = self._state()["variants"]
        champion = variants["champion"]
        challenger = variants.get("challenger")
        mirror = variants.get("mirror")
        if not challenger or challenger["version"] == champion["version"]:
            return str(champion["version"]), None, 0
        if challenger["weight"] <= 0:
            shadow = bool(
                mirror and mirror["weight"] > 0 and mirror["version"] == challenger["version"]
            )
            return str(champion["version"]), str(challenger["version"]) if shadow else None, 0
        total = champion["weight"] + challenger["weight"]
        share = round(100 * challenger["weight"] / total) if total else 0
        return str(champion["version"]), str(challenger["version"]), share

    def set_weight(self, model: str, weight: int) -> None:
        self.deployer.set_canary(weight)
        if weight > 0:
            self.deployer.remove_mirror()

    def promote(self, model: str) -> None:
        _, challenger, _ = self.current(model)
        if challenger is None:
            return
        version = int(challenger)
        local = self.registry.download(model, version, self.cfg.registry.cache_dir.resolve())
        # The champion's MLServer loads the winner before the split changes: no request is
        # answered by nobody.
        self.deployer.load_model("champion", local.path)
        self.deployer.set_variant("champion", str(version))
        self.deployer.set_canary(0)
        self.registry.promote(model, version, alias=self.cfg.registry.alias("champion"))

    def rollback(self, model: str) -> None:
        self.deployer.set_canary(0)
        self.deployer.remove_mirror()


def append_decision_to_card(
    cfg: ProjectConfig, registry: ModelRegistry, version: str, decision: Decision
) -> Path:
    """Append a decision and its evidence to the `promotion_history` of the version's card.

    Registry versions are immutable (their manifest holds every file's sha256), so the card with
    deployment facts is kept next to the deployment, starting from the registry's card.
    """
    from mainsail.evaluate.card import (
        CARD_FILE,
        append_promotion_decision,
        deployed_card_path,
    )

    path = deployed_card_path(cfg, version)
    source = None
    if not path.exists():
        local = registry.download(cfg.name, int(version), cfg.registry.cache_dir.resolve())
        source = local.path / CARD_FILE
    return append_promotion_decision(path, decision.to_dict(), start_from=source)


class SeldonBackend:
    """Seldon Core 2 on a cluster: the Experiment's candidate weights and the registry aliases."""

    def __init__(
        self, cfg: ProjectConfig, registry: ModelRegistry | None = None, api_client: Any = None
    ) -> None:
        from mainsail.registry import open_registry

        self.cfg = cfg
        self.registry = registry if registry is not None else open_registry(cfg)
        self.api_client = api_client

    def _versions(self, model: str) -> tuple[int, int | None]:
        from mainsail.deploy.kubernetes import DeployError

        aliases = self.registry.aliases(model)
        champion = self.cfg.registry.alias("champion")
        if champion not in aliases:
            raise DeployError(f"model {model!r} has no {champion!r}; promote one first")
        return aliases[champion], aliases.get(self.cfg.registry.alias("challenger"))

    def current(self, model: str) -> tuple[str, str | None, int]:
        from mainsail.core import naming
        from mainsail.deploy.kubernetes import read_experiment

        champion, challenger = self._versions(model)
        experiment = read_experiment(self.cfg, self.api_client)
        if challenger is None or challenger == champion or experiment is None:
            return str(champion), None, 0
        name = naming.model_resource_name(model, challenger)
        weights = {c["name"]: int(c.get("weight", 0)) for c in experiment["spec"]["candidates"]}
        mine = weights.get(name, 0)
        total = sum(weights.values())
        share = round(100 * mine / total) if total else 0
        if share > 0:
            return str(champion), str(challenger), share
        mirror = experiment["spec"].get("mirror") or {}
        shadow = mirror.get("name") == name and int(mirror.get("percent", 0)) > 0
        return str(champion), str(challenger) if shadow else None, 0

    def _apply(self, model: str, weight: int) -> None:
        from mainsail.deploy import kubernetes as k8s

        champion, challenger = self._versions(model)
        if challenger is None:
            raise k8s.DeployError(f"model {model!r} has no challenger to route traffic to")
        k8s.apply(k8s.render(self.cfg, champion, challenger, weight), self.api_client)

    def set_weight(self, model: str, weight: int) -> None:
        self._apply(model, weight)

    def promote(self, model: str) -> None:
        _, challenger = self._versions(model)
        self._apply(model, 100)
        self.registry.promote(
            model, int(challenger or 0), alias=self.cfg.registry.alias("champion")
        )

    def rollback(self, model: str) -> None:
        self._apply(model, 0)


class GatewayBackend:
    """`serving.backend: mlserver` on a cluster: the variants' Deployments and the gateway."""

    def __init__(
        self,
        cfg: ProjectConfig,
        registry: ModelRegistry | None = None,
        api_client: Any = None,
        deployer: Any = None,
    ) -> None:
        from mainsail.deploy.gateway import GatewayDeployer
        from mainsail.registry import open_registry

        self.cfg = cfg
        self.registry = registry if registry is not None else open_registry(cfg)
        self.deployer = deployer if deployer is not None else GatewayDeployer(cfg, api_client)

    def current(self, model: str) -> tuple[str, str | None, int]:
        variants = self.deployer.state()["variants"]
        champion = variants["champion"]
        challenger = variants.get("challenger")
        if not challenger or challenger["version"] == champion["version"]:
            return str(champion["version"]), None, 0
        total = champion["weight"] + challenger["weight"]
        share = round(100 * challenger["weight"] / total) if total else 0
        if share <= 0:
            return str(champion["version"]), None, 0
        return str(champion["version"]), str(challenger["version"]), share

    def set_weight(self, model: str, weight: int) -> None:
        self.deployer.set_canary(weight)

    def promote(self, model: str) -> None:
        _, challenger, _ = self.current(model)
        if challenger is None:
            return
        version = int(challenger)
        # The champion's Deployment serves the winner before the split changes: the gateway
        # never sends champion traffic to a pod of the old version labelled with the new one.
        self.deployer.serve("champion", version)
        self.deployer.set_canary(0)
        self.registry.promote(model, version, alias=self.cfg.registry.alias("champion"))

    def rollback(self, model: str) -> None:
        self.deployer.set_canary(0)
