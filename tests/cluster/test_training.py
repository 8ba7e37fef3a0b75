"""Training on the cluster, through the real KubeRay operator.

- A drift alert posted to the cluster's Alertmanager reaches the retrain trigger through the
  chart's AlertmanagerConfig (the chart's Deployment, as its ServiceAccount), which creates a
  RayJob on the chart's RayCluster; the operator submits it to the head's Jobs API
  (HTTPMode, with the cluster's token) and polls it; the job runs `mainsail run` on the default
  config with its Ray work on the CPU pool's workers, and publishes a NEW version to the
  in-cluster registry.
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

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from mainsail.core import naming
from mainsail.retrain.rayjob import MANAGED_BY
from tests.support import kind

pytestmark = pytest.mark.cluster

RAY_CLUSTER = naming.fullname(kind.RELEASE, "ray")
TRIGGER = naming.fullname(kind.RELEASE, "retrain-trigger")
BUCKET = "mainsail-models"
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


def _retrain_jobs(custom: Any) -> set[str]:
    """Names of the RayJobs the retrain trigger created."""
    found = custom.list_namespaced_custom_object(
        "ray.io",
        "v1",
        kind.NAMESPACE,
        "rayjobs",
        label_selector=f"{naming.LABEL_MANAGED_BY}={MANAGED_BY}",
    )
    return {j["metadata"]["name"] for j in found["items"]}


def test_a_drift_alert_through_alertmanager_starts_a_rayjob_that_trains_and_publishes(
    admin: Any, s3_client: Any
) -> None:
    """The drift alert, posted to the cluster's Alertmanager as Prometheus posts it, is routed
    by the chart's AlertmanagerConfig to the trigger (with the token from the auth Secret),
    which creates a RayJob that trains and publishes a new version."""
    from kubernetes import client

    custom = client.CustomObjectsApi(admin)
    registry = kind.signed_registry(s3_client, admin, BUCKET)
    registry.ensure_bucket()
    before = [v.version for v in registry.versions("churn")]
    jobs_before = _retrain_jobs(custom)
    with kind.port_forward(f"service/{TRIGGER}", 8090) as port:
        # the trigger itself refuses a caller without the token
        unauthenticated = httpx.post(
            f"http://127.0.0.1:{port}/alerts", json={"alerts": []}, timeout=60
        )
        assert unauthenticated.status_code == 401, unauthenticated.text
    alert = {
        "labels": {
            "alertname": "MainsailDriftSustained",
            "model": "churn",
            "version": str(before[-1] if before else 0),
            "severity": "warning",
            "action": "retrain",
            # what the chart's PrometheusRule adds to each alert (the route matches it)
            "namespace": kind.NAMESPACE,
            # a new incident for this run of the test
            "e2e": kind.unique("e2e"),
        },
        "annotations": {"summary": "tests/cluster: a sustained-drift alert"},
        "startsAt": datetime.now(UTC).isoformat(),
    }
    with kind.port_forward(kind.ALERTMANAGER_SERVICE, 9093, kind.MONITORING_NAMESPACE) as port:
        posted = time.monotonic()
        answer = httpx.post(f"http://127.0.0.1:{port}/api/v2/alerts", json=[alert], timeout=30)
        assert answer.status_code == 200, answer.text

        def new_job() -> str | None:
            created = _retrain_jobs(custom) - jobs_before
            assert len(created) <= 1, created
            return next(iter(created), None)

        try:
            name = kind.wait_until("the trigger to create a RayJob", 120, new_job)
        except AssertionError as err:
            alerts = httpx.get(f"http://127.0.0.1:{port}/api/v2/alerts", timeout=30).text
            logs = kind.kubectl(
                "-n", kind.NAMESPACE, "logs", f"deployment/{TRIGGER}", "--tail=30", check=False
            )
            raise AssertionError(f"{err}; Alertmanager: {alerts}; trigger: {logs}") from None
    latency = time.monotonic() - posted
    print(f"\nalert posted to Alertmanager -> RayJob {name} created: {latency:.1f} s")

    job = custom.get_namespaced_custom_object("ray.io", "v1", kind.NAMESPACE, "rayjobs", name)
    assert job["metadata"]["annotations"]["mainsail.io/alert"] == "MainsailDriftSustained"
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": RAY_CLUSTER}
    assert job["spec"]["submissionMode"] == "HTTPMode"
    assert "--publish" in job["spec"]["entrypoint"]

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

    # Ray Train's workers of this job ran on the CPU pool's Ray workers (the head and the GPU
    # worker offer Ray no CPUs), not in the driver's process.
    head = ray_pods(admin, "headgroup")[0].metadata.name
    code, out = kind.exec_in(head, ["python", "-c", TRAIN_WORKERS, str(status.get("jobId"))])
    assert code == 0, out
    worker_ips = set(kind.parse_json_line(out, "RESULT ")["ips"])
    assert worker_ips, f"no Ray Train worker ran for job {status.get('jobId')}: {out}"
    assert worker_ips <= {p.status.pod_ip for p in ray_pods(admin, "cpu")}, worker_ips

    after = registry.versions("churn")
    assert [v.version for v in after][: len(before)] == before
    assert len(after) == len(before) + 1, [v.version for v in after]
    # complete (every file with its sha256) and signed with the cluster's key by the Ray pod
    _, _, key_id = registry.verify_signature("churn", after[-1].version)
    assert key_id is not None


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
