"""The Ray head's Jobs API (8265) is reachable by exactly its callers, and asks them for Ray's
auth token; the CNI (kube-router) enforces the chart's NetworkPolicy.

Before: the `mainsail-ray` policy opened 8265 to every pod of the namespace and of `kubeflow`,
but not to the KubeRay operator's namespace, which polls job status there (a RayJob never
succeeded); and the Jobs API, which runs code next to the S3 root keys, had no authentication.
"""

from __future__ import annotations

from typing import Any

import pytest

from mainsail.core import naming
from tests.support import kind

pytestmark = pytest.mark.cluster

HEAD = f"{naming.fullname(kind.RELEASE, 'ray')}-head-svc"
JOBS = f"http://{HEAD}.{kind.NAMESPACE}.svc.cluster.local:{naming.RAY_DASHBOARD_PORT}/api/jobs/"
#: KubeRay's Secret of the RayCluster's token (authOptions mode token), named like the cluster.
TOKEN_SECRET = naming.fullname(kind.RELEASE, "ray")

#: Three tries of an HTTP call; prints the last status code (000: no connection).
PROBE = r"""
for i in 1 2 3; do
  code=$(curl -s -o /dev/null -m 4 -w '%{http_code}' "$@" "$URL") && break
  sleep 2
done
echo "status=${code:-000}"
"""


def probe(
    admin: Any,
    namespace: str,
    labels: dict[str, str] | None = None,
    token: bool = False,
) -> str:
    """The HTTP status a pod in `namespace` with `labels` gets from the Jobs API."""
    env: list[dict[str, Any]] = [{"name": "URL", "value": JOBS}]
    args = ""
    if token:
        # A Secret is namespaced: only pods of the release's namespace can read the token.
        env.append(
            {
                "name": "RAY_AUTH_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": TOKEN_SECRET, "key": "auth_token"}},
            }
        )
        args = ' -H "Authorization: Bearer $RAY_AUTH_TOKEN"'
    script = PROBE.replace('"$@"', args.strip() or "")
    manifest = kind.pod_manifest(
        kind.unique("netpol-probe"),
        ["bash", "-c", script],
        image=kind.TOOLS_IMAGE,
        labels=labels,
        env=env,
        namespace=namespace,
        run_as=1000,
    )
    result = kind.run_pod(admin, manifest, timeout_s=180)
    assert result.exit_code == 0, result.logs
    return result.logs.strip().rsplit("status=", 1)[-1]


def test_an_unlabelled_pod_of_the_namespace_cannot_reach_the_jobs_api(admin: Any) -> None:
    assert probe(admin, kind.NAMESPACE) == "000"


def test_a_pod_of_another_namespace_cannot_reach_the_jobs_api(admin: Any) -> None:
    assert probe(admin, kind.S3_NAMESPACE) == "000"


def test_a_labelled_client_reaches_it_and_needs_the_token(admin: Any) -> None:
    client = {naming.LABEL_RAY_CLIENT: "true"}
    assert probe(admin, kind.NAMESPACE, client) == "401"
    assert probe(admin, kind.NAMESPACE, client, token=True) == "200"


def test_the_kuberay_operators_namespace_reaches_it(admin: Any) -> None:
    """Where the operator runs: it polls job status and submits HTTPMode jobs (with the token,
    which it reads from the Secret; without it the API answers 401, not silence)."""
    assert probe(admin, "kuberay-system") == "401"
