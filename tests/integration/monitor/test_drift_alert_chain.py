"""The whole monitoring chain, for real: served rows -> drift sidecar -> Prometheus scrape ->
drift rule fires -> Alertmanager webhook -> retrain trigger starts the retraining action once.

Real processes: the sidecar (drift env, alibi-detect), Prometheus and Alertmanager (Debian
packages), the trigger's HTTP server, and MLServer with our runtime feeding the sidecar; rows
are sent with DriftFeed (the thread twin of the runtime's LoopDriftFeed: one queue and one
wire format), and (the negative case, clean
traffic must raise no alert) as V2 requests through the live MLServer runtime. The router's
and the feature server's series come from their real metric classes (`RouterMetrics`,
`FeatureMetrics`) exposed by prometheus_client in this test, because those services are not
started here, and so do the promotion controller's (`PromotionMetrics`, filled by a real
canary look with its sample-ratio check and a real shadow look); the served model's version
folder holds its calibration sample and card, so the sidecar estimates its performance from
the scores the runtime sends. The dashboards test evaluates every panel against all of it.

Intervals and `for` durations are shortened (1 s scrapes, 2 s `for`; see
mainsail.monitor.chain) to keep this module around two minutes.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client import start_http_server

from mainsail.data.schema import FeatureSchema
from mainsail.demos.churn import churn_rows, write_churn_reference
from mainsail.drift.client import DriftFeed
from mainsail.drift.process import SidecarProcess
from mainsail.features.metrics import FeatureMetrics
from mainsail.feedback.store import ShadowPairs, VariantOutcomes
from mainsail.monitor.chain import ChainSettings, MonitoringChain
from mainsail.monitor.dashboards import dashboards, substitute
from mainsail.monitor.local import LocalPrometheus
from mainsail.monitor.prometheus import PROMOTION_JOB, ScrapeTarget
from mainsail.promotion.ab import ABPolicy, Decision, analyse
from mainsail.promotion.metrics import PromotionMetrics
from mainsail.promotion.shadow import ShadowPolicy, shadow_look
from mainsail.registry.manifest import seal_folder
from mainsail.registry.seaweedfs import free_port
from mainsail.retrain.trigger import RetrainTrigger
from mainsail.serving.mlserver import (
    MLServerProcess,
    ServedModel,
    server_settings,
    write_repository,
)
from mainsail.serving.router.metrics import RouterMetrics
from mainsail.serving.v2client import v2_request
from tests.support.serving import build_churn_artifact  # the serving tests' churn model

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOST = "127.0.0.1"
RECORDER = (
    "import json, os, sys; from pathlib import Path; "
    "out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True); "
    "(out / (os.environ['MAINSAIL_RETRAIN_RUN_ID'] + '.json')).write_text(json.dumps("
    "{'model': sys.argv[2], 'version': sys.argv[3], 'window': sys.argv[4]}))"
)


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 60.0, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def _experiment_looks(metrics: PromotionMetrics) -> None:
    """One canary look (with its sample-ratio check) and one shadow look, exported."""
    rng = np.random.default_rng(3)

    def outcomes(n: int) -> VariantOutcomes:
        return VariantOutcomes(rng.random(n), np.zeros(n), rng.lognormal(-4.5, 0.3, n))

    canary = analyse(
        outcomes(540),
        outcomes(60),
        policy=ABPolicy(min_samples=50),
        current_weight=10,
        split=(540, 60),
    )
    metrics.record("churn", "2", 10, canary, counts={"champion": 540, "challenger": 60}, acted=True)
    n = 400
    champ = rng.random(n)
    chall = np.clip(champ + rng.normal(0, 0.05, n), 0, 1)
    label = lambda p: np.where(p >= 0.5, "1", "0").astype(object)  # noqa: E731
    pairs = ShadowPairs(
        label(champ),
        label(chall),
        champ,
        chall,
        np.where(rng.random(n) < champ, "1", "0").astype(object),
        np.zeros(40),
        np.zeros(40),
        rng.lognormal(-4.5, 0.3, 40),
        rng.lognormal(-4.4, 0.3, 40),
    )
    report, _ = shadow_look(
        pairs,
        ShadowPolicy(min_pairs=100, min_labelled=100, min_requests=10, warmup_requests=5),
        problem_type="classification",
    )
    shadow = Decision("keep_testing", report.reason, None, shadow=report.to_dict())
    metrics.record("churn", "3", 0, shadow)


class _Traffic:
    """Router, feature-server and promotion-controller series, from their real metric classes,
    changing over time."""

    def __init__(self) -> None:
        self.router = RouterMetrics()
        self.features = FeatureMetrics()
        self.promotion = PromotionMetrics()
        _experiment_looks(self.promotion)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self.stop.is_set():
            for variant, version, weight in (("champion", "1", 90), ("challenger", "2", 10)):
                self.router.requests.labels(variant, "churn", version, "200").inc(weight)
                self.router.latency.labels(variant, "churn", version).observe(
                    0.004 + 0.001 * (i % 5)
                )
                self.router.weight.labels(variant, "churn", version).set(weight)
                self.router.healthy.labels(variant, "churn", version).set(1)
            if i % 3 == 0:
                self.router.errors.labels("challenger", "churn", "2", "status_5xx").inc()
            self.features.observe_ages("customer_usage", [120.0, 900.0, 4000.0])
            self.features.count_stale("customer_usage", 1)
            self.features.count_missing("customer_usage", 2)
            i += 1
            self.stop.wait(0.2)


#: Registry name of the model served by MLServer in this module (its sidecar reference folder).
SERVED = "churn-live"
#: Longest the drift alert may take after the first drifted row, when the positive test has
#: not measured it in this run (it takes ~10-20 s here).
ALERT_WAIT_FLOOR_S = 30.0


@dataclass
class Stack:
    chain: MonitoringChain
    traffic: _Traffic
    ran: Path
    mlserver: MLServerProcess
    schema: FeatureSchema
    alert_after_s: float | None = None
    """How long the positive test waited from its first row to the retraining run."""

    @property
    def sidecar(self) -> SidecarProcess:
        return self.chain.sidecar

    @property
    def prometheus(self) -> LocalPrometheus:
        return self.chain.prometheus

    @property
    def trigger(self) -> RetrainTrigger:
        return self.chain.trigger


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("chain")
    for version in ("1", "2"):
        write_churn_reference(root / "refs" / "churn" / version, rows=3000, seed=42)
    ports = {k: free_port(HOST) for k in ("router", "features", "promotion")}
    traffic = _Traffic()
    servers = [
        start_http_server(ports["router"], HOST, registry=traffic.router.registry)[0],
        start_http_server(ports["features"], HOST, registry=traffic.features.registry)[0],
        start_http_server(ports["promotion"], HOST, registry=traffic.promotion.registry)[0],
    ]
    traffic.thread.start()
    ran = root / "ran"
    settings = ChainSettings(
        reference=str(root / "refs" / "{model}" / "{version}"),
        retrain_command=[
            sys.executable,
            "-c",
            RECORDER,
            str(ran),
            "{model}",
            "{version}",
            "{window}",
        ],
        extra_targets=[
            ScrapeTarget("mainsail-router", [f"{HOST}:{ports['router']}"]),
            ScrapeTarget("mainsail-features", [f"{HOST}:{ports['features']}"]),
            ScrapeTarget(PROMOTION_JOB, [f"{HOST}:{ports['promotion']}"]),
        ],
    )
    # The served model: the serving tests' churn artifact, sealed as churn-live v1; the
    # sidecar's reference for it is the generator's clean sample (no `prediction` column: the
    # runtime sends labels, and the sidecar takes the first served window as their baseline).
    artifact = build_churn_artifact(root / "artifact")
    seal_folder(artifact, SERVED, 1)
    served_ref = write_churn_reference(root / "refs" / SERVED / "1", rows=3000, seed=42)
    ref = pd.read_parquet(served_ref / "reference.parquet").drop(columns=["prediction"])
    ref.to_parquet(served_ref / "reference.parquet", index=False)
    # The served model's own labelled calibration sample and card (as training writes them).
    for name in ("calibration.parquet", "model_card.yaml"):
        shutil.copy2(artifact / name, served_ref / name)
    chain = MonitoringChain(root / "work", settings)
    repo = root / "mlserver"
    write_repository(
        repo,
        [ServedModel(SERVED, uri=str(artifact), extra={"drift_url": chain.sidecar.url})],
        server_settings(
            repo,
            http_port=free_port(HOST),
            grpc_port=free_port(HOST),
            metrics_port=free_port(HOST),
        ),
    )
    server = MLServerProcess(repo)
    try:
        # One after the other: on a busy machine the sidecar alone needs most of its start-up
        # timeout (alibi-detect's imports), so MLServer must not compete with it for the CPU.
        with chain, server.start([SERVED]):
            schema = FeatureSchema.load(artifact / "feature_schema.json")
            yield Stack(chain, traffic, ran, server, schema)
    finally:
        traffic.stop.set()
        for srv in servers:
            srv.shutdown()
            srv.server_close()


def _series(prom: LocalPrometheus, expr: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = prom.query(expr)["result"]
    return result


def test_drifted_rows_start_exactly_one_retraining_run_and_clean_rows_none(stack: Stack) -> None:
    started = time.monotonic()
    feed = DriftFeed(stack.sidecar.url, max_queue=100)
    clean, clean_preds = churn_rows(1400, drift=0.0, seed=301)
    drifted, drifted_preds = churn_rows(1400, drift=0.6, seed=302)
    for i in range(0, 1400, 100):
        feed.submit("churn", "1", clean[i : i + 100], clean_preds[i : i + 100])
        feed.submit("churn", "2", drifted[i : i + 100], drifted_preds[i : i + 100])
        assert feed.flush(30)
        time.sleep(0.4)  # a few checks per scrape, like steady traffic
    feed.close()
    assert feed.stats.snapshot()["sent_rows"] == 2800

    # The rule fires, Alertmanager calls the trigger, the trigger runs the action.
    wait_for("a retraining run", lambda: list(stack.ran.glob("*.json")), timeout=90)
    stack.alert_after_s = time.monotonic() - started
    runs = stack.trigger.runs()
    assert len(runs) == 1
    (run,) = runs.values()
    assert (run["model"], run["version"], run["alertname"]) == (
        "churn",
        "2",
        "MainsailDriftSustained",
    )
    record = json.loads(next(stack.ran.glob("*.json")).read_text())
    assert record["version"] == "2"
    # The run got the drifted window that the sidecar held.
    window = pd.read_parquet(io.BytesIO(Path(record["window"]).read_bytes()))
    assert len(window) == 400 and "support_calls" in window.columns and "prediction" in window

    # Alertmanager keeps re-sending the firing group (repeat_interval 3s): duplicates only.
    wait_for(
        "a repeated notification",
        lambda: (
            'mainsail_retrain_decisions_total{decision="duplicate"}' in _metrics_text(stack.trigger)
        ),
        timeout=30,
    )
    assert len(stack.trigger.runs()) == 1
    assert len(list(stack.ran.glob("*.json"))) == 1

    # The negative case: clean traffic on version 1 was checked as often, and never alerted.
    checks_v1 = _series(stack.prometheus, 'mainsail_drift_checks_total{version="1"}')
    assert checks_v1 and float(checks_v1[0]["value"][1]) >= 5
    assert (
        _series(stack.prometheus, 'ALERTS{alertname="MainsailDriftSustained", version="1"}') == []
    )
    assert (
        _series(stack.prometheus, 'max_over_time(mainsail_drift_row_is_drift{version="1"}[5m]) > 0')
        == []
    )
    firing = _series(
        stack.prometheus, 'ALERTS{alertname="MainsailDriftSustained", alertstate="firing"}'
    )
    assert [s["metric"]["version"] for s in firing] == ["2"]


def test_clean_traffic_through_the_live_runtime_raises_no_drift_alert(stack: Stack) -> None:
    """The negative case on the serving path: undrifted rows sent as V2 requests to MLServer,
    fed by our runtime to the sidecar, checked, scraped and evaluated by the rules: no alert,
    for at least as long as the positive case needed to fire."""
    rows, _ = churn_rows(1400, drift=0.0, seed=301)
    frame = pd.DataFrame(rows)
    started = time.monotonic()
    url = f"{stack.mlserver.url}/v2/models/{SERVED}/infer"
    with httpx.Client(timeout=30) as client:
        for i in range(0, len(frame), 50):
            response = client.post(url, json=v2_request(frame.iloc[i : i + 50], stack.schema))
            assert response.status_code == 200, response.text
            time.sleep(0.2)  # steady traffic: several checks per scrape, as in the positive case
    # The sidecar got every served row and checked them more than the rule needs to fire.
    received = f'mainsail_drift_rows_received_total{{model="{SERVED}", version="1"}}'
    wait_for(
        "every served row at the sidecar",
        lambda: _value(stack.prometheus, received) == len(frame),
        timeout=30,
    )
    checks = f'mainsail_drift_checks_total{{model="{SERVED}", version="1"}}'
    wait_for("drift checks", lambda: _value(stack.prometheus, checks) >= 5, timeout=30)
    feed = _feed_rows(stack.mlserver)
    assert feed["sent"] == len(frame) and feed["dropped"] == 0 and feed["failed"] == 0, feed

    # Hold on as long as a drifted run took to fire (measured by the positive test), watching.
    wait_s = max(stack.alert_after_s or ALERT_WAIT_FLOOR_S, 10.0)
    alerts = f'ALERTS{{alertname="MainsailDriftSustained", model="{SERVED}"}}'
    while time.monotonic() - started < wait_s:
        assert _series(stack.prometheus, alerts) == [], "drift alert on clean traffic"
        time.sleep(1.0)
    assert _series(stack.prometheus, alerts) == []
    drifted = f'max_over_time(mainsail_drift_consecutive_drifted_checks{{model="{SERVED}"}}[5m])'
    assert _value(stack.prometheus, drifted) < 2  # the rule's threshold (drift_windows)
    assert _value(stack.prometheus, checks) >= 5
    assert not [p for p in stack.ran.glob("*.json") if SERVED in p.read_text()]
    # The runtime sent each row's score beside its label: the sidecar estimated the served
    # version's accuracy without labels, next to the card's validated value, and trusts it.
    sel = f'model="{SERVED}", version="1", metric="accuracy"'
    estimate = wait_for(
        "a performance estimate",
        lambda: _value(stack.prometheus, f"mainsail_performance_estimate{{{sel}}}"),
        timeout=30,
    )
    validated = _value(stack.prometheus, f"mainsail_performance_validated{{{sel}}}")
    assert validated > 0.8 and abs(estimate - validated) < 0.05, (estimate, validated)
    assert _value(stack.prometheus, f'mainsail_performance_reliable{{model="{SERVED}"}}') == 1
    alerts = 'ALERTS{alertname="MainsailEstimatedPerformanceDrop"}'
    assert _series(stack.prometheus, alerts) == []


def _value(prom: LocalPrometheus, expr: str) -> float:
    series = _series(prom, expr)
    return float(series[0]["value"][1]) if series else 0.0


def _feed_rows(server: MLServerProcess) -> dict[str, float]:
    """The runtime's `mainsail_drift_feed_rows_total{model=SERVED}` by outcome."""
    text = httpx.get(f"http://{HOST}:{server.metrics_port}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("mainsail_drift_feed_rows_total{") and f'model="{SERVED}"' in line:
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            out[outcome] = float(line.rsplit(" ", 1)[1])
    return out


def _metrics_text(trigger: RetrainTrigger) -> str:
    from prometheus_client import generate_latest

    return generate_latest(trigger.metrics.registry).decode()


def test_every_dashboard_query_evaluates_against_live_prometheus(stack: Stack) -> None:
    # Prometheus must have scraped the run's end and enough samples for the rate() windows.
    wait_for(
        "the finished run in Prometheus",
        lambda: _series(stack.prometheus, "mainsail_retrain_runs_finished_total"),
        timeout=30,
    )
    problems = []
    checked = 0
    for dashboard in dashboards():
        for panel in dashboard.panels:
            for query in panel.queries:
                expr = substitute(query.expr)
                checked += 1
                try:
                    result = wait_for(
                        f"data for {expr}",
                        lambda e=expr: _series(stack.prometheus, e) or None,
                        timeout=15 if query.expect_data else 0.1,
                    )
                except ValueError as err:  # a query error
                    problems.append(f"{dashboard.uid} / {panel.title}: {err}")
                    continue
                except AssertionError:
                    if query.expect_data:
                        problems.append(f"{dashboard.uid} / {panel.title}: no data for {expr}")
                    continue
                assert result
    assert checked >= 30
    assert not problems, "\n".join(problems)


def test_stopping_the_sidecar_under_load_never_blocks_the_feed_and_fires_sidecar_down(
    stack: Stack,
) -> None:
    feed = DriftFeed(stack.sidecar.url, max_queue=50, timeout_s=0.5)
    rows, preds = churn_rows(50, seed=303)
    errors: list[BaseException] = []
    worst = [0.0]
    stop = threading.Event()

    def serve_loop() -> None:
        # What the serving runtime does per request: hand the row to the feed and move on.
        while not stop.is_set():
            for k in range(50):
                t0 = time.perf_counter()
                try:
                    feed.submit("churn", "2", rows[k : k + 1], preds[k : k + 1])
                except BaseException as err:
                    errors.append(err)
                worst[0] = max(worst[0], time.perf_counter() - t0)
            time.sleep(0.01)

    loop = threading.Thread(target=serve_loop, daemon=True)
    loop.start()
    time.sleep(1.0)
    stack.sidecar.stop()
    try:
        wait_for(
            "the sidecar-down alert",
            lambda: _series(
                stack.prometheus,
                'ALERTS{alertname="MainsailDriftSidecarDown", alertstate="firing"}',
            ),
            timeout=30,
        )
    finally:
        stop.set()
        loop.join(10)
        feed.close(timeout_s=2)
    assert errors == []
    assert worst[0] < 0.05, f"a submit took {worst[0] * 1000:.1f} ms"
    snap = feed.stats.snapshot()
    assert snap["sent_rows"] > 0
    assert snap["failed_rows"] + snap["dropped_rows"] > 0
