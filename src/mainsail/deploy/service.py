"""`mainsail deploy`: move the challenger alias to a version and set the canary split, or put it
in the shadow (weight 0, every request mirrored to it; see `mainsail.promotion.shadow`).

Order: the backend first (the local stack loads the version and sets the split, or the Seldon
resources are applied), then the registry's `challenger` alias, so the alias never names a
version that failed to deploy. `dry_run` changes nothing: it prints the plan (local) or the YAML
(kubernetes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mainsail.config import ProjectConfig
from mainsail.deploy import kubernetes as k8s
from mainsail.deploy.kubernetes import DeployError
from mainsail.registry import open_registry

if TYPE_CHECKING:
    from mainsail.registry import ModelRegistry


@dataclass
class DeployResult:
    """What a deploy did."""

    backend: str
    champion: int | None
    challenger: int
    canary: int
    dry_run: bool
    shadow: bool = False
    actions: list[str] = field(default_factory=list)
    yaml: str | None = None
    card: Path | None = None


def deploy(
    cfg: ProjectConfig,
    ref: str | int = "latest",
    canary: int = 10,
    *,
    backend: str | None = None,
    dry_run: bool = False,
    mirror: str | int | None = None,
    shadow: bool = False,
    registry: ModelRegistry | None = None,
    measure_s: float = 0.0,
    measure_body: dict[str, Any] | None = None,
    api_client: Any = None,
    log: Callable[[str], None] = lambda _line: None,
) -> DeployResult:
    """Deploy version `ref` of the project's model as challenger at `canary` percent, or, with
    `shadow`, at 0 percent with every request mirrored to it (the ramp's shadow stage)."""
    backend = backend or cfg.stack.backend
    if backend not in ("local", "kubernetes"):
        raise DeployError(f"unknown backend {backend!r}; use local or kubernetes")
    if not 0 <= canary <= 100:
        raise DeployError(f"--canary must be a percent between 0 and 100, got {canary}")
    if shadow and mirror is not None:
        raise DeployError("a shadow deployment mirrors to the challenger; drop --mirror")
    if shadow:
        canary = 0
    reg = registry if registry is not None else open_registry(cfg)
    model = cfg.name
    version, _ = reg.resolve(model, ref)
    # Only a complete version whose signature verifies can be deployed (the servers check it
    # again before they load it).
    reg.verify_signature(model, version)
    champion_alias = cfg.registry.alias("champion")
    challenger_alias = cfg.registry.alias("challenger")
    champion = reg.aliases(model).get(champion_alias)
    mirror_version = reg.resolve(model, mirror)[0] if mirror is not None else None
    if shadow:
        mirror_version = version
    result = DeployResult(backend, champion, version, canary, dry_run, shadow)
    split = (
        "in the shadow (every request mirrored to it, weight 0)"
        if shadow
        else f"champion {100 - canary} / challenger {canary}"
    )

    if backend == "kubernetes" and cfg.stack.kubernetes.serving == "mlserver":
        if champion is None:
            raise DeployError(
                f"model {model!r} has no {champion_alias!r} yet; promote one first "
                "(`mainsail models promote`), the champion's Deployment serves it"
            )
        if mirror_version is not None:
            raise DeployError(
                "mirroring (--mirror, --shadow) is not offered with stack.kubernetes.serving "
                "mlserver: the chart has no mirror Deployment"
            )
        if dry_run:
            result.actions.append(
                f"would serve v{champion} on the champion's and v{version} on the challenger's "
                f"MLServer Deployment and set the gateway: {split}"
            )
            return result
        from mainsail.deploy.gateway import GatewayDeployer

        result.actions += GatewayDeployer(cfg, api_client).deploy(champion, version, canary)
    elif backend == "kubernetes":
        if champion is None:
            raise DeployError(
                f"model {model!r} has no {champion_alias!r} yet; promote one first "
                "(`mainsail models promote`), the Experiment needs a default"
            )
        objects = k8s.render(cfg, champion, version, canary, mirror_version)
        result.yaml = k8s.to_yaml(objects)
        if dry_run:
            return result
        result.actions += k8s.apply(objects, api_client)
    else:
        if dry_run:
            result.actions.append(
                f"would load {model} v{version} on the challenger MLServer and set the router: "
                f"challenger {split}"
            )
            return result
        from mainsail.deploy.local import LocalDeployer

        local = reg.download(model, version, cfg.registry.cache_dir.resolve())
        deployer = LocalDeployer(cfg)
        deployer.deploy(local.path, canary, shadow=shadow)
        result.actions.append(f"challenger MLServer serves {model} v{version}")
        result.actions.append(f"router: challenger {split}")
        if measure_s > 0 and measure_body is not None:
            result.card = _measure_into_card(cfg, local.path, version, measure_s, measure_body)
            result.actions.append(f"model card with measured deployment fields: {result.card}")
    for line in result.actions:
        log(line)
    reg.promote(model, version, alias=challenger_alias)
    result.actions.append(f"alias {challenger_alias} -> v{version}")
    log(result.actions[-1])
    return result


def _measure_into_card(
    cfg: ProjectConfig, folder: Path, version: int, seconds: float, body: dict[str, Any]
) -> Path | None:
    from mainsail.deploy.load import measure
    from mainsail.evaluate.card import CARD_FILE, CardError, deployed_card_path, fill_deployment

    card = folder / CARD_FILE
    if not card.exists():
        raise DeployError(f"{folder} has no {CARD_FILE}; cannot fill its deployment fields")
    # The challenger's own server is measured (through the router the run would mix in the
    # champion); the card's endpoint is the public one, the router's.
    public = f"http://{cfg.stack.host}:{cfg.stack.router.port}/v2/models/{cfg.name}/infer"
    direct = f"http://{cfg.stack.host}:{cfg.stack.challenger.http}/v2/models/{cfg.name}/infer"
    figures = measure(direct, body, duration_s=seconds)
    try:
        return fill_deployment(card, figures, deployed_card_path(cfg, version), endpoint=public)
    except CardError as err:
        raise DeployError(str(err)) from None
