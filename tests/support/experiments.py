"""An experiment of the chart's promotion controller on the kind cluster, as the cluster tests
run it: labelled traffic through the gateway while the controller's pod looks, until it
promotes or rolls back (tests/cluster/test_serving_loop.py, and test_training.py for the
version a retraining published).

The ground truth is either synthetic or real. Synthetic (`worse` names a variant): "better" and
"worse" are made by the labels; a row answered by the variant playing the worse one gets the
other class for one row in three, every other row the class it was given, and what is asserted
is the loop (records, split, decisions, the gateway and the registry acting on them), not the
model. Real (`worse=None`): each row's label is the class the generator gave that customer, so
the models' own answers decide (a broken retraining's, in test_training.py).
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
import sqlalchemy as sa

from mainsail.core import naming
from mainsail.feedback.store import FeedbackStore, feedback, predictions
from mainsail.promotion.backends import GatewayBackend
from mainsail.registry.store import ModelRegistry
from tests.support import kind

MODEL = "churn"
GATEWAY = naming.gateway_name(kind.RELEASE)
PROMETHEUS = "service/kube-prometheus-stack-prometheus"
ROWS = 5
BODIES = 1_000
"""Request bodies made before an experiment; more are made as they are needed."""
ROUND = 40
"""Requests between two reads of the decision log (the pod looks every 5 s meanwhile)."""
KILL_AT = 10
"""With `kill`: the challenger's pod is deleted after this many requests of the first round."""
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
    bodies: list[tuple[dict[str, Any], list[str]]]
    """Fresh rows for every request of the module, in order, each body with its rows' ground
    truth (see :func:`next_body`)."""
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


@contextlib.contextmanager
def open_loop(admin: Any, registry: ModelRegistry, artifact: Path) -> Iterator[Loop]:
    """The gateway, the feedback store and Prometheus through port-forwards, the deployer's
    backend, and fresh request bodies with their ground truth (:func:`kind.fresh_labelled`);
    the controller scaled to none on the way out."""
    from mainsail.deploy.gateway import GatewayDeployer

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
                artifact,
                # Fresh rows for every request: rows sent again and again are a distribution
                # of their own, which the drift sidecar rightly flags, and its alert would
                # start a retraining beside these tests (test_training.py drives that alert).
                kind.fresh_labelled(artifact, ROWS, BODIES),
                f"http://127.0.0.1:{prom}",
                GatewayBackend(cfg, registry=registry, deployer=deployer),
            )
        finally:
            kind.scale_promotion_controller(admin, 0)
            as_deployer.close()


@contextlib.contextmanager
def controller_pod(admin: Any, loop: Loop, key: str) -> Iterator[str]:
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


def next_body(loop: Loop) -> tuple[dict[str, Any], list[str]]:
    """The next request's body and its rows' ground truth: rows never sent before in this
    session (the pod looks every few seconds while the traffic runs on, so an experiment sends
    as many requests as its pace allows, 3,080 in one run)."""
    if not loop.bodies:
        loop.bodies += kind.fresh_labelled(loop.artifact, ROWS, 1)
        loop.made += 1
    return loop.bodies.pop(0)


def decided(loop: Loop, key: str) -> list[dict[str, Any]]:
    return [d for d in loop.store.decisions(MODEL) if d["evidence"].get("experiment") == key]


def run_experiment(admin: Any, loop: Loop, key: str, worse: str | None, kill: bool) -> Experiment:
    """Rounds of labelled traffic while the controller's pod looks, until it promotes or rolls
    back. `worse`: the variant whose answers get one wrong label in three; None: every row is
    labelled with its ground truth."""
    from kubernetes import client

    ex = Experiment(kind.unique("loop"), key)
    started = time.monotonic()
    core = client.CoreV1Api(admin)
    selector = f"{naming.LABEL_COMPONENT}=serving,{naming.LABEL_VARIANT}=challenger"
    with (
        controller_pod(admin, loop, key) as pod,
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
                body, truth = next_body(loop)
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
                    if worse is None:
                        assert truth[j] in classes, (truth, classes)
                        labels[f"{rid}#{j}"] = truth[j]
                        continue
                    wrong = variant == worse and (ex.requests + j) % 3 == 0
                    other = next(c for c in classes if c != str(label))
                    labels[f"{rid}#{j}"] = other if wrong else str(label)
            counts = http.post("/feedback", json={"labels": labels}, timeout=60).json()
            # Every row's prediction was in the store (else "unknown"): nothing lost.
            assert counts == {"accepted": len(labels), "unknown": 0, "duplicate": 0}, counts
            ex.rows += len(labels)
            ex.labels_accepted += counts["accepted"]
            ex.logged = decided(loop, key)
            print(
                f"{time.monotonic() - started:5.0f} s  {ex.requests} requests: answered "
                f"{dict(ex.answered)}, failed over {dict(ex.failed_over)}; decided "
                f"{ex.actions()}"
            )
            if ex.logged and ex.logged[-1]["action"] in ("promote", "rollback"):
                break

        # The pod's own lines, up to its last decision's.
        last = f"{ex.logged[-1]['action']}:" if ex.logged else ""
        ex.log = kind.controller_log_with(pod, last)
        scraped(loop, ex)
    ex.seconds = time.monotonic() - started
    ex.stored = stored(loop, ex.run)
    print(
        f"{ex.requests} requests, {ex.rows} rows: {ex.stored}; answered {dict(ex.answered)}, "
        f"failed over {dict(ex.failed_over)}; decided {ex.actions()} in {ex.seconds:.0f} s"
        f" (last: {ex.logged[-1]['reason'] if ex.logged else 'none'}); the pod's log:\n{ex.log}"
    )
    return ex


def scraped(loop: Loop, ex: Experiment) -> None:
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


def stored(loop: Loop, run: str) -> dict[str, int]:
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
