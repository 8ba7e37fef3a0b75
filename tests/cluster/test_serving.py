"""Serving on the cluster without Seldon Core 2 (`serving.backend: mlserver`, local mode).

- `mainsail deploy` (backend kubernetes, `stack.kubernetes.serving: mlserver`), run as the
  deployer's ServiceAccount, points the champion's and the challenger's MLServer Deployments at
  two signed registry versions, waits for their rollouts (each pod downloads its version from
  the cluster's S3, checks the signature, loads it) and sets the gateway's variants and a 10%
  canary through its admin API (token from the Secret `<release>-auth`, key `gateway-token`).
- Inference through the gateway returns predictions; about 10% of it reaches the challenger.
- The cluster's Prometheus (Prometheus Operator, selecting the chart's monitors by the
  `release: kube-prometheus-stack` label) scrapes the gateway's `mainsail_router_*`, the
  runtime's drift feed (`mainsail_drift_feed_rows_total`) and the drift sidecars, and has loaded
  every rule of the chart's PrometheusRule.
- Every Grafana dashboard query parses on that Prometheus, and returns data wherever the series
  it reads exist on the cluster; the ones whose series the cluster does not emit are listed.
Where Seldon Core 2 is installed (upstream mode, serving.backend seldon) these are skipped.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mainsail.core import naming
from mainsail.registry.store import ModelRegistry
from tests.support import kind

pytestmark = pytest.mark.cluster

MODEL = "churn"  # the gateway's public model (gateway.model), the registry model
GATEWAY = naming.gateway_name(kind.RELEASE)
DEPLOYER = naming.deployer_service_account(kind.RELEASE)
PROMETHEUS = "service/kube-prometheus-stack-prometheus"
CANARY = 10
REQUESTS = 400
ROWS = 20


@dataclass
class Served:
    champion: int
    challenger: int
    actions: list[str]
    gateway: str
    token: str
    counts: Counter[str]
    prometheus: str
    cfg: Any
    registry: ModelRegistry


@pytest.fixture(scope="module")
def served(
    admin: Any, publish: Callable[[str, int], ModelRegistry], model_artifact: Path
) -> Iterator[Served]:
    """Two signed versions deployed (champion, challenger at 10%), traffic sent through the
    gateway; the gateway and Prometheus port-forwarded for the tests."""
    if not kind.mlserver_mode(admin):
        pytest.skip("serving.backend is seldon here: scripts/kind/smoke.sh covers serving")
    registry = publish(MODEL, 2)
    champion, challenger = (v.version for v in registry.versions(MODEL)[-2:])
    registry.promote(MODEL, champion, "champion")
    token = kind.secret_data(admin, naming.auth_secret_name(kind.RELEASE))["gateway-token"]
    with (
        kind.port_forward(f"service/{GATEWAY}", naming.ROUTER_PORT) as port,
        kind.port_forward(PROMETHEUS, 9090, naming.MONITORING_NAMESPACE) as prom,
    ):
        gateway = f"http://127.0.0.1:{port}"
        cfg = kind.gateway_config(gateway)
        started = time.monotonic()
        result = kind.deploy_as_deployer(admin, cfg, token, challenger, CANARY, registry)
        print(f"\ndeploy v{champion} / v{challenger}: {time.monotonic() - started:.0f} s")
        counts = _traffic(gateway, model_artifact)
        yield Served(
            champion,
            challenger,
            result.actions,
            gateway,
            token,
            counts,
            f"http://127.0.0.1:{prom}",
            cfg,
            registry,
        )


def _traffic(gateway: str, artifact: Path) -> Counter[str]:
    """REQUESTS requests of ROWS rows through the gateway; the variants that answered."""
    counts: Counter[str] = Counter()
    bodies = kind.fresh_bodies(artifact, ROWS, REQUESTS)
    with httpx.Client(base_url=gateway, timeout=30) as client:
        for i in range(REQUESTS):
            answer = client.post(f"/v2/models/{MODEL}/infer", json=bodies[i % len(bodies)])
            assert answer.status_code == 200, answer.text[:500]
            counts[answer.headers["x-mainsail-variant"]] += 1
    return counts


def test_deploy_points_each_variants_deployment_at_its_version(admin: Any, served: Served) -> None:
    from kubernetes import client

    from mainsail.deploy.gateway import rolled_out, served_version

    apps = client.AppsV1Api(admin)
    for role, version in (("champion", served.champion), ("challenger", served.challenger)):
        name = naming.serving_deployment(role, kind.RELEASE)
        deployment = apps.read_namespaced_deployment(name, kind.NAMESPACE)
        assert served_version(deployment) == str(version)
        assert rolled_out(deployment) and deployment.spec.replicas == 1
        assert f"{name} serves v{version}" in served.actions
    assert f"gateway: champion {100 - CANARY} / challenger {CANARY}" in served.actions
    state = httpx.get(
        f"{served.gateway}/admin/state",
        headers={"authorization": f"Bearer {served.token}"},
        timeout=10,
    ).json()["variants"]
    assert state["champion"]["version"] == str(served.champion)
    assert state["challenger"]["version"] == str(served.challenger)
    assert (state["champion"]["weight"], state["challenger"]["weight"]) == (90, 10)
    assert all(state[r]["healthy"] for r in ("champion", "challenger")), state


def test_inference_through_the_gateway_returns_predictions(
    served: Served, model_artifact: Path
) -> None:
    answer = httpx.post(
        f"{served.gateway}/v2/models/{MODEL}/infer",
        json=kind.fresh_bodies(model_artifact, ROWS, 1)[0],
        headers={"x-request-id": "e2e-serving-1"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    outputs = {o["name"]: o for o in body["outputs"]}
    assert set(outputs) == {"label", "probability"}
    assert outputs["label"]["shape"] == [ROWS] and len(outputs["label"]["data"]) == ROWS
    assert set(outputs["label"]["data"]) <= set(body["parameters"]["classes"])
    assert all(0 <= p <= 1 for p in outputs["probability"]["data"])
    variant = answer.headers["x-mainsail-variant"]
    version = {"champion": served.champion, "challenger": served.challenger}[variant]
    assert answer.headers["x-mainsail-model-version"] == str(version)
    assert answer.headers["x-request-id"] == "e2e-serving-1"


def test_about_ten_percent_of_the_traffic_reaches_the_challenger(served: Served) -> None:
    total = sum(served.counts.values())
    share = served.counts["challenger"] / total
    print(f"\nchallenger: {served.counts['challenger']} of {total} ({share:.1%})")
    # binomial(400, 0.1): mean 40, sd 6; three sd either side
    assert set(served.counts) <= {"champion", "challenger"}
    assert 0.055 <= share <= 0.145, served.counts


def _query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = kind.prometheus_api(prometheus, "/api/v1/query", query=expr)[
        "result"
    ]
    return result


def _until_data(
    prometheus: str,
    expr: str,
    timeout_s: float,
    label: str | None = None,
    values: set[str] | None = None,
) -> list[dict[str, Any]]:
    """The query's result once it has data (and, with `label`, series for all `values`)."""

    def probe() -> list[dict[str, Any]] | None:
        result = _query(prometheus, expr)
        found = {r["metric"].get(label) for r in result} if label is not None else set()
        if values is not None and not values <= found:
            return None
        return result or None

    return kind.wait_until(f"Prometheus to return data for {expr}", timeout_s, probe, every=5)


def test_prometheus_scrapes_the_gateway_the_runtime_and_the_sidecars(served: Served) -> None:
    prom = served.prometheus
    pairs = {("champion", str(served.champion)), ("challenger", str(served.challenger))}
    expr = f'sum by (variant, version) ({naming.METRIC_REQUESTS}{{model="{MODEL}"}})'

    def both_variants() -> set[tuple[str, str]] | None:
        seen = {(r["metric"]["variant"], r["metric"]["version"]) for r in _query(prom, expr)}
        return seen if seen >= pairs else None

    kind.wait_until(f"Prometheus to return {sorted(pairs)} for {expr}", 180, both_variants, 5)
    # the runtime's drift feed, on MLServer's /metrics of each variant's pod
    versions = {str(served.champion), str(served.challenger)}
    expr = 'sum by (version) (mainsail_drift_feed_rows_total{outcome="sent"})'
    fed = _until_data(prom, expr, 180, "version", versions)
    assert {r["metric"]["version"] for r in fed} >= versions
    # the sidecars, under the job the rules expect, received those rows
    window = f'mainsail_drift_window_rows{{job="{naming.DRIFT_SCRAPE_JOB}"}} > 0'
    windows = _until_data(prom, window, 180, "version", {str(served.champion)})
    assert {r["metric"]["version"] for r in windows} >= {str(served.champion)}
    serving_job = f"{kind.NAMESPACE}/{naming.fullname(kind.RELEASE, 'serving')}"
    ours = {GATEWAY, naming.DRIFT_SCRAPE_JOB, serving_job}

    def targets() -> list[dict[str, Any]]:
        found = _query(prom, f'up{{namespace="{kind.NAMESPACE}"}}')
        return [r for r in found if r["metric"]["job"] in ours]

    def all_up() -> list[dict[str, Any]] | None:
        # one target of each kind per variant pod (MLServer, sidecar) and the gateway, all up
        # (a pod replaced just before stays listed, down, until the next discovery)
        up = targets()
        return up if len(up) == 5 and all(r["value"][1] == "1" for r in up) else None

    try:
        up = kind.wait_until("every serving and gateway target up", 90, all_up, every=5)
    except AssertionError:
        raise AssertionError([(r["metric"], r["value"]) for r in targets()]) from None
    assert {r["metric"]["job"] for r in up} == ours, up


def test_the_shipped_rules_are_loaded(served: Served) -> None:
    shipped = yaml.safe_load(
        (kind.REPO / "helm" / "mainsail" / "rules" / "mainsail-rules.yaml").read_text()
    )
    expected = {r.get("alert") or r.get("record") for g in shipped["groups"] for r in g["rules"]}
    answer = httpx.get(f"{served.prometheus}/api/v1/rules", timeout=30).json()
    assert answer["status"] == "success"

    def loaded() -> set[str] | None:
        body = httpx.get(f"{served.prometheus}/api/v1/rules", timeout=30).json()
        names = {r["name"] for g in body["data"]["groups"] for r in g["rules"]}
        return names if expected <= names else None

    names = kind.wait_until("Prometheus to load the chart's PrometheusRule", 120, loaded)
    assert expected <= names
    body = httpx.get(f"{served.prometheus}/api/v1/rules", timeout=30).json()
    unhealthy = [
        (r["name"], r.get("lastError"))
        for g in body["data"]["groups"]
        for r in g["rules"]
        if r["name"] in expected and r.get("health") == "err"
    ]
    assert not unhealthy, unhealthy


_NAME = re.compile(r"\b(mainsail_[a-z0-9_]+|ALERTS)\b")


def test_every_dashboard_query_parses_and_has_data_where_its_series_exist(
    served: Served,
) -> None:
    """Each panel query of every dashboard, evaluated by the cluster's Prometheus: a query
    error fails; a query whose series all exist on the cluster must return data; the others
    (series this cluster does not emit) are listed."""
    from mainsail.monitor.dashboards import dashboards, substitute

    prom = served.prometheus
    # the series the gateway and the sidecars export are there (test above) before we look
    _until_data(prom, f"{naming.METRIC_REQUESTS}", 180)
    present = set(httpx.get(f"{prom}/api/v1/label/__name__/values", timeout=30).json()["data"])
    errors: list[str] = []
    empty: list[tuple[str, str]] = []
    absent: list[str] = []
    checked = 0
    for dashboard in dashboards():
        for panel in dashboard.panels:
            for query in panel.queries:
                expr = substitute(query.expr, kind.DASHBOARD_VARIABLES)
                checked += 1
                where = f"{dashboard.uid} / {panel.title}"
                try:
                    result = _query(prom, expr)
                except ValueError as err:
                    errors.append(f"{where}: {err}: {expr}")
                    continue
                names = {
                    n.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
                    for n in _NAME.findall(expr)
                }
                missing = sorted(
                    n for n in names if n not in present and f"{n}_bucket" not in present
                )
                if missing:
                    absent.append(f"{where}: {', '.join(missing)}")
                    continue
                if not result and query.expect_data:
                    empty.append((where, expr))
    # a series that exists may need one more scrape for a rate() window: look again, a while
    deadline = time.monotonic() + 90
    while empty and time.monotonic() < deadline:
        time.sleep(10)
        empty = [(where, expr) for where, expr in empty if not _query(prom, expr)]
    print(f"\n{checked} dashboard queries; series not emitted on this cluster ({len(absent)}):")
    for line in absent:
        print(f"  {line}")
    assert checked >= 30
    assert not errors, "\n".join(errors)
    assert not empty, "no data although the series exist:\n" + "\n".join(
        f"{where}: {expr}" for where, expr in empty
    )


def test_the_serving_pods_run_restricted_as_their_service_account(admin: Any) -> None:
    from kubernetes import client

    pods = (
        client.CoreV1Api(admin)
        .list_namespaced_pod(
            kind.NAMESPACE,
            label_selector=f"{naming.LABEL_INSTANCE}={kind.RELEASE},{naming.LABEL_COMPONENT}=serving",
        )
        .items
    )
    if not pods:
        pytest.skip("no MLServer Deployment pods (serving.backend seldon)")
    for pod in pods:
        assert pod.spec.service_account_name == naming.fullname(kind.RELEASE, "serving")
        assert pod.spec.automount_service_account_token is False
        assert [c.name for c in pod.spec.containers] == ["mlserver", "drift"]
        assert pod.spec.security_context.run_as_non_root is True
    print(json.dumps(sorted(p.metadata.name for p in pods)))


def test_the_gateway_waited_for_postgres_instead_of_restarting(admin: Any) -> None:
    """Installed together, the gateway starts before the chart's Postgres is ready: its init
    container waits for the store (a line per try), so the gateway itself never restarts (it
    crash-looped twice before)."""
    from kubernetes import client

    core = client.CoreV1Api(admin)
    selector = f"{naming.LABEL_INSTANCE}={kind.RELEASE},{naming.LABEL_COMPONENT}=gateway"
    (pod,) = core.list_namespaced_pod(kind.NAMESPACE, label_selector=selector).items
    (wait,) = pod.status.init_container_statuses
    assert wait.name == "wait-for-feedback-store"
    assert wait.state.terminated is not None and wait.state.terminated.exit_code == 0, wait
    (gateway,) = pod.status.container_statuses
    assert gateway.restart_count == 0, gateway
    logs = core.read_namespaced_pod_log(
        pod.metadata.name, kind.NAMESPACE, container="wait-for-feedback-store"
    )
    print(f"\n{logs.strip()}")
    assert "ready after" in logs.strip().splitlines()[-1], logs


def test_killing_the_challengers_pod_loses_no_request_and_no_prediction(
    admin: Any, served: Served, model_artifact: Path
) -> None:
    """At a 50% canary the challenger's pod is deleted mid-traffic: the gateway re-sends what it
    could not deliver to the champion, every request is answered, and every answer's prediction
    is in the feedback store (each request's ground truth is accepted, none unknown); the
    Deployment's new pod loads the version again and the gateway takes it back. The overview
    dashboard's failover panel, evaluated by the cluster's Prometheus, shows the challenger's
    requests answered by the champion."""
    import threading

    from kubernetes import client

    from mainsail.deploy.gateway import GatewayDeployer, rolled_out

    deployer = GatewayDeployer(served.cfg, token=served.token, apps=client.AppsV1Api(admin))
    deployer.set_canary(50)
    bodies = kind.fresh_bodies(model_artifact, 1, 200)
    answers: list[tuple[str, int, str, list[str]]] = []

    def send() -> None:
        run = kind.unique("kill")
        with httpx.Client(base_url=served.gateway, timeout=30) as http:
            for i in range(200):
                rid = f"{run}-{i}"
                answer = http.post(
                    f"/v2/models/{MODEL}/infer", json=bodies[i], headers={"x-request-id": rid}
                )
                try:
                    classes = answer.json().get("parameters", {}).get("classes", [])
                except ValueError:
                    classes = []
                answers.append(
                    (rid, answer.status_code, answer.headers.get("x-mainsail-variant", ""), classes)
                )

    core = client.CoreV1Api(admin)
    selector = f"{naming.LABEL_COMPONENT}=serving,{naming.LABEL_VARIANT}=challenger"
    victim = core.list_namespaced_pod(kind.NAMESPACE, label_selector=selector).items[0]
    sender = threading.Thread(target=send)
    sender.start()
    kind.wait_until("30 answers", 60, lambda: len(answers) >= 30 or None, every=0.2)
    core.delete_namespaced_pod(victim.metadata.name, kind.NAMESPACE, grace_period_seconds=0)
    sender.join(300)
    assert not sender.is_alive()
    assert [a for a in answers if a[1] != 200] == []
    by_variant = Counter(a[2] for a in answers)
    print(f"\nwith the challenger's pod deleted after 30 requests: {dict(by_variant)}")
    assert by_variant["challenger"] > 0 and by_variant["champion"] > 100, by_variant
    label = answers[0][3][0]
    counts = httpx.post(
        f"{served.gateway}/feedback",
        json={"labels": {rid: label for rid, *_ in answers}},
        timeout=60,
    ).json()
    assert counts.get("accepted") == len(answers) == 200, counts

    name = naming.serving_deployment("challenger", kind.RELEASE)

    def back() -> bool | None:
        deployment = client.AppsV1Api(admin).read_namespaced_deployment(name, kind.NAMESPACE)
        healthy = deployer.state()["variants"]["challenger"]["healthy"]
        return (rolled_out(deployment) and healthy) or None

    started = time.monotonic()
    kind.wait_until("the challenger's new pod, and the gateway taking it back", 180, back)
    print(
        f"challenger's new pod back in the gateway's rotation: {time.monotonic() - started:.0f} s"
    )
    deployer.set_canary(CANARY)

    from mainsail.monitor.dashboards import dashboards, substitute

    (panel,) = [
        p
        for d in dashboards()
        for p in d.panels
        if "mainsail_router_failovers_total" in p.queries[0].expr
    ]
    # A rate needs two scrapes of the series (30 s apart) after its first failover.
    shown = _until_data(
        served.prometheus, substitute(panel.queries[0].expr, kind.DASHBOARD_VARIABLES), 180
    )
    moved = {(r["metric"]["assigned"], r["metric"]["variant"]) for r in shown}
    print(f"failover panel: {[(r['metric'], r['value'][1]) for r in shown]}")
    assert ("challenger", "champion") in moved, shown
    # The counter behind it: the requests the gateway moved (the panel's rate may be 0 by now).
    (total,) = _query(
        served.prometheus,
        'sum(mainsail_router_failovers_total{assigned="challenger", variant="champion"})',
    )
    assert float(total["value"][1]) >= 1, total


def test_the_promotion_backend_rolls_back_then_promotes_through_the_gateway(
    admin: Any, served: Served, model_artifact: Path
) -> None:
    """What the promotion controller does with its decisions (`GatewayBackend`), as the
    deployer's ServiceAccount: a rollback sends every request to the champion; a promotion
    serves the challenger's version on the champion's Deployment, then moves the gateway's
    champion, all traffic and the registry's alias to it."""
    from mainsail.deploy.gateway import GatewayDeployer
    from mainsail.promotion.backends import GatewayBackend

    as_deployer = kind.service_account_client(admin, DEPLOYER)
    try:
        deployer = GatewayDeployer(served.cfg, as_deployer, token=served.token)
        backend = GatewayBackend(served.cfg, registry=served.registry, deployer=deployer)
        champion, challenger = str(served.champion), str(served.challenger)
        backend.set_weight(MODEL, CANARY)  # whatever the test before left
        assert backend.current(MODEL) == (champion, challenger, CANARY)

        backend.rollback(MODEL)
        assert backend.current(MODEL) == (champion, None, 0)
        answered = _answers(served.gateway, model_artifact, 40)
        assert answered == Counter({("champion", champion): 40})

        backend.set_weight(MODEL, 50)
        started = time.monotonic()
        backend.promote(MODEL)
        print(f"\npromotion (the champion's rollout included): {time.monotonic() - started:.0f} s")
        assert backend.current(MODEL) == (challenger, None, 0)
        answered = _answers(served.gateway, model_artifact, 40)
        assert answered == Counter({("champion", challenger): 40})
        assert served.registry.aliases(MODEL)["champion"] == served.challenger
    finally:
        as_deployer.close()


def _answers(gateway: str, artifact: Path, count: int) -> Counter[tuple[str, str]]:
    """`count` requests through the gateway: (variant, version) of each answer."""
    seen: Counter[tuple[str, str]] = Counter()
    bodies = kind.fresh_bodies(artifact, ROWS, count)
    with httpx.Client(base_url=gateway, timeout=30) as client:
        for body in bodies:
            answer = client.post(f"/v2/models/{MODEL}/infer", json=body)
            assert answer.status_code == 200, answer.text[:500]
            seen[
                (answer.headers["x-mainsail-variant"], answer.headers["x-mainsail-model-version"])
            ] += 1
    return seen


STORE_PROBE = """
import json, os, time
import sqlalchemy as sa
from mainsail.feedback.store import FeedbackStore, feedback
# a new pod's address may reach kube-router's NetworkPolicy sets a moment after it starts
# (connection refused until then)
for attempt in range(30):
    try:
        store = FeedbackStore(os.environ["STORE_URL"])
        break
    except sa.exc.OperationalError:
        if attempt == 29:
            raise
        time.sleep(1)
ids = json.loads(os.environ["REQUEST_IDS"])
labelled = {v: int(store.quality("churn", v, "classification").get("labelled", 0))
            for v in ("champion", "challenger")}
with store.engine.connect() as conn:
    query = sa.select(sa.func.count()).where(feedback.c.request_id.in_(ids or [""]))
    found = conn.execute(query).scalar()
print("RESULT " + json.dumps({"dialect": store.engine.dialect.name, "labelled": labelled,
                               "requests": store.requests_per_variant("churn"), "found": found}))
"""


def _store_from_a_pod(admin: Any, request_ids: list[str]) -> dict[str, Any]:
    """The feedback store as another pod reads it (the promotion controller's calls), through
    the chart's Postgres with the password from its Secret."""
    env = [
        {"name": "STORE_URL", "value": kind.feedback_store_url(admin)},
        {"name": "REQUEST_IDS", "value": json.dumps(request_ids)},
        {
            "name": "PGPASSWORD",
            "valueFrom": {"secretKeyRef": {"name": POSTGRES_SECRET, "key": "password"}},
        },
    ]
    manifest = kind.pod_manifest(
        kind.unique("store-reader"), ["python", "-c", STORE_PROBE], env=env
    )
    result = kind.run_pod(admin, manifest, timeout_s=180)
    assert result.exit_code == 0, result.logs[-3000:]
    return kind.parse_json_line(result.logs, "RESULT ")


POSTGRES_SECRET = "mainsail-postgres"


def test_feedback_lives_in_postgres_and_outlives_the_gateways_pod(
    admin: Any, served: Served, model_artifact: Path
) -> None:
    """The gateway records predictions into the chart's Postgres; its pod is replaced; ground
    truth posted to the NEW pod for the requests the old one answered is accepted (the new pod
    finds them in the store), and another pod reads every labelled outcome, as the promotion
    controller does. (Last in this module: it replaces the gateway's pod under the
    port-forward the tests above use.)"""
    from kubernetes import client

    if not kind.secret_data(admin, POSTGRES_SECRET).get("password"):
        pytest.fail(f"Secret {POSTGRES_SECRET} has no password (scripts/kind/install.sh makes it)")
    core = client.CoreV1Api(admin)
    pg_pod = core.list_namespaced_pod(
        kind.NAMESPACE, label_selector=f"{naming.LABEL_COMPONENT}=postgres"
    ).items[0]
    mounted = next(v for v in pg_pod.spec.volumes if v.name == "password")
    assert mounted.secret.default_mode == 0o440  # never world-readable
    before = _store_from_a_pod(admin, [])
    assert before["dialect"] == "postgresql", before

    bodies = kind.fresh_bodies(model_artifact, 1, 40)
    run = kind.unique("restart")
    ids = [f"{run}-{i}" for i in range(40)]
    labels: dict[str, str] = {}
    with httpx.Client(base_url=served.gateway, timeout=30) as http:
        for rid, body in zip(ids, bodies, strict=True):
            answer = http.post(
                f"/v2/models/{MODEL}/infer", json=body, headers={"x-request-id": rid}
            )
            assert answer.status_code == 200, answer.text[:300]
            labels[rid] = answer.json()["parameters"]["classes"][0]

    selector = f"{naming.LABEL_INSTANCE}={kind.RELEASE},{naming.LABEL_COMPONENT}=gateway"
    (old,) = core.list_namespaced_pod(kind.NAMESPACE, label_selector=selector).items
    core.delete_namespaced_pod(old.metadata.name, kind.NAMESPACE)

    def replaced() -> str | None:
        pods = core.list_namespaced_pod(kind.NAMESPACE, label_selector=selector).items
        ready = [
            p.metadata.name
            for p in pods
            if p.metadata.name != old.metadata.name
            and p.metadata.deletion_timestamp is None
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        ]
        return ready[0] if ready else None

    new = kind.wait_until("the gateway's new pod Ready", 180, replaced)
    with kind.port_forward(f"pod/{new}", naming.ROUTER_PORT) as port:
        counts = httpx.post(
            f"http://127.0.0.1:{port}/feedback", json={"labels": labels}, timeout=60
        ).json()
    assert counts == {"accepted": len(ids), "unknown": 0, "duplicate": 0}, counts

    after = _store_from_a_pod(admin, ids)
    assert after["found"] == len(ids), after
    gained = sum(after["labelled"].values()) - sum(before["labelled"].values())
    print(f"\nfeedback store: {before} -> {after}")
    assert gained == len(ids), (before, after)
