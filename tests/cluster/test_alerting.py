"""Alerting on the cluster: Prometheus -> Alertmanager -> the retrain trigger.

The cluster's Alertmanager (scripts/kind/manifests/alertmanager.yaml in local mode: built from
its Go module, an Alertmanager CR of the real Prometheus Operator) takes its routes from the
chart's AlertmanagerConfig (monitoring.alertmanagerConfig): alerts labelled action=retrain of
the release's namespace go to the retrain trigger's webhook, with the bearer token the operator
reads from the auth Secret. Prometheus sends its alerts to it (alerting.alertmanagers).

Here: Prometheus has the Alertmanager as an active target; the configuration the operator
generated routes the release's action=retrain alerts to the trigger's Service with a Bearer
token; the chart's alerts carry the namespace label that route matches. That Prometheus
evaluates the chart's rules on the drift sidecar's real series, fires MainsailDriftSustained,
and that Alertmanager delivers it to the trigger, which starts a RayJob that publishes, is
test_training.py's training test (one training run for both).
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
import yaml

from mainsail.core import naming
from tests.support import kind

pytestmark = pytest.mark.cluster

TRIGGER = naming.fullname(kind.RELEASE, "retrain-trigger")


def test_prometheus_sends_its_alerts_to_the_alertmanager(admin: Any) -> None:
    with kind.port_forward(kind.PROMETHEUS_SERVICE, 9090, kind.MONITORING_NAMESPACE) as port:

        def active() -> list[str] | None:
            body = httpx.get(f"http://127.0.0.1:{port}/api/v1/alertmanagers", timeout=30).json()
            urls = [a["url"] for a in body["data"]["activeAlertmanagers"]]
            return urls or None

        urls = kind.wait_until("Prometheus to discover the Alertmanager", 120, active)
    assert all(u.endswith(":9093/api/v2/alerts") for u in urls), urls
    from kubernetes import client

    pods = client.CoreV1Api(admin).list_namespaced_pod(
        kind.MONITORING_NAMESPACE, label_selector="app.kubernetes.io/name=alertmanager"
    )
    ips = {p.status.pod_ip for p in pods.items}
    assert {u.split("//")[1].split(":")[0] for u in urls} == ips


def test_the_alertmanager_routes_retrain_alerts_to_the_trigger(admin: Any) -> None:
    with kind.port_forward(kind.ALERTMANAGER_SERVICE, 9093, kind.MONITORING_NAMESPACE) as port:

        def loaded() -> dict[str, Any] | None:
            body = httpx.get(f"http://127.0.0.1:{port}/api/v2/status", timeout=30).json()
            config: dict[str, Any] = yaml.safe_load(body["config"]["original"])
            names = [r["name"] for r in config.get("receivers", [])]
            return config if any(n.endswith("/retrain-trigger") for n in names) else None

        config = kind.wait_until(
            "the operator to load the chart's AlertmanagerConfig", 180, loaded, every=5
        )
    routes = [
        r for r in config["route"].get("routes", []) if r["receiver"].endswith("/retrain-trigger")
    ]
    assert len(routes) == 1, config["route"]
    # the operator's OnNamespace strategy: only this namespace's alerts, and action=retrain
    assert f'namespace="{kind.NAMESPACE}"' in routes[0]["matchers"], routes[0]
    assert 'action="retrain"' in routes[0]["matchers"], routes[0]
    receiver = next(r for r in config["receivers"] if r["name"] == routes[0]["receiver"])
    (webhook,) = receiver["webhook_configs"]
    # Alertmanager shows the URL and the token masked; the operator's generated configuration
    # (what it mounts into Alertmanager) has them
    assert webhook["http_config"]["authorization"]["credentials"] == "<secret>"
    generated = _generated_config(admin)
    (hook,) = next(r for r in generated["receivers"] if r["name"] == routes[0]["receiver"])[
        "webhook_configs"
    ]
    assert hook["url"] == f"http://{TRIGGER}.{kind.NAMESPACE}.svc.cluster.local:8090/alerts"
    auth = hook["http_config"]["authorization"]
    token = kind.secret_data(admin, f"{kind.RELEASE}-auth")["trigger-token"]
    assert auth.get("type", "Bearer") == "Bearer"
    # the trigger's own token, read by the operator from the chart's auth Secret
    assert auth["credentials"] == token


def _generated_config(admin: Any) -> dict[str, Any]:
    """The configuration Prometheus Operator generated for the Alertmanager (its Secret)."""
    import gzip

    from kubernetes import client

    name = "alertmanager-kube-prometheus-stack-alertmanager-generated"
    found = client.CoreV1Api(admin).read_namespaced_secret(name, kind.MONITORING_NAMESPACE)
    packed = base64.b64decode(found.data["alertmanager.yaml.gz"])
    config: dict[str, Any] = yaml.safe_load(gzip.decompress(packed))
    return config


def test_the_chart_alerts_carry_the_namespace_the_route_matches(admin: Any) -> None:
    from kubernetes import client

    rule = client.CustomObjectsApi(admin).get_namespaced_custom_object(
        "monitoring.coreos.com",
        "v1",
        kind.NAMESPACE,
        "prometheusrules",
        naming.fullname(kind.RELEASE, "alerts"),
    )
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert alerts and all(r["labels"]["namespace"] == kind.NAMESPACE for r in alerts)
