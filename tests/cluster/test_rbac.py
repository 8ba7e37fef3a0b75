"""RBAC for real: every Kubernetes API call the code makes is allowed to the ServiceAccount of
the component that makes it, the verbs nothing uses are denied, and each component runs as its
ServiceAccount.

The calls are not listed by hand: the module runs each component's Kubernetes code against the
live API server (the deployer, the promotion controller's Seldon backend, the retrain trigger's
rayjob action) and records every request the kubernetes client sends; then it asks the API
server, with `kubectl auth can-i --as=system:serviceaccount:...`, whether that ServiceAccount may
make it. (pipeline/ray_jobs.py makes no Kubernetes call: it talks to the Ray Jobs API, guarded by
NetworkPolicy and Ray's token, see test_network_policy.py.)

Before: the deployer's Role granted list, watch and patch on Seldon Models and Experiments,
which nothing calls, and the trigger had no way to start a retraining run on the cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mainsail.config import load_config
from mainsail.config.monitor import RayJobActionConfig
from mainsail.core import naming
from mainsail.deploy import kubernetes as k8s
from mainsail.promotion.backends import SeldonBackend
from mainsail.registry.store import ModelRegistry
from mainsail.retrain.actions import RetrainRequest
from mainsail.retrain.rayjob import RayJobAction
from tests.support import kind

pytestmark = pytest.mark.cluster

DEPLOYER = naming.deployer_service_account(kind.RELEASE)
TRIGGER = naming.fullname(kind.RELEASE, "retrain-trigger")
RAY = naming.fullname(kind.RELEASE, "ray")
MODEL = "rbac-probe"


@pytest.fixture(scope="module")
def registry(publish: Callable[[str, int], ModelRegistry]) -> ModelRegistry:
    """The cluster's registry with two versions of MODEL, champion and challenger."""
    reg = publish(MODEL, 2)
    first, second = (v.version for v in reg.versions(MODEL)[-2:])
    reg.promote(MODEL, first, "champion")
    reg.promote(MODEL, second, "challenger")
    return reg


@pytest.fixture(scope="module")
def code_calls(admin: Any, registry: ModelRegistry) -> Iterator[dict[str, list[kind.Call]]]:
    """What each component's code sends to the API server, recorded while it runs for real."""
    from kubernetes import client

    cfg = load_config(
        kind.REPO / "configs" / "churn.yaml",
        {
            "name": MODEL,
            "stack.backend": "kubernetes",
            "stack.kubernetes.namespace": kind.NAMESPACE,
        },
    )
    aliases = registry.aliases(MODEL)
    calls: dict[str, list[kind.Call]] = {}
    custom = client.CustomObjectsApi(admin)
    try:
        with kind.recorded_calls() as deployer:
            k8s.apply(k8s.render(cfg, aliases["champion"], aliases["challenger"], 10), admin)
            k8s.apply(k8s.render(cfg, aliases["champion"], aliases["challenger"], 20), admin)
            k8s.read_experiment(cfg, admin)
            backend = SeldonBackend(cfg, registry=registry, api_client=admin)
            backend.current(MODEL)
            backend.set_weight(MODEL, 50)
            backend.rollback(MODEL)
        calls["deployer"] = deployer
        request = RetrainRequest(
            "rbac-probe-1", MODEL, "1", "MainsailDriftSustained", "f", "g", {}, None
        )
        action = RayJobAction(
            RayJobActionConfig(cluster="rbac-probe-no-such-cluster", namespace=kind.NAMESPACE),
            ["true"],
            api_client=admin,
        )
        with kind.recorded_calls() as trigger:
            info = action(request)
        calls["trigger"] = trigger
        custom.delete_namespaced_custom_object(
            "ray.io", "v1", kind.NAMESPACE, "rayjobs", info.detail["rayjob"]
        )
        yield calls
    finally:
        for plural, name in (
            ("experiments", naming.experiment_name(MODEL)),
            *(("models", naming.model_resource_name(MODEL, v)) for v in aliases.values()),
        ):
            try:
                custom.delete_namespaced_custom_object(
                    k8s.GROUP, k8s.API_VERSION, kind.NAMESPACE, plural, name
                )
            except client.exceptions.ApiException as err:
                if err.status != 404:
                    raise


def _checked(calls: list[kind.Call]) -> set[tuple[str, str]]:
    return {(c.verb, c.resource_ref) for c in calls}


def test_the_deployers_calls_are_allowed_to_its_service_account(
    code_calls: dict[str, list[kind.Call]],
) -> None:
    made = _checked(code_calls["deployer"])
    # create, then get + replace; read_experiment: get (what the Role grants, nothing else)
    # create (201, then 409 on a redeploy), get + replace (update); read_experiment: get
    assert made == {
        (verb, f"{plural}.mlops.seldon.io")
        for verb in ("create", "get", "update")
        for plural in ("models", "experiments")
    }
    denied = [(v, r) for v, r in sorted(made) if not kind.can_i(DEPLOYER, v, r)]
    assert denied == []


def test_the_triggers_call_is_allowed_to_its_service_account(
    code_calls: dict[str, list[kind.Call]],
) -> None:
    made = _checked(code_calls["trigger"])
    assert made == {("create", "rayjobs.ray.io")}
    assert [(v, r) for v, r in sorted(made) if not kind.can_i(TRIGGER, v, r)] == []


@pytest.mark.parametrize(
    ("account", "verb", "resource"),
    [
        # granted before and used by nothing
        *(
            (DEPLOYER, verb, f"{plural}.mlops.seldon.io")
            for verb in ("list", "watch", "patch", "delete")
            for plural in ("models", "experiments")
        ),
        (DEPLOYER, "create", "servers.mlops.seldon.io"),
        (DEPLOYER, "get", "secrets"),
        # serving.backend mlserver: get and update of the two variants' Deployments only
        *(
            (DEPLOYER, verb, "deployments.apps")
            for verb in ("list", "watch", "create", "patch", "delete")
        ),
        (DEPLOYER, "update", f"deployments.apps/{naming.gateway_name(kind.RELEASE)}"),
        (DEPLOYER, "get", f"deployments.apps/{naming.fullname(kind.RELEASE, 'redis')}"),
        *(
            (TRIGGER, verb, "rayjobs.ray.io")
            for verb in ("get", "list", "watch", "patch", "delete")
        ),
        (TRIGGER, "create", "rayclusters.ray.io"),
        (TRIGGER, "create", "models.mlops.seldon.io"),
        (TRIGGER, "get", "secrets"),
        (RAY, "create", "rayjobs.ray.io"),
        (RAY, "get", "secrets"),
    ],
)
def test_what_no_code_calls_is_denied(account: str, verb: str, resource: str) -> None:
    assert not kind.can_i(account, verb, resource)


def test_each_component_runs_as_its_service_account(admin: Any) -> None:
    """The trigger's pods run as its ServiceAccount with a token (the rayjob action calls the API
    server with it); the Ray pods and Redis run as theirs, without one."""
    from kubernetes import client

    core = client.CoreV1Api(admin)
    pods = core.list_namespaced_pod(
        kind.NAMESPACE, label_selector=f"app.kubernetes.io/instance={kind.RELEASE}"
    ).items
    by_component: dict[str, set[tuple[str, bool]]] = {}
    for pod in pods:
        component = pod.metadata.labels.get("app.kubernetes.io/component")
        token = any(
            v.projected is not None
            and any(s.service_account_token is not None for s in v.projected.sources or [])
            for v in pod.spec.volumes or []
        )
        by_component.setdefault(component, set()).add((pod.spec.service_account_name, token))
    assert by_component["retrain-trigger"] == {(TRIGGER, True)}
    assert by_component["ray"] == {(RAY, False)}
    assert by_component["redis"] == {(naming.fullname(kind.RELEASE, "redis"), False)}
    if "serving" in by_component:  # serving.backend mlserver, once a variant has a replica
        assert by_component["serving"] == {(naming.fullname(kind.RELEASE, "serving"), False)}
