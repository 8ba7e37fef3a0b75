"""The promotion controller's cluster backend: Seldon Experiment weights + registry aliases.

No Kubernetes API server can run here: the kubernetes client talks to the recorded fake API of
tests/unit/fake_kube_api.py (a real HTTP server). The registry is the real one on SeaweedFS.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mainsail.config import parse_config
from mainsail.core import naming
from mainsail.deploy import kubernetes as k8s
from mainsail.promotion.backends import SeldonBackend
from mainsail.registry import ModelRegistry
from tests.support.kube import FakeKubeAPI
from tests.support.router import ServerThread

pytestmark = pytest.mark.integration


def test_ramp_promote_and_rollback_through_the_experiment(
    registry: ModelRegistry, churn_artifact: Path
) -> None:
    from kubernetes import client

    model = "churn-seldon"
    v1 = registry.publish(model, churn_artifact).version
    v2 = registry.publish(model, churn_artifact).version
    v3 = registry.publish(model, churn_artifact).version
    registry.promote(model, v1, alias="champion")
    registry.promote(model, v2, alias="challenger")
    cfg = parse_config({"name": model, "data": {"path": "x.parquet", "target": "churned"}})

    fake = FakeKubeAPI()
    server = ServerThread(fake).start()
    try:
        api = client.ApiClient(client.Configuration(host=server.url))
        backend = SeldonBackend(cfg, registry=registry, api_client=api)
        # No Experiment yet: nothing is under test.
        assert backend.current(model) == (str(v1), None, 0)

        backend.set_weight(model, 10)
        assert backend.current(model) == (str(v1), str(v2), 10)
        backend.set_weight(model, 25)
        key = ("experiments", k8s.namespace(cfg), naming.experiment_name(model))
        weights = {c["name"]: c["weight"] for c in fake.objects[key]["spec"]["candidates"]}
        assert weights == {
            naming.model_resource_name(model, v1): 75,
            naming.model_resource_name(model, v2): 25,
        }

        backend.promote(model)
        assert registry.aliases(model)["champion"] == v2
        assert backend.current(model) == (str(v2), None, 0)  # the experiment is over

        registry.promote(model, v3, alias="challenger")
        # The shadow stage: weight 0, every request mirrored to the challenger.
        k8s.apply(k8s.render(cfg, v2, v3, 0, mirror=v3), api)
        assert fake.objects[key]["spec"]["mirror"]["name"] == naming.model_resource_name(model, v3)
        assert backend.current(model) == (str(v2), str(v3), 0)
        backend.set_weight(model, 10)  # the shadow gate passed: the first canary step
        assert "mirror" not in fake.objects[key]["spec"]
        assert backend.current(model) == (str(v2), str(v3), 10)
        backend.rollback(model)
        assert backend.current(model) == (str(v2), None, 0)
        assert registry.aliases(model)["champion"] == v2
        api.close()
    finally:
        server.stop()
