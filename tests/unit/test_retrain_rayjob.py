"""The retrain trigger's `rayjob` action: the RayJob it renders and its one API call.

tests/cluster runs it in the chart's trigger pod against the kind cluster's API server and
KubeRay; here only its edge cases, against the recorded fake of the custom-object endpoints
(tests/support/kube.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mainsail.config.monitor import RayJobActionConfig, RetrainTriggerConfig
from mainsail.retrain.actions import RetrainRequest
from mainsail.retrain.rayjob import MAX_NAME, RayJobAction, RayJobError, job_name, render
from mainsail.retrain.trigger import RetrainTrigger
from tests.support.kube import FakeKubeAPI
from tests.support.router import ServerThread

pytestmark = pytest.mark.k8s


def request(run_id: str = "churn-3-20261205T130000-0001") -> RetrainRequest:
    return RetrainRequest(run_id, "churn", "3", "MainsailDriftSustained", "f", "g", {}, None)


def test_job_names_are_kuberay_dns_labels_of_bounded_length() -> None:
    assert (
        job_name("churn", "churn-3-20261205T130000-0001")
        == "churn-retrain-churn-3-20261205t130000-0001"
    )
    long = job_name("a-very-long-model-name", "x" * 80)
    assert len(long) <= MAX_NAME and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", long)
    assert job_name("1model", "r")[0].isalpha()


def test_render_fills_the_entrypoint_and_selects_the_cluster() -> None:
    cfg = RayJobActionConfig(
        cluster="mainsail-ray", entrypoint="mainsail run c.yaml --set x={model}"
    )
    job = render(cfg, ["unused"], request())
    assert job["spec"]["entrypoint"] == "mainsail run c.yaml --set x=churn"
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": "mainsail-ray"}
    assert job["spec"]["submissionMode"] == "HTTPMode"
    assert job["metadata"]["annotations"]["mainsail.io/run-id"] == request().run_id
    # without an entrypoint, the trigger's command, joined and filled
    job = render(
        RayJobActionConfig(cluster="c"),
        ["mainsail", "run", "{config}"],
        request(),
        Path("/app/c.yaml"),
    )
    assert job["spec"]["entrypoint"] == "mainsail run /app/c.yaml"
    with pytest.raises(RayJobError, match=r"rayjob\.cluster is required"):
        render(RayJobActionConfig(), ["x"], request())


def test_the_action_creates_one_rayjob_and_reports_refusals() -> None:
    from kubernetes import client

    fake = FakeKubeAPI(forbidden_namespaces=("locked",))
    server = ServerThread(fake).start()
    try:
        api = client.ApiClient(client.Configuration(host=server.url))
        info = RayJobAction(RayJobActionConfig(cluster="mainsail-ray"), ["x"], api_client=api)(
            request()
        )
        assert info.action == "rayjob"
        assert fake.requests == [("POST", "/apis/ray.io/v1/namespaces/mainsail/rayjobs")]
        assert ("rayjobs", "mainsail", info.detail["rayjob"]) in fake.objects
        refused = RayJobAction(
            RayJobActionConfig(cluster="mainsail-ray", namespace="locked"), ["x"], api_client=api
        )
        with pytest.raises(RayJobError, match=r"creating RayJob locked/.* failed: 403"):
            refused(request())
        api.close()
    finally:
        server.stop()


def test_the_trigger_builds_the_rayjob_action_from_its_config(tmp_path: Path) -> None:
    cfg = RetrainTriggerConfig(action="rayjob", rayjob=RayJobActionConfig(cluster="mainsail-ray"))
    trigger = RetrainTrigger(cfg, tmp_path)
    assert isinstance(trigger.action, RayJobAction)
