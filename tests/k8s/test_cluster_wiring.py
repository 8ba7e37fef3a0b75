"""The pieces tests/cluster runs on the kind cluster agree offline too (fast guards):

- the retrain trigger's args configure the `rayjob` action on this release's RayCluster, and the
  RayJob it renders has the shape of the training example (manifests/examples/training);
- the Ray head's Jobs API (8265) and client port are open to exactly their callers: the KubeRay
  operator's namespace, pods labelled as Ray clients, KFP's pipeline steps; never to every pod
  of a namespace; the RayCluster asks for Ray's token authentication;
- the kind values keep CPU work off the GPU worker, which tolerates the GPU node's taints.
"""

from __future__ import annotations

from typing import Any

import pytest

from mainsail.cli.common import parse_overrides
from mainsail.config import load_config
from mainsail.core import naming
from mainsail.retrain.actions import RetrainRequest
from mainsail.retrain.rayjob import render as render_rayjob

from . import checks

pytestmark = pytest.mark.k8s


def _one(objects: list[checks.Obj], kind: str, name: str) -> checks.Obj:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def test_trigger_creates_rayjobs_shaped_like_the_training_example(
    default_objects: list[checks.Obj], example_objects: dict[str, list[checks.Obj]]
) -> None:
    deployment = _one(default_objects, "Deployment", naming.fullname("mainsail", "retrain-trigger"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    sets = [a.removeprefix("--set=") for a in container["args"] if a.startswith("--set=")]
    cfg = load_config(checks.ROOT / "configs" / "churn.yaml", parse_overrides(sets))
    trigger = cfg.monitor.trigger
    ray_cluster = next(o for o in default_objects if o["kind"] == "RayCluster")
    assert trigger.action == "rayjob"
    assert trigger.rayjob.cluster == ray_cluster["metadata"]["name"]
    assert trigger.rayjob.namespace == ray_cluster["metadata"]["namespace"]

    example = next(o for o in example_objects["training"] if o["kind"] == "RayJob")
    request = RetrainRequest(
        "churn-3-x-0001", "churn", "3", "MainsailDriftSustained", "f", "g", {}, None
    )
    job = render_rayjob(trigger.rayjob, trigger.command, request)
    assert job["spec"]["entrypoint"] == example["spec"]["entrypoint"]
    for key in ("clusterSelector", "submissionMode"):
        assert job["spec"][key] == example["spec"][key], key
    assert job["metadata"]["labels"][naming.LABEL_COMPONENT] == "ray"


def _ray_policy(objects: list[checks.Obj]) -> checks.Obj:
    return _one(objects, "NetworkPolicy", naming.fullname("mainsail", "ray"))


def test_the_jobs_api_is_open_to_exactly_its_callers(default_objects: list[checks.Obj]) -> None:
    rules = _ray_policy(default_objects)["spec"]["ingress"]
    jobs = [
        r for r in rules if any(p["port"] == naming.RAY_DASHBOARD_PORT for p in r.get("ports", []))
    ]
    assert len(jobs) == 1
    peers = jobs[0]["from"]
    assert {"podSelector": {"matchLabels": {naming.LABEL_RAY_CLIENT: "true"}}} in peers
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kuberay-system"}}
    } in peers
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubeflow"}},
        "podSelector": {"matchLabels": {naming.LABEL_COMPONENT: "pipeline"}},
    } in peers
    # no peer opens it to every pod of a namespace, but the operator's own namespace
    operator_ns = peers[1]
    wide = [
        p
        for p in peers
        if p.get("podSelector") == {} or (set(p) == {"namespaceSelector"} and p != operator_ns)
    ]
    assert wide == []
    ray_cluster = next(o for o in default_objects if o["kind"] == "RayCluster")
    assert ray_cluster["spec"]["authOptions"] == {"mode": "token"}


def test_kind_values_keep_cpu_work_off_the_gpu_worker(
    scenario_objects: dict[str, list[checks.Obj]],
) -> None:
    import yaml

    ray: Any = next(o for o in scenario_objects["kind"] if o["kind"] == "RayCluster")
    groups = {g["groupName"]: g for g in ray["spec"]["workerGroupSpecs"]}
    assert groups["gpu"]["replicas"] >= 1
    assert groups["gpu"]["rayStartParams"]["num-cpus"] == "0"
    kind_config = yaml.safe_load((checks.ROOT / "kind-config.yaml").read_text())
    assert checks.kind_config_problems(kind_config, ray) == []
