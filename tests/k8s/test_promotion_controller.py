"""The promotion controller as a pod of the chart (`promotionController`): `mainsail promote
--watch --forever` as the deployer's ServiceAccount, reading the feedback store the gateway
writes, acting on the gateway, its `mainsail_ab_*` series scraped. `tests/cluster/
test_serving_loop.py` runs it on the kind cluster; this checks the wiring offline.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from mainsail.core import naming

from . import checks

pytestmark = pytest.mark.k8s

NAME = naming.fullname("mainsail", "promotion-controller")


def _one(objs: list[checks.Obj], kind: str, name: str) -> checks.Obj:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def _args(deployment: checks.Obj) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    sets = dict(
        a.removeprefix("--set=").split("=", 1) for a in container["args"] if a.startswith("--set=")
    )
    return {"command": container["command"], "args": container["args"], "set": sets}


def test_it_watches_for_good_as_the_deployer_on_the_gateways_store(
    scenario_objects: dict[str, list[checks.Obj]],
) -> None:
    objs = scenario_objects["kind-mlserver"]
    deployment = _one(objs, "Deployment", NAME)
    pod = deployment["spec"]["template"]["spec"]
    got = _args(deployment)
    assert got["command"] == ["mainsail", "promote"]
    assert "--watch" in got["args"] and "--forever" in got["args"]
    # The deployer's calls, with the deployer's identity (its Role is tested on the cluster).
    assert pod["serviceAccountName"] == naming.deployer_service_account("mainsail")
    assert pod["automountServiceAccountToken"] is True
    # The store the gateway records into, and the gateway's own Service and admin token.
    gateway = naming.gateway_name("mainsail")
    router = json.loads(_one(objs, "ConfigMap", gateway)["data"]["router.json"])
    assert got["set"]["promotion.store_url"] == router["feedback_url"]
    service = _one(objs, "Service", gateway)
    port = service["spec"]["ports"][0]["port"]
    assert got["set"]["stack.kubernetes.gateway_url"] == (
        f"http://{gateway}.mainsail.svc.cluster.local:{port}"
    )
    assert got["set"]["stack.kubernetes.serving"] == "mlserver"
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    token = env["MAINSAIL_ROUTER_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token["key"] == "gateway-token"
    assert "PGPASSWORD" in env and "MAINSAIL_REGISTRY_PUBLIC_KEYS" in env
    # It waits for the chart's Postgres as the gateway does, instead of crash-looping.
    assert [c["name"] for c in pod["initContainers"]] == ["wait-for-feedback-store"]
    # kind's policy windows reach it as --set overrides.
    assert got["set"]["promotion.min_samples"] == "60"


def test_its_decisions_are_scraped_through_its_service_and_the_network_policy(
    scenario_objects: dict[str, list[checks.Obj]],
) -> None:
    objs = scenario_objects["kind-mlserver"]
    deployment = _one(objs, "Deployment", NAME)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "metrics", "containerPort": 8030} in container["ports"]
    assert _args(deployment)["set"]["promotion.metrics_port"] == "8030"
    service = _one(objs, "Service", NAME)
    assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
    monitor = _one(objs, "ServiceMonitor", NAME)
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    policy = _one(objs, "NetworkPolicy", NAME)
    assert [p["port"] for p in policy["spec"]["ingress"][0]["ports"]] == [8030]


def test_without_a_feedback_store_the_chart_says_what_it_needs(render: Any) -> None:
    with pytest.raises(Exception, match="promotionController needs the feedback store"):
        render.render_chart({"promotionController": {"enabled": True}})
    # off by default: the default chart has no store
    objs = render.documents(render.render_chart({}))
    assert not [o for o in objs if o["metadata"]["name"] == NAME]


def test_it_deploys_what_the_retraining_rayjob_publishes_as_the_next_challenger(
    scenario_objects: dict[str, list[checks.Obj]],
) -> None:
    """The chain drift -> RayJob -> challenger: the trigger's RayJob publishes with
    --candidate, and the controller's config turns promotion.deploy_candidates on (each
    --set parsed as the pod's `mainsail promote` parses it)."""
    from mainsail.cli.common import read_config

    objs = scenario_objects["kind-mlserver"]
    sets = _args(_one(objs, "Deployment", NAME))["set"]
    cfg = read_config(checks.ROOT / "configs" / "churn.yaml", [f"{k}={v}" for k, v in sets.items()])
    assert cfg.promotion.deploy_candidates is True
    trigger = _one(objs, "Deployment", naming.fullname("mainsail", "retrain-trigger"))
    trigger_sets = _args(trigger)["set"]
    entrypoint = yaml.safe_load(trigger_sets["monitor.trigger.rayjob.entrypoint"])
    assert "--publish --candidate" in entrypoint
