"""A retraining run's candidate deployed by the promotion controller, on a real S3 registry
(SeaweedFS, signed versions) and a real SQLite decision log.

The traffic backend and the deploy call are small in-process recorders (the deploy call still
verifies the version's signature first, as `mainsail.deploy.service.deploy` does): the real
deploy through the gateway and the variants' Deployments is tests/cluster/test_training.py's,
where the chart's controller pod deploys the version a RayJob published.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mainsail.deploy.service import DeployResult
from mainsail.feedback.store import FeedbackStore
from mainsail.promotion.ab import ABPolicy
from mainsail.promotion.candidates import CandidateDeployer
from mainsail.promotion.controller import PromotionController
from mainsail.registry.seaweedfs import SeaweedS3
from mainsail.registry.signing import Signer, Verifier, generate_keypair
from mainsail.registry.store import ModelRegistry
from tests.support.promotion import RecordingBackend

pytestmark = pytest.mark.integration

BUCKET = "mainsail-models"
ALIASES = ("candidate",)
_models = itertools.count()


@dataclass
class Deploys:
    """The deploy call: verifies the signature, then puts the version on the backend."""

    registry: ModelRegistry
    backend: RecordingBackend
    model: str
    fail_with: Exception | None = None
    done: list[tuple[int, bool, int]] = field(default_factory=list)

    def __call__(self, version: int, shadow: bool, canary: int) -> DeployResult:
        self.registry.verify_signature(self.model, version)
        if self.fail_with is not None:
            raise self.fail_with
        self.done.append((version, shadow, canary))
        self.backend.challenger, self.backend.weight = str(version), canary
        self.registry.promote(self.model, version, alias="challenger")
        return DeployResult("test", int(self.backend.champion), version, canary, False, shadow)


@dataclass
class Setup:
    model: str
    registry: ModelRegistry
    store: FeedbackStore
    backend: RecordingBackend
    deploys: Deploys
    controller: PromotionController


@pytest.fixture
def setup(
    seaweed: SeaweedS3,
    signing_keys: tuple[str, str],
    churn_artifact: Path,
    tmp_path: Path,
) -> Setup:
    """A model of its own with v1 the champion and v2 published; no challenger deployed."""
    model = f"cand{next(_models)}"
    private, public = signing_keys
    registry = ModelRegistry(
        seaweed.client(),
        BUCKET,
        signer=Signer(private),
        verifier=Verifier.from_text(public),
        require_signature=True,
        extra_aliases=ALIASES,
    )
    for _ in range(2):
        registry.publish(model, churn_artifact)
    registry.promote(model, 1, alias="champion")
    store = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.db'}")
    backend = RecordingBackend("1", None, 0)
    deploys = Deploys(registry, backend, model)
    candidates = CandidateDeployer(
        registry, store, alias="candidate", deploy=deploys, shadow=False, canary=10
    )
    controller = PromotionController(
        model, store, backend, ABPolicy(), "classification", candidates=candidates
    )
    return Setup(model, registry, store, backend, deploys, controller)


def test_a_candidate_is_deployed_at_the_first_step_once_and_its_alias_removed(
    setup: Setup,
) -> None:
    s = setup
    assert s.controller.step() is None, "no candidate yet: nothing to decide"
    s.registry.promote(s.model, 2, alias="candidate")

    deployed = s.controller.step()
    assert deployed is not None and deployed.action == "deploy"
    assert s.deploys.done == [(2, False, 10)]
    assert "candidate" not in s.registry.aliases(s.model)
    assert s.registry.aliases(s.model)["challenger"] == 2
    logged = s.store.decisions(s.model)[-1]
    assert logged["action"] == "deploy"
    assert logged["evidence"]["challenger_version"] == "2"
    assert logged["evidence"]["stage"] == "canary 10%"

    # The next look is the experiment's, and a rollback does not bring the candidate back.
    assert s.controller.step().action == "keep_testing"  # type: ignore[union-attr]
    s.backend.rollback(s.model)
    assert s.controller.step() is None
    assert s.deploys.done == [(2, False, 10)]


def test_a_candidate_that_is_the_champion_or_was_already_tested_is_retired_undeployed(
    setup: Setup,
) -> None:
    s = setup
    s.registry.promote(s.model, 1, alias="candidate")
    assert s.controller.step() is None
    assert "candidate" not in s.registry.aliases(s.model)

    # A controller stopped between deploying v2 and removing the alias: its experiment ran
    # (state saved) and ended; the alias left behind must not start it again.
    s.store.save_state(s.controller.experiment_key("1", "2"), {"started": 0.0, "states": {}})
    s.registry.promote(s.model, 2, alias="candidate")
    assert s.controller.step() is None
    assert "candidate" not in s.registry.aliases(s.model)
    assert s.deploys.done == []
    assert not s.store.decisions(s.model)


def test_a_candidate_whose_signature_fails_is_refused_for_good(
    setup: Setup, churn_artifact: Path
) -> None:
    """Published with a key the registry does not trust: the real signature check refuses it,
    the refusal is logged with the reason, and the next look does not try again."""
    s = setup
    other, _ = generate_keypair()
    forger = ModelRegistry(s.registry.client, BUCKET, signer=Signer(other), extra_aliases=ALIASES)
    version = forger.publish(s.model, churn_artifact).version
    forger.promote(s.model, version, alias="candidate")

    refused = s.controller.step()
    assert refused is not None and refused.action == "refuse"
    assert f"candidate v{version} refused" in refused.reason
    assert s.store.decisions(s.model)[-1]["action"] == "refuse"
    assert "candidate" not in s.registry.aliases(s.model)
    assert s.controller.step() is None
    assert s.deploys.done == []


def test_a_failed_deploy_keeps_the_candidate_for_the_next_look(setup: Setup) -> None:
    """The API server briefly down: the look raises (a --forever watch reports it and goes
    on), the alias stays, and the next look deploys."""
    s = setup
    s.registry.promote(s.model, 2, alias="candidate")
    s.deploys.fail_with = ConnectionError("the API server is not answering")
    with pytest.raises(ConnectionError):
        s.controller.step()
    assert s.registry.aliases(s.model)["candidate"] == 2
    assert not s.store.decisions(s.model)

    s.deploys.fail_with = None
    assert s.controller.step().action == "deploy"  # type: ignore[union-attr]
    assert s.deploys.done == [(2, False, 10)]
