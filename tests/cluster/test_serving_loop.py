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
(c) the controller's pod deleted as a drain would: it stops on SIGTERM, gone in seconds.

The ground truth is synthetic: A, B and C are the same trained artifact, so "better" and "worse"
are made by the labels. A row answered by the variant under test as the worse one gets the
other class for one row in three; every other row gets the class it was given. The assertions
are about the loop (records, split, decisions, the gateway and the registry acting on them), not
about the model.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import kind
from tests.support.experiments import (
    MODEL,
    ROWS,
    Loop,
    open_loop,
    run_experiment,
)

pytestmark = pytest.mark.cluster

CANARY = 25


@pytest.fixture(scope="module")
def loop(admin: Any, publish: Any, model_artifact: Path) -> Iterator[Loop]:
    if not kind.mlserver_mode(admin):
        pytest.skip("serving.backend is seldon here: scripts/kind/smoke.sh covers serving")
    # Fresh rows for every request: rows sent again and again are a distribution of their own,
    # which the drift sidecar rightly flags, and its alert would start a retraining beside
    # these tests (test_training.py drives that alert).
    with open_loop(admin, publish(MODEL, 1), model_artifact) as opened:
        yield opened


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


def test_a_better_challenger_is_ramped_and_promoted_though_its_pod_is_killed(
    admin: Any, loop: Loop
) -> None:
    latest = loop.registry.versions(MODEL)[-1].version
    champion, challenger = _deploy(admin, loop, latest)
    key = f"{MODEL}:{champion}->{challenger}"
    ex = run_experiment(admin, loop, key, worse="champion", kill=True)
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
    ex = run_experiment(admin, loop, key, worse="challenger", kill=False)
    current = loop.backend.current(MODEL)
    actions, stored = ex.actions(), ex.stored
    assert stored["predictions"] == stored["labelled"] == ex.rows
    assert actions[-1] == "rollback" and "promote" not in actions, [d["reason"] for d in ex.logged]
    assert ex.logged[-1]["reason"].startswith("challenger loss higher"), ex.logged[-1]["reason"]
    assert current == (str(champion), None, 0)
    assert loop.registry.aliases(MODEL)["champion"] == champion
    assert ex.logged[-1]["evidence"]["experiment"] == key
    assert "look failed" not in ex.log


def test_the_controllers_pod_stops_looking_at_once_when_it_is_deleted(
    admin: Any, loop: Loop
) -> None:
    """A drain or an eviction deletes the pod with the default 30 s grace period. The pod runs
    `mainsail promote --watch --forever` as PID 1, for which SIGTERM has no default action: with
    no handler it went on looking, and deciding, beside its replacement until the SIGKILL
    (2026-12-06). Its handler ends the watch between two looks, so the pod is gone in seconds."""
    from kubernetes import client

    assert loop.backend.current(MODEL)[1] is None  # no experiment: the pod's looks are idle
    with kind.promotion_controller_running(admin) as pod:
        follow = subprocess.Popen(
            [
                *(kind.kubectl_path(), "--context", kind.CONTEXT, "-n", kind.NAMESPACE),
                *("logs", "--follow", pod, "-c", "promotion-controller"),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            kind.controller_log_with(pod, "nothing to decide")  # its first look is done
            started = time.monotonic()
            client.CoreV1Api(admin).delete_namespaced_pod(pod, kind.NAMESPACE)

            def gone() -> bool:
                pods = kind.promotion_controller_pods(admin, terminating=True)
                return pod not in {p.metadata.name for p in pods}

            kind.wait_until(f"pod {pod} to go", 60, gone, every=0.5)
            took = time.monotonic() - started
            log, _ = follow.communicate(timeout=30)  # the stream ends with the container
        finally:
            follow.kill()
    print(f"\ncontroller pod deleted: gone in {took:.1f} s; its last line: {log.splitlines()[-1]}")
    assert "stopped on SIGTERM" in log, log[-2000:]
    assert took < 15, f"the pod took {took:.0f} s to go: it waited for the grace period's kill"
