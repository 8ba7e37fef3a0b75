"""`mainsail deploy` with `stack.kubernetes.serving: mlserver`: the variants' Deployments are
set to their versions (read, replaced keeping resourceVersion, a 409 read again), the rollout is
awaited, then the gateway (a real router on loopback) gets each variant and the split.

The Deployments are a small in-memory stand-in of AppsV1Api holding the kubernetes client's own
models; tests/cluster/test_serving.py runs the same code against the kind cluster.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from mainsail.config import ProjectConfig, parse_config
from mainsail.core import naming
from mainsail.deploy.gateway import GatewayDeployer, rolled_out, served_version
from mainsail.deploy.kubernetes import DeployError
from tests.support.router import ServerThread, V2Upstream, start_router


def _cfg(url: str) -> ProjectConfig:
    raw = {
        "name": "churn",
        "data": {"path": "x.parquet", "target": "y"},
        "stack": {
            "kubernetes": {
                "serving": "mlserver",
                "gateway_url": url,
                "namespace": "ml",
                "rollout_timeout_s": 5,
            }
        },
    }
    return parse_config(raw)


def _deployment(name: str, version: str, replicas: int) -> client.V1Deployment:
    env = [
        client.V1EnvVar(name=naming.ENV_MODEL_NAME, value="churn"),
        client.V1EnvVar(name=naming.ENV_MODEL_VERSION, value=version),
    ]
    containers = [
        client.V1Container(name="mlserver", image="serving", env=env),
        client.V1Container(name="drift", image="drift"),
    ]
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, namespace="ml", resource_version="1", generation=1),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels={"a": "b"}),
            template=client.V1PodTemplateSpec(spec=client.V1PodSpec(containers=containers)),
        ),
        status=client.V1DeploymentStatus(
            observed_generation=1,
            replicas=replicas,
            updated_replicas=replicas,
            available_replicas=replicas,
        ),
    )


class FakeApps:
    """read / replace of Deployments with resourceVersion checks; a replace bumps the generation
    and the "controller" rolls it out after `lag` reads."""

    def __init__(self, lag: int = 1) -> None:
        self.items = {
            naming.serving_deployment(r): _deployment(naming.serving_deployment(r), "", 0)
            for r in ("champion", "challenger")
        }
        self.lag = lag
        self.pending: dict[str, int] = {}
        self.calls: list[tuple[str, str]] = []
        self.race: str | None = None

    def read_namespaced_deployment(self, name: str, namespace: str) -> client.V1Deployment:
        assert namespace == "ml"
        self.calls.append(("get", name))
        if name not in self.items:
            raise ApiException(status=404, reason="Not Found")
        found = self.items[name]
        if self.pending.get(name, 0) > 0:
            self.pending[name] -= 1
            if self.pending[name] == 0:
                want = found.spec.replicas
                found.status = client.V1DeploymentStatus(
                    observed_generation=found.metadata.generation,
                    replicas=want,
                    updated_replicas=want,
                    available_replicas=want,
                )
        return copy.deepcopy(found)

    def replace_namespaced_deployment(
        self, name: str, namespace: str, body: client.V1Deployment
    ) -> client.V1Deployment:
        self.calls.append(("update", name))
        current = self.items[name]
        if self.race == name:
            self.race = None
            current.metadata.resource_version = str(int(current.metadata.resource_version) + 1)
        if body.metadata.resource_version != current.metadata.resource_version:
            raise ApiException(status=409, reason="Conflict")
        body.metadata.resource_version = str(int(current.metadata.resource_version) + 1)
        body.metadata.generation = current.metadata.generation + 1
        body.status = client.V1DeploymentStatus(observed_generation=current.metadata.generation)
        self.items[name] = body
        self.pending[name] = self.lag
        return body


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A router in front of two V2 upstreams; the deployer names them as the variants' Services
    (their cluster DNS names do not resolve here)."""
    import mainsail.deploy.gateway as gw

    champ, chall = ServerThread(V2Upstream()).start(), ServerThread(V2Upstream(label=1)).start()
    router, _ = start_router({"champion": champ, "challenger": chall}, {"champion": 100})
    urls = {"champion": champ.url, "challenger": chall.url}
    monkeypatch.setattr(gw, "variant_url", lambda _cfg, role: urls[role])
    yield router
    router.stop()
    champ.stop()
    chall.stop()


def test_deploy_sets_both_deployments_waits_then_sets_the_gateway(gateway: Any) -> None:
    apps = FakeApps(lag=2)
    deployer = GatewayDeployer(_cfg(gateway.url), token="s3cret", sleep=lambda _s: None, apps=apps)
    done = deployer.deploy(3, 4, 10)
    champ, chall = (naming.serving_deployment(r) for r in ("champion", "challenger"))
    assert done[:2] == [
        f"replaced Deployment ml/{champ}: v3",
        f"replaced Deployment ml/{chall}: v4",
    ]
    assert served_version(apps.items[champ]) == "3" and apps.items[champ].spec.replicas == 1
    assert served_version(apps.items[chall]) == "4"
    assert all(rolled_out(d) for d in apps.items.values())
    # the other env is kept, once each
    names = [e.name for e in apps.items[chall].spec.template.spec.containers[0].env]
    assert sorted(names) == sorted([naming.ENV_MODEL_NAME, naming.ENV_MODEL_VERSION])
    state = deployer.state()["variants"]
    assert state["challenger"]["version"] == "4" and state["challenger"]["weight"] == 10
    assert state["champion"]["version"] == "3" and state["champion"]["weight"] == 90
    assert state["challenger"]["healthy"] and state["champion"]["healthy"]
    assert {verb for verb, _ in apps.calls} == {"get", "update"}

    # again: nothing to replace, only the split changes
    again = deployer.deploy(3, 4, 30)
    assert again[:2] == [f"kept Deployment ml/{champ} (v3)", f"kept Deployment ml/{chall} (v4)"]
    assert deployer.state()["variants"]["challenger"]["weight"] == 30


def test_a_write_between_read_and_replace_is_read_again(gateway: Any) -> None:
    apps = FakeApps(lag=1)
    apps.race = naming.serving_deployment("challenger")
    deployer = GatewayDeployer(_cfg(gateway.url), token="s3cret", sleep=lambda _s: None, apps=apps)
    line = deployer.set_version("challenger", 5)
    assert line.endswith("v5 (attempt 2)")


def test_a_rollout_that_never_completes_fails_naming_the_deployment(gateway: Any) -> None:
    apps = FakeApps(lag=10**9)
    deployer = GatewayDeployer(_cfg(gateway.url), token="s3cret", apps=apps)
    deployer.cfg = deployer.cfg.model_copy(deep=True)
    deployer.cfg.stack.kubernetes.rollout_timeout_s = 0.01
    deployer.set_version("challenger", 5)
    with pytest.raises(DeployError, match="mainsail-serving-challenger did not serve v5"):
        deployer.wait_rollout("challenger", 5)
    # the gateway was not touched
    assert deployer.state()["variants"]["challenger"]["version"] == "v-challenger"


def test_without_the_token_or_the_chart_mode_it_says_what_is_missing(
    gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(naming.ENV_ROUTER_TOKEN, raising=False)
    with pytest.raises(DeployError, match=r"MAINSAIL_ROUTER_TOKEN .*gateway-token"):
        GatewayDeployer(_cfg(gateway.url), api_client=object())
    apps = FakeApps()
    apps.items.clear()
    deployer = GatewayDeployer(_cfg(gateway.url), token="s3cret", apps=apps)

    with pytest.raises(DeployError, match=r"404 .*serving.backend=mlserver"):
        deployer.set_version("champion", 1)
    with pytest.raises(DeployError, match="both version 2"):
        deployer.deploy(2, 2, 10)


class FakeRegistry:
    def __init__(self) -> None:
        self.moved: list[tuple[str, int, str]] = []

    def promote(self, model: str, version: int, alias: str) -> None:
        self.moved.append((model, version, alias))


def test_the_promotion_backend_ramps_promotes_and_rolls_back_through_the_gateway(
    gateway: Any,
) -> None:
    from mainsail.promotion.backends import GatewayBackend

    apps = FakeApps(lag=1)
    cfg = _cfg(gateway.url)
    deployer = GatewayDeployer(cfg, token="s3cret", sleep=lambda _s: None, apps=apps)
    deployer.deploy(3, 4, 10)
    registry = FakeRegistry()
    backend = GatewayBackend(cfg, registry=registry, deployer=deployer)  # type: ignore[arg-type]
    assert backend.current("churn") == ("3", "4", 10)
    backend.set_weight("churn", 50)
    assert backend.current("churn") == ("3", "4", 50)
    backend.rollback("churn")
    assert backend.current("churn") == ("3", None, 0)
    backend.set_weight("churn", 20)
    backend.promote("churn")
    champ = apps.items[naming.serving_deployment("champion")]
    assert served_version(champ) == "4" and rolled_out(champ)
    state = deployer.state()["variants"]
    assert state["champion"]["version"] == "4"
    assert (state["champion"]["weight"], state["challenger"]["weight"]) == (100, 0)
    assert backend.current("churn") == ("4", None, 0)
    assert registry.moved == [("churn", 4, "champion")]


def test_the_variants_service_url() -> None:
    from mainsail.deploy.gateway import variant_url

    url = variant_url(_cfg("http://gw:8080"), "challenger")
    assert url == "http://mainsail-serving-challenger.ml.svc.cluster.local:9000"
