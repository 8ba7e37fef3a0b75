"""The promotion controller's whole experiment on the cluster, both ways (issue 17, stage 3).

`serving.backend: mlserver`: the variants' MLServer Deployments behind the gateway, which records
every prediction (assigned and answering variant) in the chart's Postgres. The controller is the
chart's own pod (`promotionController`: `mainsail promote --watch --forever` as the deployer's
ServiceAccount, reading the store in Postgres, its `mainsail_ab_*` series scraped by the
cluster's Prometheus). scripts/kind/values.yaml installs it with no replica, so that the serving
tests before this module drive the gateway alone, and sets its policy's short windows and a 5 s
look (`promotionController.set`); each experiment here scales it to one pod once the challenger
is deployed, and back to none after the decision. The test deploys, sends labelled traffic and
watches what the pod decides: the decision log in Postgres, the pod's log, the gateway, the
registry and Prometheus.

(a) champion A, a better challenger B at a 25% canary; 5-row requests with ground truth through
    the gateway; B's pod is deleted after the first requests. No request fails, every row's
    prediction and label is in Postgres, the split the controller tests is the assignment
    (never a pause), the failovers are in its decisions, and it ramps B to 50% and promotes it.
(b) a worse challenger C at 25% against the new champion B: the controller rolls it back.

The ground truth is synthetic: A, B and C are the same trained artifact, so "better" and "worse"
are made by the labels. A row answered by the variant under test as the worse one gets the
other class for one row in three; every other row gets the class it was given. The assertions
are about the loop (records, split, decisions, the gateway and the registry acting on them), not
about the model.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from mainsail.core import naming
from mainsail.feedback.store import FeedbackStore, feedback, predictions
from mainsail.promotion.backends import GatewayBackend
from mainsail.registry.store import ModelRegistry
from tests.support import kind

pytestmark = pytest.mark.cluster

MODEL = "churn"
GATEWAY = naming.gateway_name(kind.RELEASE)
PROMETHEUS = "service/kube-prometheus-stack-prometheus"
CANARY = 25
ROWS = 5
BODIES = 1_000
"""Request bodies made before the experiments; more are made as they are needed."""
ROUND = 40
"""Requests between two reads of the decision log (the pod looks every 5 s meanwhile)."""
KILL_AT = 10
"""(a): the challenger's pod is deleted after this many requests of the first round."""
DEADLINE_S = 300
"""Per experiment: traffic until the pod's final decision."""


@dataclass
class Loop:
    gateway: str
    token: str
    cfg: Any
    registry: ModelRegistry
    store: FeedbackStore
    artifact: Path
    bodies: list[dict[str, Any]]
    """Fresh rows for every request of the module, in order (see :func:`_next_body`)."""
    prometheus: str
    backend: GatewayBackend
    """What the test reads the gateway's variants through (as the deployer; read-only here)."""
    made: int = 0
    """Bodies made after the first BODIES ran out."""


@dataclass
class Experiment:
    """What one experiment sent, saw and what the controller's pod decided."""

    run: str
    key: str
    requests: int = 0
    rows: int = 0
    labels_accepted: int = 0
    answered: Counter[str] = field(default_factory=Counter)
    failed_over: Counter[str] = field(default_factory=Counter)
    logged: list[dict[str, Any]] = field(default_factory=list)
    """The pod's acted-on decisions of this experiment (the decision log in Postgres)."""
    log: str = ""
    """The pod's log: a line per look."""
    seconds: float = 0.0
    stored: dict[str, int] = field(default_factory=dict)
    """Its rows in Postgres: predictions, labelled ones, failed-over ones."""

    def actions(self) -> list[str]:
        return [d["action"] for d in self.logged]


@pytest.fixture(scope="module")
def loop(admin: Any, publish: Any, model_artifact: Path) -> Iterator[Loop]:
    if not kind.mlserver_mode(admin):
        pytest.skip("serving.backend is seldon here: scripts/kind/smoke.sh covers serving")
    from mainsail.deploy.gateway import GatewayDeployer
    from tests.support.containers import v2_body

    registry: ModelRegistry = publish(MODEL, 1)
    token = kind.secret_data(admin, naming.auth_secret_name(kind.RELEASE))["gateway-token"]
    with (
        kind.port_forward(f"service/{GATEWAY}", naming.ROUTER_PORT) as port,
        kind.feedback_store(admin) as store,
        kind.port_forward(PROMETHEUS, 9090, naming.MONITORING_NAMESPACE) as prom,
    ):
        cfg = kind.gateway_config(f"http://127.0.0.1:{port}")
        as_deployer = kind.service_account_client(
            admin, naming.deployer_service_account(kind.RELEASE)
        )
        deployer = GatewayDeployer(cfg, as_deployer, token=token)
        try:
            yield Loop(
                f"http://127.0.0.1:{port}",
                token,
                cfg,
                registry,
                store,
                model_artifact,
                # Fresh rows for every request: rows sent again and again are a distribution
                # of their own, which the drift sidecar rightly flags, and its alert would
                # start a retraining beside these tests (test_training.py drives that alert).
                [v2_body(model_artifact, ROWS, seed) for seed in range(100, 100 + BODIES)],
                f"http://127.0.0.1:{prom}",
                GatewayBackend(cfg, registry=registry, deployer=deployer),
            )
        finally:
            kind.scale_promotion_controller(admin, 0)
            as_deployer.close()


@contextlib.contextmanager
def _controller_pod(admin: Any, loop: Loop, key: str) -> Iterator[str]:
    """The chart's controller scaled to one pod, Ready, and looking at experiment `key` (its
    first look opened it: what is served from then on is its evidence); scaled back to none on
    the way out. Yields the pod's name."""
    started = time.monotonic()
    with kind.promotion_controller_running(admin) as name:
        kind.wait_until(
            f"the controller's first look at {key}",
            60,
            lambda: loop.store.load_state(key) is not None or None,
            every=1,
        )
        print(f"\ncontroller pod {name} looking at {key}: {time.monotonic() - started:.0f} s")
        yield name


def _deploy(admin: Any, loop: Loop, champion: int | None) -> tuple[int, int]:
    """A new signed version as challenger at CANARY% (and, given, `champion` as champion)."""
    if champion is not None:
        loop.registry.promote(MODEL, champion, "champion")
    challenger = loop.registry.publish(MODEL, loop.artifact).version
    started = time.monotonic()
    kind.deploy_as_deployer(admin, loop.cfg, loop.token, challenger, CANARY, loop.registry)
    current = loop.backend.current(MODEL)
    took = time.monotonic() - started
    print(f"\ndeployed v{challenger} at {CANARY}% beside {current}: {took:.0f} s")
    assert current[1:] == (str(challenger), CANARY), current
    return int(current[0]), challenger


def _next_body(loop: Loop) -> dict[str, Any]:
    """The next request's body: rows never sent before, in this module or the other
    experiment (the pod looks every few seconds while the traffic runs on, so an experiment
    sends as many requests as its pace allows, 3,080 in one run)."""
    from tests.support.containers import v2_body

    if not loop.bodies:
        loop.bodies.append(v2_body(loop.artifact, ROWS, 100 + BODIES + loop.made))
        loop.made += 1
    return loop.bodies.pop(0)


def _decided(loop: Loop, key: str) -> list[dict[str, Any]]:
    return [d for d in loop.store.decisions(MODEL) if d["evidence"].get("experiment") == key]


def _experiment(admin: Any, loop: Loop, key: str, worse: str, kill: bool) -> Experiment:
    """Rounds of labelled traffic while the controller's pod looks, until it promotes or rolls
    back. `worse`: the variant whose answers get one wrong label in three."""
    from kubernetes import client

    ex = Experiment(kind.unique("loop"), key)
    started = time.monotonic()
    core = client.CoreV1Api(admin)
    selector = f"{naming.LABEL_COMPONENT}=serving,{naming.LABEL_VARIANT}=challenger"
    with (
        _controller_pod(admin, loop, key) as pod,
        httpx.Client(base_url=loop.gateway, timeout=30) as http,
    ):
        while time.monotonic() - started < DEADLINE_S:
            labels: dict[str, str] = {}
            for _ in range(ROUND):
                if kill and ex.requests == KILL_AT:
                    pods = core.list_namespaced_pod(kind.NAMESPACE, label_selector=selector).items
                    (victim,) = [p for p in pods if p.metadata.deletion_timestamp is None]
                    core.delete_namespaced_pod(
                        victim.metadata.name, kind.NAMESPACE, grace_period_seconds=0
                    )
                    print(f"deleted the challenger's pod {victim.metadata.name}")
                rid = f"{ex.run}-{ex.requests}"
                body = _next_body(loop)
                answer = http.post(
                    f"/v2/models/{MODEL}/infer", json=body, headers={"x-request-id": rid}
                )
                assert answer.status_code == 200, answer.text[:500]  # no request lost
                ex.requests += 1
                variant = answer.headers["x-mainsail-variant"]
                ex.answered[variant] += 1
                if "x-mainsail-assigned-variant" in answer.headers:
                    ex.failed_over[answer.headers["x-mainsail-assigned-variant"]] += 1
                out = answer.json()
                classes = [str(c) for c in out["parameters"]["classes"]]
                predicted = next(o["data"] for o in out["outputs"] if o["name"] == "label")
                for j, label in enumerate(predicted):
                    wrong = variant == worse and (ex.requests + j) % 3 == 0
                    other = next(c for c in classes if c != str(label))
                    labels[f"{rid}#{j}"] = other if wrong else str(label)
            counts = http.post("/feedback", json={"labels": labels}, timeout=60).json()
            # Every row's prediction was in the store (else "unknown"): nothing lost.
            assert counts == {"accepted": len(labels), "unknown": 0, "duplicate": 0}, counts
            ex.rows += len(labels)
            ex.labels_accepted += counts["accepted"]
            ex.logged = _decided(loop, key)
            print(
                f"{time.monotonic() - started:5.0f} s  {ex.requests} requests: answered "
                f"{dict(ex.answered)}, failed over {dict(ex.failed_over)}; decided "
                f"{ex.actions()}"
            )
            if ex.logged and ex.logged[-1]["action"] in ("promote", "rollback"):
                break
        ex.log = core.read_namespaced_pod_log(pod, kind.NAMESPACE, container="promotion-controller")
        _scraped(loop, ex)
    ex.seconds = time.monotonic() - started
    ex.stored = _stored(loop, ex.run)
    print(
        f"{ex.requests} requests, {ex.rows} rows: {ex.stored}; answered {dict(ex.answered)}, "
        f"failed over {dict(ex.failed_over)}; decided {ex.actions()} in {ex.seconds:.0f} s; "
        f"the pod's log:\n{ex.log}"
    )
    return ex


def _scraped(loop: Loop, ex: Experiment) -> None:
    """While the pod still runs: the cluster's Prometheus has scraped its decision counter, and
    the Experiments dashboard's decision panel shows the final action."""
    from mainsail.monitor.dashboards import dashboards, substitute

    if not ex.logged:
        return
    final = ex.logged[-1]["action"]
    (panel,) = [
        p
        for d in dashboards()
        for p in d.panels
        if any("mainsail_ab_decisions_total" in q.expr for q in p.queries)
    ]
    expr = substitute(panel.queries[0].expr, kind.DASHBOARD_VARIABLES)

    def shown() -> list[dict[str, Any]] | None:
        result = kind.prometheus_api(loop.prometheus, "/api/v1/query", query=expr)["result"]
        return [r for r in result if r["metric"].get("action") == final] or None

    # one 30 s scrape after the decision, at most two
    (row,) = kind.wait_until(f"Prometheus to show the {final} decision", 120, shown, every=5)
    assert float(row["value"][1]) >= 1, row


def _stored(loop: Loop, run: str) -> dict[str, int]:
    """The experiment's rows in Postgres: predictions, labelled ones, failed-over ones."""
    mine = predictions.c.request_id.startswith(f"{run}-", autoescape=True)
    with loop.store.engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).where(mine)).scalar_one()
        labelled = conn.execute(
            sa.select(sa.func.count())
            .select_from(
                predictions.join(feedback, feedback.c.request_id == predictions.c.request_id)
            )
            .where(mine)
        ).scalar_one()
        moved = conn.execute(
            sa.select(sa.func.count()).where(mine, predictions.c.assigned != predictions.c.variant)
        ).scalar_one()
    return {"predictions": stored, "labelled": labelled, "failed_over_rows": moved}


def test_a_better_challenger_is_ramped_and_promoted_though_its_pod_is_killed(
    admin: Any, loop: Loop
) -> None:
    latest = loop.registry.versions(MODEL)[-1].version
    champion, challenger = _deploy(admin, loop, latest)
    key = f"{MODEL}:{champion}->{challenger}"
    ex = _experiment(admin, loop, key, worse="champion", kill=True)
    current = loop.backend.current(MODEL)
    actions, stored = ex.actions(), ex.stored
    # No feedback lost: every row predicted is stored, with its label, beside its assignment.
    assert stored["predictions"] == stored["labelled"] == ex.rows == ex.labels_accepted
    assert ex.failed_over["challenger"] > 0, "the pod was deleted: requests must fail over"
    assert stored["failed_over_rows"] == ROWS * sum(ex.failed_over.values())
    # The split is tested on the assignment: the outage never paused the experiment (no look
    # of the pod said so either), and the decisions report the failovers.
    assert "pause" not in actions and "pause:" not in ex.log, [d["reason"] for d in ex.logged]
    assert "look failed" not in ex.log
    assert all(not (d["evidence"].get("srm") or {}).get("mismatch") for d in ex.logged)
    reported = [
        d["evidence"]["failovers"]["challenger"]["failed_over"]
        for d in ex.logged
        if (d["evidence"].get("failovers") or {}).get("challenger")
    ]
    assert reported and max(reported) > 0, reported
    # Ramped at its canary, then promoted from 50% or more: the gateway and the registry moved.
    assert actions[-1] == "promote" and set(actions[:-1]) == {"ramp"}, actions
    assert ex.logged[0]["evidence"]["weight_before"] == CANARY
    assert ex.logged[-1]["evidence"]["weight_before"] >= 50, ex.logged[-1]["evidence"]
    assert current == (str(challenger), None, 0)
    assert loop.registry.aliases(MODEL)["champion"] == challenger
    assert ex.logged[-1]["evidence"]["failovers"]["challenger"]["assigned"] > 0
    assert "promote" in ex.log and "keep_testing" in ex.log  # the pod's own lines, look by look


def test_a_worse_challenger_is_rolled_back(admin: Any, loop: Loop) -> None:
    champion, challenger = _deploy(admin, loop, None)
    key = f"{MODEL}:{champion}->{challenger}"
    ex = _experiment(admin, loop, key, worse="challenger", kill=False)
    current = loop.backend.current(MODEL)
    actions, stored = ex.actions(), ex.stored
    assert stored["predictions"] == stored["labelled"] == ex.rows
    assert actions[-1] == "rollback" and "promote" not in actions, [d["reason"] for d in ex.logged]
    assert ex.logged[-1]["reason"].startswith("challenger loss higher"), ex.logged[-1]["reason"]
    assert current == (str(champion), None, 0)
    assert loop.registry.aliases(MODEL)["champion"] == champion
    assert ex.logged[-1]["evidence"]["experiment"] == key
    assert "look failed" not in ex.log
