"""The Python Kubernetes paths against the live API server, as the ServiceAccount that runs them.

- The deployer (mainsail.deploy.kubernetes) creates the Seldon Models and the Experiment, then
  replaces them keeping resourceVersion; a concurrent write between its read and its replace
  gets a real 409 Conflict from the API server, and the deployer reads again and wins.
- The promotion controller's Seldon backend reads the split from the stored Experiment and ramps,
  rolls back and promotes by replacing it.
- `mainsail deploy`'s code runs in a pod of the deployer's ServiceAccount (in-cluster
  credentials), as the KFP deploy-canary step does.
No Seldon operator runs in local mode (issue 17): the objects are stored and validated against
the Seldon Core 2 CRDs by the API server, not reconciled.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mainsail.config import ProjectConfig, load_config
from mainsail.core import naming
from mainsail.deploy import kubernetes as k8s
from mainsail.promotion.backends import SeldonBackend
from mainsail.registry.store import ModelRegistry
from tests.support import kind

pytestmark = pytest.mark.cluster

DEPLOYER = naming.deployer_service_account(kind.RELEASE)
MODEL = "api-e2e"


def config(model: str = MODEL) -> ProjectConfig:
    return load_config(
        kind.REPO / "configs" / "churn.yaml",
        {
            "name": model,
            "stack.backend": "kubernetes",
            "stack.kubernetes.namespace": kind.NAMESPACE,
        },
    )


@pytest.fixture(scope="module")
def registry(publish: Callable[[str, int], ModelRegistry]) -> ModelRegistry:
    """The cluster's registry with three versions of MODEL; champion the first."""
    reg = publish(MODEL, 3)
    reg.promote(MODEL, reg.versions(MODEL)[-3].version, "champion")
    return reg


@pytest.fixture
def as_deployer(admin: Any) -> Iterator[Any]:
    """An API client authenticated as the deployer's ServiceAccount (a TokenRequest token)."""
    api = kind.service_account_client(admin, DEPLOYER)
    yield api
    api.close()


@pytest.fixture(autouse=True)
def clean(admin: Any) -> Iterator[None]:
    """No Model or Experiment of MODEL before and after each test."""
    _delete_objects(admin)
    yield
    _delete_objects(admin)


def _delete_objects(admin: Any) -> None:
    from kubernetes import client

    custom = client.CustomObjectsApi(admin)
    for plural in ("experiments", "models"):
        found = custom.list_namespaced_custom_object(
            k8s.GROUP,
            k8s.API_VERSION,
            kind.NAMESPACE,
            plural,
            label_selector=f"{naming.LABEL_MODEL}={MODEL}",
        )
        for obj in found["items"]:
            custom.delete_namespaced_custom_object(
                k8s.GROUP, k8s.API_VERSION, kind.NAMESPACE, plural, obj["metadata"]["name"]
            )


def stored_experiment(admin: Any) -> dict[str, Any]:
    from kubernetes import client

    found: dict[str, Any] = client.CustomObjectsApi(admin).get_namespaced_custom_object(
        k8s.GROUP, k8s.API_VERSION, kind.NAMESPACE, "experiments", naming.experiment_name(MODEL)
    )
    return found


def weights(experiment: dict[str, Any]) -> dict[str, int]:
    return {c["name"]: c["weight"] for c in experiment["spec"]["candidates"]}


def test_the_deployer_creates_then_replaces_as_its_service_account(
    admin: Any, as_deployer: Any, registry: ModelRegistry
) -> None:
    cfg = config()
    champion, challenger = (v.version for v in registry.versions(MODEL)[-3:-1])
    first = k8s.apply(k8s.render(cfg, champion, challenger, 10), as_deployer)
    assert [line.split()[0] for line in first] == ["created"] * 3
    before = stored_experiment(admin)
    again = k8s.apply(k8s.render(cfg, champion, challenger, 30), as_deployer)
    assert [line.split()[0] for line in again] == ["replaced"] * 3
    after = stored_experiment(admin)
    assert int(after["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    assert weights(after) == {
        naming.model_resource_name(MODEL, champion): 70,
        naming.model_resource_name(MODEL, challenger): 30,
    }


def test_a_write_between_read_and_replace_is_a_real_conflict_and_is_retried(
    admin: Any, as_deployer: Any, registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another client (here the admin, as a controller would) changes the Experiment right after
    the deployer read it: the API server refuses the replace with 409 Conflict, the deployer
    reads again and replaces; the stored split is the deployer's."""
    from kubernetes import client

    cfg = config()
    champion, challenger = (v.version for v in registry.versions(MODEL)[-3:-1])
    k8s.apply(k8s.render(cfg, champion, challenger, 10), as_deployer)
    custom = client.CustomObjectsApi
    original_get = custom.get_namespaced_custom_object
    raced: list[str] = []

    def get_then_race(self: Any, group: str, version: str, ns: str, plural: str, name: str) -> Any:
        found = original_get(self, group, version, ns, plural, name)
        if plural == "experiments" and not raced:
            theirs = json.loads(json.dumps(found))
            theirs["metadata"].setdefault("annotations", {})["example.com/touched"] = "yes"
            custom(admin).replace_namespaced_custom_object(group, version, ns, plural, name, theirs)
            raced.append(theirs["metadata"]["resourceVersion"])
        return found

    monkeypatch.setattr(custom, "get_namespaced_custom_object", get_then_race)
    with kind.recorded_calls() as calls:
        done = k8s.apply(k8s.render(cfg, champion, challenger, 40)[-1:], as_deployer)
    assert raced, "the race did not happen"
    assert done == [
        f"replaced Experiment {kind.NAMESPACE}/{naming.experiment_name(MODEL)} (attempt 2)"
    ]
    conflicts = [c for c in calls if c.verb == "update" and c.status == 409]
    assert len(conflicts) == 1  # the API server's answer to the stale resourceVersion
    stored = stored_experiment(admin)
    assert weights(stored)[naming.model_resource_name(MODEL, challenger)] == 40
    assert "example.com/touched" not in (stored["metadata"].get("annotations") or {})


def test_the_promotion_backend_moves_the_stored_experiment(
    admin: Any, as_deployer: Any, registry: ModelRegistry
) -> None:
    cfg = config()
    champion, challenger = (v.version for v in registry.versions(MODEL)[-3:-1])
    registry.promote(MODEL, champion, "champion")
    registry.promote(MODEL, challenger, "challenger")
    k8s.apply(k8s.render(cfg, champion, challenger, 10), as_deployer)
    backend = SeldonBackend(cfg, registry=registry, api_client=as_deployer)
    champ, chall = (naming.model_resource_name(MODEL, v) for v in (champion, challenger))

    assert backend.current(MODEL) == (str(champion), str(challenger), 10)
    backend.set_weight(MODEL, 50)
    assert weights(stored_experiment(admin)) == {champ: 50, chall: 50}
    backend.rollback(MODEL)
    assert weights(stored_experiment(admin)) == {champ: 100, chall: 0}
    assert backend.current(MODEL) == (str(champion), None, 0)
    backend.set_weight(MODEL, 20)
    backend.promote(MODEL)
    assert weights(stored_experiment(admin)) == {champ: 0, chall: 100}
    assert registry.aliases(MODEL)["champion"] == challenger


def test_mainsail_deploy_runs_in_a_pod_as_the_deployers_service_account(
    admin: Any, registry: ModelRegistry
) -> None:
    """The deploy code in the pipeline image, with in-cluster credentials: the pod's token is
    the ServiceAccount's, and its Role is all it has."""
    champion = registry.versions(MODEL)[-3].version
    registry.promote(MODEL, champion, "champion")
    latest = registry.versions(MODEL)[-1].version
    script = f"""
import json
from mainsail.config import load_config
from mainsail.deploy.service import deploy
cfg = load_config("/app/configs/churn.yaml", {{
    "name": "{MODEL}", "stack.backend": "kubernetes",
    "stack.kubernetes.namespace": "{kind.NAMESPACE}", "registry.cache_dir": "/tmp/models"}})
result = deploy(cfg, "latest", 25)
print("RESULT " + json.dumps(result.actions))
"""
    manifest = kind.pod_manifest(
        kind.unique("deploy-as-sa"),
        ["python", "-c", script],
        env=[*kind.s3_env(), kind.public_keys_env()],
        service_account=DEPLOYER,
    )
    result = kind.run_pod(admin, manifest, timeout_s=300)
    assert result.exit_code == 0, result.logs[-3000:]
    actions = kind.parse_json_line(result.logs, "RESULT ")
    assert f"created Experiment {kind.NAMESPACE}/{naming.experiment_name(MODEL)}" in actions
    assert weights(stored_experiment(admin)) == {
        naming.model_resource_name(MODEL, champion): 75,
        naming.model_resource_name(MODEL, latest): 25,
    }
    assert registry.aliases(MODEL)["challenger"] == latest
