"""The promotion controller's whole experiment on the cluster, both ways (issue 17, stage 3).

`serving.backend: mlserver`: the variants' MLServer Deployments behind the gateway, which records
every prediction (assigned and answering variant) in the chart's Postgres. The controller is the
project's `PromotionController` with its gateway backend, acting as the deployer's
ServiceAccount, reading the store through a port-forward to Postgres (the process runs beside
the cluster, its calls are the ones `mainsail promote --watch` makes); its policy is the
config's with short windows (`POLICY`) so that each experiment takes seconds of traffic.

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
from mainsail.promotion.ab import Decision
from mainsail.promotion.controller import PromotionController, policy_from_config
from mainsail.registry.store import ModelRegistry
from tests.support import kind

pytestmark = pytest.mark.cluster

MODEL = "churn"
GATEWAY = naming.gateway_name(kind.RELEASE)
POSTGRES_SECRET = "mainsail-postgres"
CANARY = 25
ROWS = 5
BODIES = 1_000  # more than either experiment sends
ROUND = 40
"""Requests between two looks of the controller."""
KILL_AT = 10
"""(a): the challenger's pod is deleted after this many requests of the first round."""
POLICY = {
    "promotion.ramp": [25, 50, 100],
    "promotion.min_samples": 60,
    # A ramp on health alone needs more rows than a significant difference needs here: the
    # worse challenger is rolled back at its canary, the better one ramped for being better.
    "promotion.step_samples": 150,
    "promotion.promote_from": 50,
    # The kind nodes share the CI machine's two CPUs with this test and a pod that has just
    # loaded its model answers slowly: the latency guardrail (unit-tested) is loosened here.
    "promotion.latency_tolerance": 1.0,
}
DEADLINE_S = 240
"""Per experiment: traffic and looks until the final decision."""


@dataclass
class Loop:
    gateway: str
    token: str
    cfg: Any
    registry: ModelRegistry
    store: FeedbackStore
    artifact: Path
    bodies: list[dict[str, Any]]


@dataclass
class Experiment:
    """What one experiment sent, saw and decided."""

    run: str
    requests: int = 0
    rows: int = 0
    labels_accepted: int = 0
    answered: Counter[str] = field(default_factory=Counter)
    failed_over: Counter[str] = field(default_factory=Counter)
    decisions: list[Decision] = field(default_factory=list)
    weights: list[int] = field(default_factory=list)
    seconds: float = 0.0
    stored: dict[str, int] = field(default_factory=dict)
    """Its rows in Postgres: predictions, labelled ones, failed-over ones."""

    def looks(self) -> list[tuple[int, str]]:
        """(challenger weight, action) of each look."""
        return [(w, d.action) for w, d in zip(self.weights, self.decisions, strict=True)]


@pytest.fixture(scope="module")
def loop(admin: Any, publish: Any, model_artifact: Path) -> Iterator[Loop]:
    if not kind.mlserver_mode(admin):
        pytest.skip("serving.backend is seldon here: scripts/kind/smoke.sh covers serving")
    from tests.support.containers import v2_body

    registry: ModelRegistry = publish(MODEL, 1)
    token = kind.secret_data(admin, naming.auth_secret_name(kind.RELEASE))["gateway-token"]
    password = kind.secret_data(admin, POSTGRES_SECRET)["password"]
    url = sa.engine.make_url(kind.feedback_store_url(admin))
    service = f"service/{str(url.host).split('.', 1)[0]}"
    with (
        kind.port_forward(f"service/{GATEWAY}", naming.ROUTER_PORT) as port,
        kind.port_forward(service, 5432) as pg,
    ):
        store_url = url.set(host="127.0.0.1", port=pg, password=password)
        store = FeedbackStore(store_url.render_as_string(hide_password=False))
        try:
            yield Loop(
                f"http://127.0.0.1:{port}",
                token,
                kind.gateway_config(f"http://127.0.0.1:{port}", POLICY),
                registry,
                store,
                model_artifact,
                # Fresh rows for every request: rows sent again and again are a distribution
                # of their own, which the drift sidecar rightly flags, and its alert would
                # start a retraining beside these tests (test_training.py drives that alert).
                [v2_body(model_artifact, ROWS, seed) for seed in range(100, 100 + BODIES)],
            )
        finally:
            store.close()


@contextlib.contextmanager
def _controller(admin: Any, loop: Loop) -> Iterator[PromotionController]:
    """The promotion controller: the config's policy, the Postgres store, the gateway backend
    as the deployer's ServiceAccount (a token of its own per experiment: they expire)."""
    from mainsail.deploy.gateway import GatewayDeployer
    from mainsail.promotion.backends import GatewayBackend

    as_deployer = kind.service_account_client(admin, naming.deployer_service_account(kind.RELEASE))
    try:
        deployer = GatewayDeployer(loop.cfg, as_deployer, token=loop.token)
        yield PromotionController(
            MODEL,
            loop.store,
            GatewayBackend(loop.cfg, registry=loop.registry, deployer=deployer),
            policy_from_config(loop.cfg),
            loop.cfg.data.problem_type or "classification",
            loop.cfg.positive_label(),
        )
    finally:
        as_deployer.close()


def _deploy(
    admin: Any, loop: Loop, controller: PromotionController, champion: int | None
) -> tuple[int, int]:
    """A new signed version as challenger at CANARY% (and, given, `champion` as champion)."""
    if champion is not None:
        loop.registry.promote(MODEL, champion, "champion")
    challenger = loop.registry.publish(MODEL, loop.artifact).version
    started = time.monotonic()
    kind.deploy_as_deployer(admin, loop.cfg, loop.token, challenger, CANARY, loop.registry)
    current = controller.backend.current(MODEL)
    took = time.monotonic() - started
    print(f"\ndeployed v{challenger} at {CANARY}% beside {current}: {took:.0f} s")
    return int(current[0]), challenger


def _experiment(
    admin: Any, loop: Loop, controller: PromotionController, worse: str, kill: bool
) -> Experiment:
    """Rounds of labelled traffic, each followed by one look of the controller, until it
    promotes or rolls back. `worse`: the variant whose answers get one wrong label in three."""
    from kubernetes import client

    ex = Experiment(kind.unique("loop"))
    started = time.monotonic()
    core = client.CoreV1Api(admin)
    selector = f"{naming.LABEL_COMPONENT}=serving,{naming.LABEL_VARIANT}=challenger"
    # The first look opens the experiment (`mainsail promote --watch` looks right after the
    # deployment): what is served from then on is its evidence.
    opened = controller.step()
    assert opened is not None and opened.action == "keep_testing", opened
    with httpx.Client(base_url=loop.gateway, timeout=30) as http:
        while time.monotonic() - started < DEADLINE_S:
            labels: dict[str, str] = {}
            for _ in range(ROUND):
                if kill and ex.requests == KILL_AT:
                    pods = core.list_namespaced_pod(kind.NAMESPACE, label_selector=selector).items
                    (pod,) = [p for p in pods if p.metadata.deletion_timestamp is None]
                    core.delete_namespaced_pod(
                        pod.metadata.name, kind.NAMESPACE, grace_period_seconds=0
                    )
                    print(f"deleted the challenger's pod {pod.metadata.name}")
                rid = f"{ex.run}-{ex.requests}"
                body = loop.bodies[ex.requests % len(loop.bodies)]
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
            weight = controller.backend.current(MODEL)[2]
            decision = controller.step()
            assert decision is not None
            ex.decisions.append(decision)
            ex.weights.append(weight)
            srm = decision.srm
            print(
                f"{time.monotonic() - started:5.0f} s  {ex.requests} requests at {weight}%: "
                f"answered {dict(ex.answered)}, failed over {dict(ex.failed_over)}; assigned "
                f"share {srm.observed_share if srm else None}: {decision.action}: "
                f"{decision.reason}"
            )
            if decision.action in ("promote", "rollback"):
                break
    ex.seconds = time.monotonic() - started
    ex.stored = _stored(loop, ex.run)
    # the failover report of the look that saw the most (the stage of the outage)
    moved = max(
        (d.failovers or {} for d in ex.decisions),
        key=lambda f: f.get("challenger", {}).get("failed_over", 0),
    )
    print(
        f"{ex.requests} requests, {ex.rows} rows: {ex.stored}; answered {dict(ex.answered)}, "
        f"failed over {dict(ex.failed_over)} ({moved}); looks {ex.looks()}; "
        f"decided in {ex.seconds:.0f} s"
    )
    return ex


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
    with _controller(admin, loop) as controller:
        latest = loop.registry.versions(MODEL)[-1].version
        champion, challenger = _deploy(admin, loop, controller, latest)
        ex = _experiment(admin, loop, controller, worse="champion", kill=True)
        current = controller.backend.current(MODEL)
    actions, stored = [d.action for d in ex.decisions], ex.stored
    # No feedback lost: every row predicted is stored, with its label, beside its assignment.
    assert stored["predictions"] == stored["labelled"] == ex.rows == ex.labels_accepted
    assert ex.failed_over["challenger"] > 0, "the pod was deleted: requests must fail over"
    assert stored["failed_over_rows"] == ROWS * sum(ex.failed_over.values())
    # The split is tested on the assignment: the outage never paused the experiment, and the
    # looks during it report the failovers.
    assert "pause" not in actions, [d.reason for d in ex.decisions]
    assert all(d.srm is None or not d.srm.mismatch for d in ex.decisions)
    reported = [
        d.failovers["challenger"]["failed_over"]
        for d in ex.decisions
        if d.failovers and "challenger" in d.failovers
    ]
    assert reported and max(reported) > 0, reported
    # Ramped before the promotion, then promoted: the gateway and the registry moved.
    assert actions[-1] == "promote", [d.reason for d in ex.decisions]
    ramps = [w for w, action in ex.looks() if action == "ramp"]
    assert ramps[:1] == [CANARY] and ex.weights[-1] >= 50, ex.looks()
    assert current == (str(challenger), None, 0)
    assert loop.registry.aliases(MODEL)["champion"] == challenger
    key = f"{MODEL}:{champion}->{challenger}"
    logged = [d for d in loop.store.decisions(MODEL) if d["evidence"].get("experiment") == key]
    assert [d["action"] for d in logged] == [*(["ramp"] * len(ramps)), "promote"], logged
    assert logged[-1]["evidence"]["failovers"]["challenger"]["assigned"] > 0


def test_a_worse_challenger_is_rolled_back(admin: Any, loop: Loop) -> None:
    with _controller(admin, loop) as controller:
        champion, challenger = _deploy(admin, loop, controller, None)
        ex = _experiment(admin, loop, controller, worse="challenger", kill=False)
        current = controller.backend.current(MODEL)
    actions, stored = [d.action for d in ex.decisions], ex.stored
    assert stored["predictions"] == stored["labelled"] == ex.rows
    assert actions[-1] == "rollback" and "promote" not in actions, [d.reason for d in ex.decisions]
    assert ex.decisions[-1].reason.startswith("challenger loss higher"), ex.decisions[-1].reason
    assert current == (str(champion), None, 0)
    assert loop.registry.aliases(MODEL)["champion"] == champion
    logged = loop.store.decisions(MODEL)[-1]
    assert logged["action"] == "rollback"
    assert logged["evidence"]["experiment"] == f"{MODEL}:{champion}->{challenger}"
