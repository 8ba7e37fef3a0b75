"""Pod Security "restricted" is enforced by the API server's admission in every namespace
Mainsail owns, and every pod of the release was admitted under it.

Before: the kind overlay's namespace enforced "baseline" (audit and warn "restricted"), so a pod
that runs as root with no seccomp profile was admitted; the cluster's S3 store had no namespace
of Mainsail's.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.support import kind

pytestmark = pytest.mark.cluster

#: Every namespace Mainsail owns on the kind cluster: the release's and its S3 store's.
MAINSAIL_NAMESPACES = (kind.NAMESPACE, kind.S3_NAMESPACE)

#: A pod that the "baseline" profile admits and "restricted" refuses: it may run as root, keeps
#: the default capabilities, may escalate privileges and has no seccomp profile.
BASELINE_ONLY = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "psa-probe"},
    "spec": {
        "containers": [{"name": "c", "image": kind.TOOLS_IMAGE, "command": ["sleep", "1"]}],
    },
}


def compliant(pod: dict[str, Any]) -> dict[str, Any]:
    fixed = copy.deepcopy(pod)
    fixed["spec"]["securityContext"] = kind.RESTRICTED_POD
    fixed["spec"]["containers"][0]["securityContext"] = kind.RESTRICTED_CONTAINER
    return fixed


@pytest.mark.parametrize("namespace", MAINSAIL_NAMESPACES)
def test_restricted_is_enforced_by_admission(admin: Any, namespace: str) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(admin)
    labels = core.read_namespace(namespace).metadata.labels or {}
    assert labels.get("pod-security.kubernetes.io/enforce") == "restricted", labels
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(namespace, BASELINE_ONLY, dry_run="All")
    assert refused.value.status == 403
    message = json.loads(refused.value.body)["message"]
    assert 'violates PodSecurity "restricted:latest"' in message, message
    # the same pod with the restricted security context is admitted: the profile refused it
    core.create_namespaced_pod(namespace, compliant(BASELINE_ONLY), dry_run="All")


def test_every_pod_of_the_release_was_admitted_and_is_ready(admin: Any) -> None:
    """The chart's workloads (Redis, the trigger) and the pods KubeRay makes from the chart's
    RayCluster (head, CPU and GPU workers) all run under the enforced profile."""
    from kubernetes import client

    core = client.CoreV1Api(admin)
    pods = core.list_namespaced_pod(
        kind.NAMESPACE, label_selector=f"app.kubernetes.io/instance={kind.RELEASE}"
    ).items
    components = {p.metadata.labels.get("app.kubernetes.io/component") for p in pods}
    assert {"redis", "retrain-trigger", "ray"} <= components, components
    not_ready = [
        p.metadata.name
        for p in pods
        if p.status.phase == "Running"
        and not any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]
    assert not_ready == []
    refused = [
        f"{e.involved_object.kind}/{e.involved_object.name}: {e.message}"
        for e in core.list_namespaced_event(kind.NAMESPACE).items
        if "PodSecurity" in (e.message or "")
    ]
    assert refused == []
