"""A retraining run's version into the next experiment, without a person.

A retraining run that publishes with `mainsail run --publish --candidate` (the chart's RayJob
entrypoint; the trigger starts it on a drift alert) puts the registry's `candidate` alias
(`registry.candidate_alias`) on its version. A promotion controller with
`promotion.deploy_candidates` looks at that alias whenever no challenger is deployed and
deploys the candidate as the next challenger: in the shadow when `promotion.shadow.enabled` and
the backend mirrors, else at the ramp's first step (the chart's MLServer Deployments have no
mirror). From there the controller's usual looks ramp, promote or roll it back.

The alias is removed once the candidate is deployed, so a rolled-back candidate is never tried
again; the deployment is in the decision log (`deploy`). A candidate that is already the
champion, older than it, or was already tested against it (its experiment's state is in the
feedback store: the controller stopped between deploying and removing the alias) is retired
without a deployment. One whose files or signature do not verify is refused for good (`refuse`
in the decision log); any other failure (the API server, the registry briefly unreachable)
raises, and the next look tries again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mainsail.promotion.ab import Decision

if TYPE_CHECKING:
    from mainsail.config import ProjectConfig
    from mainsail.deploy.service import DeployResult
    from mainsail.feedback.store import FeedbackStore
    from mainsail.registry import ModelRegistry


def experiment_key(model: str, champion: str, challenger: str) -> str:
    """The feedback store's key of the experiment of `challenger` against `champion`."""
    return f"{model}:{champion}->{challenger}"


#: Deploys a version as challenger: (version, shadow, canary percent) -> what was done.
DeployFn = Callable[[int, bool, int], "DeployResult"]


@dataclass
class CandidateDeployer:
    """Deploys the registry's candidate when no experiment runs (see the module's doc)."""

    registry: ModelRegistry
    store: FeedbackStore
    alias: str
    deploy: DeployFn
    shadow: bool
    """Start the candidate in the shadow (else at `canary` percent)."""
    canary: int
    log: Callable[[str], None] = lambda _line: None

    def look(self, model: str, champion: str) -> tuple[str, Decision] | None:
        """Deploy the candidate, if there is one to deploy: its version and the decision."""
        from mainsail.registry.errors import (
            ArtifactError,
            IntegrityError,
            VersionNotFoundError,
        )

        candidate = self.registry.aliases(model).get(self.alias)
        if candidate is None:
            return None
        key = experiment_key(model, champion, str(candidate))
        stale = self._stale(candidate, champion, key)
        if stale is not None:
            self.registry.unset_alias(model, self.alias)
            self.log(f"candidate v{candidate} retired without a deployment: {stale}")
            return None
        weight = 0 if self.shadow else self.canary
        stage = "shadow" if self.shadow else f"canary {weight}%"
        evidence: dict[str, Any] = {
            "experiment": key,
            "champion_version": champion,
            "challenger_version": str(candidate),
            "candidate_alias": self.alias,
            "stage": stage,
        }
        try:
            result = self.deploy(candidate, self.shadow, weight)
        except (IntegrityError, VersionNotFoundError, ArtifactError) as err:
            # Its files or signature do not verify: it will not verify on the next look either.
            self.registry.unset_alias(model, self.alias)
            reason = f"candidate v{candidate} refused: {err}"
            self.store.append_decision(model, "refuse", reason, {**evidence, "error": str(err)})
            return str(candidate), Decision("refuse", reason, None)
        # Deployed first, alias removed after: a controller stopped in between finds the
        # experiment running at its next look, and the state check above at the one after it.
        self.registry.unset_alias(model, self.alias)
        reason = f"candidate v{candidate} deployed as challenger ({stage}) against v{champion}"
        evidence["actions"] = result.actions
        self.store.append_decision(model, "deploy", reason, evidence)
        return str(candidate), Decision("deploy", reason, None, next_weight=weight)

    def _stale(self, candidate: int, champion: str, key: str) -> str | None:
        if str(candidate) == champion:
            return "it is the champion"
        if champion.isdigit() and candidate < int(champion):
            return f"older than the champion v{champion}"
        if self.store.load_state(key) is not None:
            return f"it was already tested against v{champion}"
        return None


def candidate_deployer(
    cfg: ProjectConfig,
    registry: ModelRegistry,
    store: FeedbackStore,
    *,
    api_client: Any = None,
    log: Callable[[str], None] = lambda _line: None,
) -> CandidateDeployer:
    """The candidate deployer of a project config (`mainsail.deploy.service.deploy` on its
    stack's backend)."""
    from mainsail.deploy.service import deploy

    # The chart's MLServer Deployments have no mirror: a shadow stage is only offered locally
    # and with Seldon's Experiment.
    mirrors = not (cfg.stack.backend == "kubernetes" and cfg.stack.kubernetes.serving == "mlserver")

    def deploy_version(version: int, shadow: bool, canary: int) -> DeployResult:
        return deploy(
            cfg,
            ref=version,
            canary=canary,
            shadow=shadow,
            registry=registry,
            api_client=api_client,
            log=log,
        )

    return CandidateDeployer(
        registry=registry,
        store=store,
        alias=cfg.registry.candidate_alias,
        deploy=deploy_version,
        shadow=cfg.promotion.shadow.enabled and mirrors,
        canary=cfg.promotion.ramp[0],
        log=log,
    )
