"""Seldon Core 2 resources rendered by the Kubernetes deployer validate against the upstream
CRD schemas and are applied with the real kubernetes client.

`apply` is exercised here against a recorded fake API (tests/support/kube.py, a real HTTP
server implementing create/get/replace of custom objects) for its edge cases; tests/cluster runs
it against the kind cluster's API server.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from mainsail.config import ProjectConfig, parse_config
from mainsail.core import naming
from mainsail.deploy import kubernetes as k8s
from tests.support.kube import FakeKubeAPI
from tests.support.router import ServerThread

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO.parent / "shared" / "crds" / "seldon-core-v2"


def _cfg(**kube: object) -> ProjectConfig:
    raw = {
        "name": "churn",
        "data": {"path": "x.parquet", "target": "y"},
        "stack": {"kubernetes": kube},
    }
    return parse_config(raw)


def test_rendered_objects_validate_against_the_seldon_crds() -> None:
    cfg = _cfg(secret_name="minio-rclone", memory="256Mi", server="mainsail-serving")
    objects = k8s.render(cfg, champion=3, challenger=4, canary=10, mirror=5, mirror_percent=20)
    k8s.validate(objects, CRDS)
    kinds = [o["kind"] for o in objects]
    assert kinds == ["Model", "Model", "Model", "Experiment"]
    champion, challenger, mirror, experiment = objects
    assert champion["metadata"]["name"] == naming.model_resource_name("churn", 3) == "churn-v3"
    assert champion["metadata"]["namespace"] == naming.DEFAULT_NAMESPACE
    assert champion["spec"] == {
        "storageUri": "s3://mainsail-models/churn/versions/3/",
        "requirements": ["mainsail"],
        "replicas": 1,
        "server": "mainsail-serving",
        "secretName": "minio-rclone",
        "memory": "256Mi",
    }
    labels = challenger["metadata"]["labels"]
    assert labels[naming.LABEL_VARIANT] == "challenger"
    assert labels[naming.LABEL_MODEL_VERSION] == "4"
    assert naming.LABEL_VARIANT not in mirror["metadata"]["labels"]
    assert experiment["metadata"]["name"] == naming.experiment_name("churn")
    assert experiment["spec"] == {
        "default": "churn-v3",
        "candidates": [{"name": "churn-v3", "weight": 90}, {"name": "churn-v4", "weight": 10}],
        "mirror": {"name": "churn-v5", "percent": 20},
    }


def test_storage_uri_follows_registry_bucket_and_prefix_or_the_override() -> None:
    cfg = parse_config(
        {
            "name": "churn",
            "data": {"path": "x.parquet", "target": "y"},
            "registry": {"bucket": "models", "prefix": "team-a/"},
        }
    )
    assert k8s.storage_uri(cfg, 7) == "s3://models/team-a/churn/versions/7/"
    cfg = _cfg(storage_uri_prefix="s3://other/base")
    assert k8s.storage_uri(cfg, 7) == "s3://other/base/churn/versions/7/"


def test_dry_run_yaml_round_trips() -> None:
    objects = k8s.render(_cfg(), 1, 2, 25)
    assert list(yaml.safe_load_all(k8s.to_yaml(objects))) == objects


def test_crd_validation_catches_a_bad_object() -> None:
    objects = k8s.render(_cfg(), 1, 2, 25)
    broken = copy.deepcopy(objects)
    broken[-1]["spec"]["candidates"][0]["weight"] = "90"
    with pytest.raises(k8s.DeployError, match=r"Experiment churn-canary: spec/candidates/0/weight"):
        k8s.validate(broken, CRDS)
    del broken[0]["spec"]["storageUri"]
    with pytest.raises(k8s.DeployError, match="'storageUri' is a required property"):
        k8s.validate(broken[:1], CRDS)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1, 2, 101), "between 0 and 100"),
        ((1, 2, -1), "between 0 and 100"),
        ((2, 2, 10), "both version 2"),
    ],
)
def test_bad_canary_requests_are_refused(args: tuple[int, int, int], message: str) -> None:
    with pytest.raises(k8s.DeployError, match=message):
        k8s.render(_cfg(), *args)


def test_apply_creates_then_replaces_through_the_kubernetes_client() -> None:
    from kubernetes import client

    fake = FakeKubeAPI()
    server = ServerThread(fake).start()
    try:
        conf = client.Configuration(host=server.url)
        api_client = client.ApiClient(conf)
        first = k8s.apply(k8s.render(_cfg(), 1, 2, 10), api_client)
        assert first == [
            "created Model mainsail/churn-v1",
            "created Model mainsail/churn-v2",
            "created Experiment mainsail/churn-canary",
        ]
        second = k8s.apply(k8s.render(_cfg(), 1, 2, 50), api_client)
        assert second[-1] == "replaced Experiment mainsail/churn-canary"
        stored = fake.objects[("experiments", "mainsail", "churn-canary")]
        assert stored["spec"]["candidates"][1] == {"name": "churn-v2", "weight": 50}
        assert (
            "PUT",
            "/apis/mlops.seldon.io/v1alpha1/namespaces/mainsail/experiments/churn-canary",
        ) in fake.requests
        api_client.close()
    finally:
        server.stop()


def test_apply_reports_an_api_error_by_object() -> None:
    from kubernetes import client

    server = ServerThread(FakeKubeAPI(forbidden_namespaces=("prod",))).start()
    try:
        api_client = client.ApiClient(client.Configuration(host=server.url))
        objects = k8s.render(_cfg(namespace="prod"), 1, 2, 10)
        with pytest.raises(k8s.DeployError, match="creating Model prod/churn-v1 failed: 403"):
            k8s.apply(objects, api_client)
        api_client.close()
    finally:
        server.stop()


@pytest.mark.parametrize(("races", "outcome"), [(2, "replaced (attempt 3)"), (3, "409")])
def test_apply_reads_again_after_a_conflict_then_gives_up(races: int, outcome: str) -> None:
    """Edge case of the retry (tests/cluster races the real API server once): the object
    changes after each of `races` reads; three attempts, then a DeployError naming the 409."""
    from kubernetes import client

    fake = FakeKubeAPI()
    server = ServerThread(fake).start()
    try:
        api_client = client.ApiClient(client.Configuration(host=server.url))
        k8s.apply(k8s.render(_cfg(), 1, 2, 10), api_client)
        fake.concurrent_writes = races
        experiment = k8s.render(_cfg(), 1, 2, 30)[-1:]
        if outcome == "409":
            with pytest.raises(k8s.DeployError, match=r"replacing Experiment .* failed: 409"):
                k8s.apply(experiment, api_client)
        else:
            assert k8s.apply(experiment, api_client) == [
                f"{outcome.split(' ', 1)[0]} Experiment mainsail/churn-canary "
                f"{outcome.split(' ', 1)[1]}"
            ]
        api_client.close()
    finally:
        server.stop()
