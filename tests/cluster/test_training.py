"""Training on the cluster, through the real KubeRay operator.

- Drifted rows served through the gateway make the champion's drift sidecar export a drifted
  series; the cluster's Prometheus evaluates the chart's PrometheusRule on it and fires the
  shipped MainsailDriftSustained alert (its `for:` shortened by scripts/kind/values.yaml), which
  Alertmanager routes by the chart's AlertmanagerConfig to the retrain trigger (the chart's
  Deployment, as its ServiceAccount); the trigger records it and creates a RayJob on the chart's
  RayCluster; the operator submits it to the head's Jobs API (HTTPMode, with the cluster's
  token) and polls it; the job runs `mainsail run` on the default config with its Ray work on
  the CPU pool's workers, and publishes a NEW version to the in-cluster registry as its
  `candidate`, which the chart's promotion controller deploys as the challenger by itself and,
  on labelled traffic, ramps and promotes. This is the
  one retraining an alert starts in tests/cluster: the serving tests send fresh, undrifted rows,
  so the drift alert fires only on this test's traffic (were another alert of the stage first,
  the trigger answers `cooldown` and the test follows the run that alert started).
- A broken retraining (its window's classes swapped by a bad labelling job) goes the same way
  as a RayJob the test makes as the trigger does, and the controller's pod deploys it and rolls
  it back on the rows' ground truth: the chain's other ending.
- The GPU worker group's pods land on the GPU pool's node and nowhere else (the node advertises
  nvidia.com/gpu without a GPU, so they run no CUDA) and join the Ray cluster with its GPU; a KFP
  GPU step's pod, placed by the pipeline's own settings, lands there too.
- A KFP step's Ray work (pipeline/ray_jobs.py) reaches the cluster from a pod, its inputs and
  outputs staged through the registry's S3 store, with no volume shared between the pods.

Before: the operator could not reach 8265 (the RayJob never succeeded), the trigger could not
start a run on the cluster, the GPU group had no replica, KFP's GPU tolerations omitted
nvidia.com/gpu (the pod stayed Pending on a GPU node tainted as GKE taints them), and
ray_jobs.py needed a ReadWriteMany folder that the chart never mounts.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mainsail.core import naming
from mainsail.retrain.rayjob import MANAGED_BY
from tests.support import kind

pytestmark = pytest.mark.cluster

RAY_CLUSTER = naming.fullname(kind.RELEASE, "ray")
TRIGGER = naming.fullname(kind.RELEASE, "retrain-trigger")
GATEWAY = naming.gateway_name(kind.RELEASE)
BUCKET = "mainsail-models"
MODEL = "churn"
DRIFT_ALERT = "MainsailDriftSustained"
DRIFT_CHECKS = 3
"""Drifted checks in a row at which the shipped rule fires (monitor.rules.drift_windows)."""
DRIFT_ROWS = 100
DRIFT_ROUND = 1000
"""Rows per round: the sidecar checks every 1000 new rows (drift.check_every_rows)."""
DRIFT_MAX_ROUNDS = 12
KIND_COOLDOWN_S = float(
    yaml.safe_load((kind.REPO / "scripts" / "kind" / "values.yaml").read_text())["retrainTrigger"][
        "cooldownSeconds"
    ]
)
"""The trigger's cool-down on kind (retrainTrigger.cooldownSeconds, scripts/kind/values.yaml)."""
#: The default config trains on 2 shared cores here in ~N minutes; room for a loaded machine.
TRAINING_TIMEOUT_S = float(1800)


def ray_pods(admin: Any, group: str | None = None) -> list[Any]:
    from kubernetes import client

    selector = f"ray.io/cluster={RAY_CLUSTER}"
    if group is not None:
        selector += f",ray.io/group={group}"
    pods: list[Any] = (
        client.CoreV1Api(admin).list_namespaced_pod(kind.NAMESPACE, label_selector=selector).items
    )
    return pods


def node_pools(admin: Any) -> dict[str, str]:
    from kubernetes import client

    return {
        n.metadata.name: (n.metadata.labels or {}).get(naming.LABEL_POOL, "")
        for n in client.CoreV1Api(admin).list_node().items
    }


def test_ray_pods_are_placed_by_pool(admin: Any) -> None:
    """Head and CPU workers on the CPU pool, GPU workers on the GPU pool, and nothing else of
    the release on the GPU node."""
    pools = node_pools(admin)
    gpu_workers = ray_pods(admin, "gpu")
    cpu_workers = ray_pods(admin, "cpu")
    assert gpu_workers, "the GPU worker group has no pod"
    assert cpu_workers, "the CPU worker group has no pod"
    assert {pools[p.spec.node_name] for p in gpu_workers} == {naming.POOL_GPU}
    assert {pools[p.spec.node_name] for p in cpu_workers} == {naming.POOL_CPU}
    for pod in gpu_workers:
        assert any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions), (
            pod.metadata.name
        )
        limits = pod.spec.containers[0].resources.limits
        assert limits[naming.GPU_RESOURCE] == "1"
    from kubernetes import client

    on_gpu_node = [
        p
        for p in client.CoreV1Api(admin).list_pod_for_all_namespaces().items
        if p.spec.node_name
        and pools[p.spec.node_name] == naming.POOL_GPU
        and not any(o.kind == "DaemonSet" for o in p.metadata.owner_references or [])
    ]
    assert {p.metadata.name for p in on_gpu_node} == {p.metadata.name for p in gpu_workers}


def _kfp_gpu_pod(tmp_path: Path, tolerations_of: str) -> dict[str, Any]:
    """A pod placed as the KFP compiler places a GPU step (pipelines.gpu.enabled): its
    nodeSelector, tolerations and accelerator limit from the compiled pipeline's IR."""
    import yaml
    from kfp import compiler

    from mainsail.config import load_config
    from mainsail.config.pipelines import GpuPlacement, PipelinesConfig, Toleration
    from mainsail.pipeline.runner import build_pipeline

    gpu = GpuPlacement(enabled=True)
    if tolerations_of == "before":  # the toleration the config had before: the pool's only
        gpu = GpuPlacement(
            enabled=True, tolerations=[Toleration(key=naming.LABEL_POOL, value=naming.POOL_GPU)]
        )
    cfg = load_config(kind.REPO / "configs" / "churn.yaml")
    package = tmp_path / f"training-{tolerations_of}.yaml"
    compiler.Compiler().compile(
        build_pipeline("training", cfg, PipelinesConfig(gpu=gpu)), str(package)
    )
    ir, platform = list(yaml.safe_load_all(package.read_text()))
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    name, spec = next(
        (n, s)
        for n, s in executors.items()
        if s["podMetadata"]["labels"]["mainsail.io/step"] == "tune"
    )
    accelerator = ir["deploymentSpec"]["executors"][name]["container"]["resources"]["accelerator"]
    manifest = kind.pod_manifest(
        kind.unique(f"kfp-gpu-{tolerations_of}"),
        ["sleep", "600"],
        image=kind.TOOLS_IMAGE,
        run_as=1000,
        labels=spec["podMetadata"]["labels"],
    )
    pod_spec = manifest["spec"]
    pod_spec["nodeSelector"] = spec["nodeSelector"]["labels"]
    pod_spec["tolerations"] = spec["tolerations"]
    count = str(accelerator["resourceCount"])
    pod_spec["containers"][0]["resources"]["limits"][accelerator["resourceType"]] = count
    return manifest


def test_a_kfp_gpu_step_is_placed_on_the_gpu_pool(admin: Any, tmp_path: Path) -> None:
    from kubernetes import client

    core = client.CoreV1Api(admin)
    pools = node_pools(admin)
    with kind.running_pod(admin, _kfp_gpu_pod(tmp_path, "now")) as name:
        node = core.read_namespaced_pod(name, kind.NAMESPACE).spec.node_name
        assert pools[node] == naming.POOL_GPU
    before = _kfp_gpu_pod(tmp_path, "before")
    core.create_namespaced_pod(kind.NAMESPACE, before)
    name = before["metadata"]["name"]
    try:

        def unschedulable() -> str | None:
            pod = core.read_namespaced_pod(name, kind.NAMESPACE)
            for cond in pod.status.conditions or []:
                if cond.type == "PodScheduled" and cond.reason == "Unschedulable":
                    return str(cond.message)
            assert pod.spec.node_name is None, f"scheduled on {pod.spec.node_name}"
            return None

        message = kind.wait_until("the scheduler to refuse the pod", 60, unschedulable)
        # the GPU node's nvidia.com/gpu taint (the only toleration the two pods differ by)
        assert "untolerated taint" in message, message
    finally:
        core.delete_namespaced_pod(name, kind.NAMESPACE, grace_period_seconds=0)


def _retrain_job(custom: Any, run_id: str) -> str | None:
    """Name of the RayJob the retrain trigger created for run `run_id`."""
    found = custom.list_namespaced_custom_object(
        "ray.io",
        "v1",
        kind.NAMESPACE,
        "rayjobs",
        label_selector=f"{naming.LABEL_MANAGED_BY}={MANAGED_BY}",
    )
    names = [
        j["metadata"]["name"]
        for j in found["items"]
        if j["metadata"].get("annotations", {}).get("mainsail.io/run-id") == run_id
    ]
    return names[0] if names else None


def _succeeded(custom: Any, name: str) -> dict[str, Any]:
    """RayJob `name`'s status once it finished, which must be a success."""
    started = time.monotonic()

    def finished() -> dict[str, Any] | None:
        found: dict[str, Any] = custom.get_namespaced_custom_object(
            "ray.io", "v1", kind.NAMESPACE, "rayjobs", name
        )
        status = found.get("status") or {}
        if status.get("jobDeploymentStatus") in ("Complete", "Failed"):
            return status
        return None

    try:
        status = kind.wait_until(f"RayJob {name} to finish", TRAINING_TIMEOUT_S, finished, every=10)
    except AssertionError as err:
        found = custom.get_namespaced_custom_object("ray.io", "v1", kind.NAMESPACE, "rayjobs", name)
        raise AssertionError(f"{err}; status: {json.dumps(found.get('status'))}") from None
    print(f"\nRayJob {name}: {status.get('jobStatus')} after {time.monotonic() - started:.0f} s")
    assert status.get("jobStatus") == "SUCCEEDED", json.dumps(status)
    return status


def _serve_the_champion_alone(admin: Any, gateway: str, token: str, publish: Any) -> str:
    """Every request of the gateway to the champion (the tests before leave one served; run
    alone, one of the test versions is deployed); the champion's version."""
    from kubernetes import client

    from mainsail.deploy.gateway import GatewayDeployer

    cfg = kind.gateway_config(gateway)
    deployer = GatewayDeployer(cfg, token=token, apps=client.AppsV1Api(admin))
    champion = deployer.state()["variants"]["champion"]
    if not (champion.get("version") and champion.get("healthy")):
        registry = publish(MODEL, 1)
        version = registry.aliases(MODEL).get("champion") or registry.versions(MODEL)[0].version
        registry.promote(MODEL, version, "champion")
        # the champion's Deployment and the gateway's variant, as `mainsail deploy` sets them
        # (with no challenger: a deploy needs two versions)
        deployer.serve("champion", version)
    deployer.set_canary(0)
    return str(deployer.state()["variants"]["champion"]["version"])


def _send_drifted_traffic(gateway: str, prometheus: str, artifact: Path, version: str) -> int:
    """Rounds of DRIFT_ROUND drifted rows (DRIFT_ROWS per request) through the gateway until
    Prometheus scrapes the champion's sidecar counting at least DRIFT_CHECKS drifted checks in
    a row (the rule's threshold); the rows sent."""
    from tests.support.containers import v2_body

    expr = (
        f'max(mainsail_drift_consecutive_drifted_checks{{model="{MODEL}", version="{version}",'
        f' job="{naming.DRIFT_SCRAPE_JOB}"}})'
    )

    def drifted_checks() -> float:
        result = kind.prometheus_api(prometheus, "/api/v1/query", query=expr)["result"]
        return float(result[0]["value"][1]) if result else 0.0

    sent = 0
    with httpx.Client(base_url=gateway, timeout=60) as http:
        for round_ in range(DRIFT_MAX_ROUNDS):
            for i in range(DRIFT_ROUND // DRIFT_ROWS):
                body = v2_body(artifact, DRIFT_ROWS, 1000 * round_ + i, drift=0.8)
                answer = http.post(f"/v2/models/{MODEL}/infer", json=body)
                assert answer.status_code == 200, answer.text[:500]
                assert answer.headers["x-mainsail-model-version"] == version
                sent += DRIFT_ROWS
            # the sidecar checks each DRIFT_ROUND rows; Prometheus scrapes it every 30 s
            for _ in range(5):
                if drifted_checks() >= DRIFT_CHECKS:
                    return sent
                time.sleep(3)
    raise AssertionError(f"{sent} drifted rows, yet {expr} = {drifted_checks()}")


def test_drifted_traffic_fires_the_shipped_drift_alert_which_retrains_and_publishes(
    admin: Any, s3_client: Any, publish: Any, model_artifact: Path
) -> None:
    """The whole alerting path on the real series, and the one retraining of tests/cluster:
    drifted rows sent through the gateway to the champion's MLServer pod, whose runtime feeds
    its drift sidecar; Prometheus scrapes the sidecar's mainsail_drift_consecutive_drifted_checks,
    evaluates the chart's PrometheusRule (monitoring/prometheus/rules.yml's rules, with
    MainsailDriftSustained's `for:` set to 15s by scripts/kind/values.yaml) and fires
    MainsailDriftSustained for the champion's version; Alertmanager holds that alert and routes
    it by the chart's AlertmanagerConfig to the trigger (with the token from the auth Secret;
    the trigger refuses a caller without it); the trigger records it (its log line with the
    alert's labels and its decision, its metrics) and answers `started` (a RayJob for this
    alert's fingerprint) or `cooldown`. The first is what a whole stage gives (the serving
    tests send fresh, undrifted rows); the second, when another drift alert started a run
    within the cool-down (900 s on kind: e.g. the tests run again on a kept cluster), and the
    test then follows that run (the trigger's latest, delivered through the chart's route).
    Either way the run's RayJob trains on the CPU pool and publishes a signed version: one
    retraining for tests/cluster."""
    from kubernetes import client

    if not kind.mlserver_mode(admin):
        pytest.skip("serving.backend seldon: no gateway-to-MLServer path to drive drift through")
    custom = client.CustomObjectsApi(admin)
    registry = kind.signed_registry(s3_client, admin, BUCKET)
    registry.ensure_bucket()
    tokens = kind.secret_data(admin, naming.auth_secret_name(kind.RELEASE))
    with contextlib.ExitStack() as forwards:
        gateway, prometheus, alertmanager, trigger = (
            f"http://127.0.0.1:{forwards.enter_context(kind.port_forward(*target))}"
            for target in (
                (f"service/{GATEWAY}", naming.ROUTER_PORT),
                (kind.PROMETHEUS_SERVICE, 9090, kind.MONITORING_NAMESPACE),
                (kind.ALERTMANAGER_SERVICE, 9093, kind.MONITORING_NAMESPACE),
                (f"service/{TRIGGER}", 8090),
            )
        )
        # the trigger itself refuses a caller without the token
        unauthenticated = httpx.post(f"{trigger}/alerts", json={"alerts": []}, timeout=60)
        assert unauthenticated.status_code == 401, unauthenticated.text
        # Prometheus evaluates the shipped rule with the kind cluster's `for:` (once the
        # operator's config reload has loaded the chart's PrometheusRule: a run of this module
        # alone, right after the install, came before it)

        def loaded() -> dict[str, Any] | None:
            groups = kind.prometheus_api(prometheus, "/api/v1/rules", type="alert")["groups"]
            return next((r for g in groups for r in g["rules"] if r["name"] == DRIFT_ALERT), None)

        rule = kind.wait_until(f"Prometheus to load {DRIFT_ALERT}", 180, loaded, every=5)
        assert rule["duration"] == 15 and rule["labels"]["action"] == "retrain", rule

        version = _serve_the_champion_alone(admin, gateway, tokens["gateway-token"], publish)
        before = [v.version for v in registry.versions(MODEL)]
        began = time.monotonic()
        rows = _send_drifted_traffic(gateway, prometheus, model_artifact, version)
        drifted = time.monotonic() - began

        def firing() -> dict[str, Any] | None:
            alerts = kind.prometheus_api(prometheus, "/api/v1/alerts")["alerts"]
            return next(
                (
                    a
                    for a in alerts
                    if a["labels"].get("alertname") == DRIFT_ALERT
                    and a["labels"].get("version") == version
                    and a["state"] == "firing"
                ),
                None,
            )

        fired = kind.wait_until(f"Prometheus to fire {DRIFT_ALERT} for v{version}", 180, firing)
        fired_at = time.monotonic() - began
        assert fired["labels"]["model"] == MODEL and fired["labels"]["namespace"] == kind.NAMESPACE
        assert float(fired["value"]) >= DRIFT_CHECKS, fired

        def held() -> dict[str, Any] | None:
            alerts = httpx.get(
                f"{alertmanager}/api/v2/alerts",
                params={"filter": [f'alertname="{DRIFT_ALERT}"', f'version="{version}"']},
                timeout=30,
            ).json()
            return next((a for a in alerts if a["status"]["state"] == "active"), None)

        am_alert = kind.wait_until(f"Alertmanager to hold {DRIFT_ALERT}", 60, held)
        assert any(r["name"].endswith("/retrain-trigger") for r in am_alert["receivers"]), am_alert
        assert am_alert["labels"]["action"] == "retrain"

        instance = fired["labels"]["instance"]

        def decided() -> str | None:
            logs = kind.kubectl(
                "-n", kind.NAMESPACE, "logs", f"deployment/{TRIGGER}", "--since=15m", check=False
            )
            ours = [
                line.rsplit("): ", 1)[-1].strip()
                for line in logs.splitlines()
                if f"alert {DRIFT_ALERT} firing" in line
                and f"'version': '{version}'" in line
                and f"'instance': '{instance}'" in line
            ]
            return ours[-1] if ours else None

        decision = kind.wait_until(f"the trigger to decide on {DRIFT_ALERT}", 60, decided)
        decided_at = time.monotonic() - began
        print(
            f"\n{rows} drifted rows sent in {drifted:.0f} s; {DRIFT_ALERT} firing on Prometheus"
            f" at {fired_at:.0f} s; the trigger's decision ({decision}) at {decided_at:.0f} s"
        )
        runs = httpx.get(
            f"{trigger}/v1/runs",
            headers={"authorization": f"Bearer {tokens['trigger-token']}"},
            timeout=30,
        ).json()["runs"]
        if decision == "started":
            # this very alert (Alertmanager's fingerprint) started the run
            (run_id,) = [k for k, r in runs.items() if r["fingerprint"] == am_alert["fingerprint"]]
            assert runs[run_id]["version"] == version, runs[run_id]
        else:
            # A MainsailDriftSustained that Prometheus fired earlier (e.g. the tests run again
            # on a kept cluster) started the run, and this one is within its cool-down
            # (scripts/kind/values.yaml).
            assert decision == "cooldown", decision
            run_id = max(runs, key=lambda k: float(runs[k]["started_unix"]))
            age = time.time() - float(runs[run_id]["started_unix"])
            assert age < KIND_COOLDOWN_S, runs[run_id]
        run = runs[run_id]
        assert run["alertname"] == DRIFT_ALERT, run
        # it came through the chart's route (Alertmanager's group key), not from a test
        assert 'action="retrain"' in run["group_key"], run
        assert f'namespace="{kind.NAMESPACE}"' in run["group_key"], run
        metrics = httpx.get(f"{trigger}/metrics", timeout=30).text
        assert (
            f'mainsail_retrain_alerts_received_total{{alertname="{DRIFT_ALERT}",status="firing"}}'
            in metrics
        )
        assert f'mainsail_retrain_decisions_total{{decision="{decision}"}}' in metrics
    name = kind.wait_until(f"the RayJob of run {run_id}", 60, lambda: _retrain_job(custom, run_id))
    job = custom.get_namespaced_custom_object("ray.io", "v1", kind.NAMESPACE, "rayjobs", name)
    annotations = job["metadata"]["annotations"]
    assert annotations["mainsail.io/alert"] == DRIFT_ALERT
    assert annotations["mainsail.io/drifted-version"] == run["version"]
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": RAY_CLUSTER}
    assert job["spec"]["submissionMode"] == "HTTPMode"
    assert "--publish --candidate" in job["spec"]["entrypoint"]

    status = _succeeded(custom, name)

    # Ray Train's workers of this job ran on the CPU pool's Ray workers (the head and the GPU
    # worker offer Ray no CPUs), not in the driver's process.
    head = ray_pods(admin, "headgroup")[0].metadata.name
    code, out = kind.exec_in(head, ["python", "-c", TRAIN_WORKERS, str(status.get("jobId"))])
    assert code == 0, out
    worker_ips = set(kind.parse_json_line(out, "RESULT ")["ips"])
    assert worker_ips, f"no Ray Train worker ran for job {status.get('jobId')}: {out}"
    assert worker_ips <= {p.status.pod_ip for p in ray_pods(admin, "cpu")}, worker_ips

    # A NEW version, published by the job while it ran (complete: every file with its sha256,
    # and signed with the cluster's key by the Ray pod). The run may have started before this
    # test (see above): the versions created while the job ran.
    after = registry.versions(MODEL)
    assert [v.version for v in after][: len(before)] == before
    if decision == "started":
        assert len(after) == len(before) + 1, [v.version for v in after]
    began_at, ended_at = (datetime.fromisoformat(status[k]) for k in ("startTime", "endTime"))
    published = [v for v in after if began_at <= datetime.fromisoformat(v.created_at) <= ended_at]
    print(f"versions published while RayJob {name} ran: {[v.version for v in published]}")
    assert published, [(v.version, v.created_at) for v in after]
    for found in published:
        _, _, key_id = registry.verify_signature(MODEL, found.version)
        assert key_id is not None


def _first_step() -> int:
    """kind's ramp (promotionController.set in scripts/kind/values.yaml): its first step."""
    sets = dict(
        s.split("=", 1)
        for s in yaml.safe_load((kind.REPO / "scripts" / "kind" / "values.yaml").read_text())[
            "promotionController"
        ]["set"]
    )
    return int(yaml.safe_load(sets["promotion.ramp"])[0])


def _deployed_by_the_controller(admin: Any, loop: Any, champion: int, candidate: int) -> str:
    """The chart's promotion controller (promotionController.deployCandidates), scaled to one
    pod with no experiment running, deploys the registry's `candidate` as the challenger at the
    ramp's first step through the gateway and the challenger's MLServer Deployment, as the
    deployer; it removes the alias and logs `deploy`. The experiment's key."""
    first_step = _first_step()
    current = loop.backend.current(MODEL)
    assert current == (str(champion), None, 0), f"an experiment runs already: {current}"
    logged_before = len(loop.store.decisions(MODEL))
    started = time.monotonic()

    def deployed() -> dict[str, Any] | None:
        return next(
            (d for d in loop.store.decisions(MODEL)[logged_before:] if d["action"] == "deploy"),
            None,
        )

    with kind.promotion_controller_running(admin) as pod:
        decision = kind.wait_until(
            f"the controller to deploy candidate v{candidate}", 600, deployed, every=2
        )
        took = time.monotonic() - started
        kind.controller_log_with(pod, f"deploy: candidate v{candidate} deployed as challenger")
    current = loop.backend.current(MODEL)
    after = loop.registry.aliases(MODEL)
    print(
        f"\ncandidate v{candidate} deployed by the controller's pod {took:.0f} s after it "
        f"was scaled up: {decision['reason']}; gateway {current}"
    )
    key = f"{MODEL}:{champion}->{candidate}"
    evidence = decision["evidence"]
    assert evidence["challenger_version"] == str(candidate), evidence
    assert evidence["champion_version"] == str(champion), evidence
    assert evidence["stage"] == f"canary {first_step}%", evidence
    assert evidence["experiment"] == key, evidence
    assert current == (str(champion), str(candidate), first_step), current
    assert "candidate" not in after and after["challenger"] == candidate, after
    return key


def test_the_retrained_version_is_deployed_by_the_controller_then_ramped_and_promoted(
    admin: Any, s3_client: Any, model_artifact: Path
) -> None:
    """The chain's last links: the RayJob above published its version with `--candidate`
    (retrainTrigger.rayJobEntrypoint), which put the registry's `candidate` alias on it. The
    chart's promotion controller, scaled to one pod, finds no experiment running and deploys
    the candidate at the ramp's first step (:func:`_deployed_by_the_controller`). Then labelled
    traffic through the gateway (the champion's answers playing the worse ones, as in
    test_serving_loop.py's (a)) and the same pod ramps the retrained version and promotes it:
    drift -> alert -> RayJob -> canary -> promotion on the cluster with no step taken by the
    test."""
    from tests.support.experiments import open_loop, run_experiment

    if not kind.mlserver_mode(admin):
        pytest.skip("serving.backend seldon: the gateway's variants are Seldon Models")
    registry = kind.signed_registry(s3_client, admin, BUCKET)
    aliases = registry.aliases(MODEL)
    candidate = aliases.get("candidate")
    assert candidate is not None, f"the retraining run left no candidate: {aliases}"
    champion = aliases["champion"]
    with open_loop(admin, registry, model_artifact) as loop:
        key = _deployed_by_the_controller(admin, loop, champion, candidate)
        ex = run_experiment(admin, loop, key, worse="champion", kill=False)
        final = loop.backend.current(MODEL)
    # The retrained version served its share, was ramped and promoted, by the same pod.
    actions = ex.actions()
    assert ex.answered["challenger"] > 0, ex.answered
    assert ex.stored["predictions"] == ex.stored["labelled"] == ex.rows
    # its decision log: the deployment (same experiment key), the ramp steps, the promotion
    assert actions[0] == "deploy" and actions[-1] == "promote", actions
    assert set(actions[1:-1]) <= {"ramp"}, actions
    assert final == (str(candidate), None, 0), final
    assert registry.aliases(MODEL)["champion"] == candidate
    assert "look failed" not in ex.log


SWAPPED_WINDOW = """
import sys
import pandas as pd
from mainsail.config import load_config
from mainsail.data.ingest import ensure_data_file, write_table
cfg = load_config("/app/configs/churn.yaml", {"data.path": sys.argv[1]})
assert ensure_data_file(cfg.data, cfg.seed), "the window exists already"
frame = pd.read_parquet(cfg.data.path)
frame[cfg.data.target] = 1 - frame[cfg.data.target]
write_table(frame, cfg.data.path)
print(f"swapped the classes of {len(frame)} rows in {sys.argv[1]}")
"""
"""A broken labelling job: the retraining's window (the default config's synthetic data, as the
chart's entrypoint makes it) with every row's class swapped."""


def _trigger_entrypoint(admin: Any) -> str:
    """The RayJob entrypoint the chart gave its retrain trigger (its Deployment's argument)."""
    from kubernetes import client

    trigger = client.AppsV1Api(admin).read_namespaced_deployment(TRIGGER, kind.NAMESPACE)
    flag = "--set=monitor.trigger.rayjob.entrypoint="
    (arg,) = [
        a for c in trigger.spec.template.spec.containers for a in c.args or [] if a.startswith(flag)
    ]
    return str(json.loads(arg.removeprefix(flag)))


def test_a_broken_retraining_is_deployed_by_the_controller_then_rolled_back_on_ground_truth(
    admin: Any, s3_client: Any, model_artifact: Path
) -> None:
    """The chain the other way, with a retraining that went wrong: its labelling job swapped the
    classes of its window, so the model learnt the opposite of the truth, though offline it
    looks fine (it beats its baseline on its own window). The test makes the RayJob the trigger
    makes (rayjob.render, the trigger's own entrypoint from its Deployment, on the chart's
    RayCluster) with that window; the run publishes its version as the `candidate`; the
    chart's controller pod deploys it at the ramp's first step; then traffic through the gateway
    labelled with every row's ground truth (the class the generator gave that customer: no
    variant plays a part here, the models' own answers decide) until the pod rolls the broken
    version back. The champion keeps serving and stays the registry's champion."""
    from kubernetes import client

    from mainsail.config.monitor import RayJobActionConfig
    from mainsail.retrain import rayjob
    from mainsail.retrain.actions import RetrainRequest
    from tests.support.experiments import open_loop, run_experiment

    if not kind.mlserver_mode(admin):
        pytest.skip("serving.backend seldon: the gateway's variants are Seldon Models")
    custom = client.CustomObjectsApi(admin)
    registry = kind.signed_registry(s3_client, admin, BUCKET)
    aliases = registry.aliases(MODEL)
    assert "candidate" not in aliases, f"a candidate waits already: {aliases}"
    champion = aliases["champion"]
    before = [v.version for v in registry.versions(MODEL)]

    run_id = kind.unique("broken")
    window = f"/tmp/data/{run_id}.parquet"
    chart_entrypoint = _trigger_entrypoint(admin)
    data_flag = "--set data.path=/tmp/data/churn.parquet"
    assert data_flag in chart_entrypoint, chart_entrypoint
    entrypoint = f"python -c {shlex.quote(SWAPPED_WINDOW)} {window} && " + chart_entrypoint.replace(
        data_flag, f"--set data.path={window}"
    )
    request = RetrainRequest(
        run_id, MODEL, str(champion), "BrokenLabellingJob", run_id, "", {}, window=None
    )
    job = rayjob.render(
        RayJobActionConfig(cluster=RAY_CLUSTER, namespace=kind.NAMESPACE, entrypoint=entrypoint),
        [],
        request,
    )
    custom.create_namespaced_custom_object("ray.io", "v1", kind.NAMESPACE, "rayjobs", job)
    _succeeded(custom, job["metadata"]["name"])
    versions = [v.version for v in registry.versions(MODEL)]
    assert versions[:-1] == before, versions  # one new version
    candidate = registry.aliases(MODEL).get("candidate")
    assert candidate == versions[-1], registry.aliases(MODEL)

    with open_loop(admin, registry, model_artifact) as loop:
        key = _deployed_by_the_controller(admin, loop, champion, candidate)
        ex = run_experiment(admin, loop, key, worse=None, kill=False)
        final = loop.backend.current(MODEL)
    actions = ex.actions()
    assert ex.answered["challenger"] > 0, ex.answered
    assert ex.stored["predictions"] == ex.stored["labelled"] == ex.rows
    assert actions[0] == "deploy" and actions[-1] == "rollback", actions
    assert "promote" not in actions, [d["reason"] for d in ex.logged]
    assert ex.logged[-1]["reason"].startswith("challenger loss higher"), ex.logged[-1]["reason"]
    assert final == (str(champion), None, 0), final
    assert registry.aliases(MODEL)["champion"] == champion
    assert "look failed" not in ex.log


TRAIN_WORKERS = """
import json, sys
from ray.util.state import list_actors, list_jobs, list_nodes
job = next(j.job_id for j in list_jobs() if j.submission_id == sys.argv[1])
nodes = {n.node_id: n.node_ip for n in list_nodes()}
actors = list_actors(filters=[("class_name", "=", "RayTrainWorker"), ("job_id", "=", job)])
print("RESULT " + json.dumps({"ips": sorted({nodes[a.node_id] for a in actors})}))
"""


RAY_JOB_PROBE = """
import json, os
from mainsail.config import config_to_json, load_config
from mainsail.config.pipelines import KubeRayConfig
from mainsail.pipeline.ray_jobs import run_ray_work
cfg = load_config("/app/configs/churn.yaml", {"registry.cache_dir": "/tmp/models"})
os.makedirs("/tmp/given", exist_ok=True)
open("/tmp/given/rows.txt", "w").write("1 2 3")
kuberay = KubeRayConfig(dashboard_url=os.environ["DASHBOARD"], poll_interval_s=1, timeout_s=600)
result = run_ray_work(
    "mainsail.pipeline.ray_jobs:cluster_probe",
    {"config_json": config_to_json(cfg), "out_path": "/tmp/out/probe.json",
     "inputs_dir": "/tmp/given"},
    kuberay, inputs=["inputs_dir"], outputs=["out_path"], registry=cfg.registry,
)
result["copied_back"] = json.load(open("/tmp/out/probe.json"))["squares"]
print("RESULT " + json.dumps(result))
"""


def test_a_kfp_steps_ray_work_runs_on_the_cluster_through_s3(admin: Any, s3_client: Any) -> None:
    """What a KFP train/tune step does with `pipelines.kuberay.dashboard_url` set, from a pod
    labelled as a Ray client, with the cluster's token from KubeRay's Secret."""
    env = [
        *kind.s3_env(),
        {
            "name": "DASHBOARD",
            "value": f"http://{RAY_CLUSTER}-head-svc.{kind.NAMESPACE}.svc.cluster.local:8265",
        },
        {
            "name": "RAY_AUTH_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": RAY_CLUSTER, "key": "auth_token"}},
        },
    ]
    manifest = kind.pod_manifest(
        kind.unique("ray-step"),
        ["python", "-c", RAY_JOB_PROBE],
        env=env,
        labels={naming.LABEL_RAY_CLIENT: "true"},
    )
    result = kind.run_pod(admin, manifest, timeout_s=600)
    assert result.exit_code == 0, result.logs[-4000:]
    probe = kind.parse_json_line(result.logs, "RESULT ")
    assert probe["squares"] == [0, 1, 4, 9] and probe["copied_back"] == [0, 1, 4, 9]
    assert probe["inputs"] == {"rows.txt": "1 2 3"}
    head_ip = next(p.status.pod_ip for p in ray_pods(admin, "headgroup"))
    assert probe["gcs_address"].startswith(f"{head_ip}:")
    # the GPU worker joined with its GPU and no CPU for Ray (CPU work stays on the CPU pool)
    gpu_ips = {p.status.pod_ip for p in ray_pods(admin, "gpu")}
    resources = {n["ip"]: n["resources"] for n in probe["node_resources"]}
    assert gpu_ips and all(resources[ip].get("GPU") == 1 for ip in gpu_ips), resources
    assert all(resources[ip].get("CPU", 0) == 0 for ip in gpu_ips), resources
    staged = list(s3_client.list_objects(BUCKET, prefix="ray-jobs/", recursive=True))
    assert staged == []  # the job's staging folder was removed
