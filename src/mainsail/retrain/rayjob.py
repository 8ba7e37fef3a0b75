"""The retrain trigger's `rayjob` action: each retraining run is a KubeRay RayJob.

The RayJob runs on an existing RayCluster (`clusterSelector`; the chart's `<release>-ray`) in
KubeRay's HTTPMode: the operator submits the entrypoint to the head's Jobs API itself, with the
cluster's auth token, so no submitter pod is made and the trigger talks only to the Kubernetes
API server. Its one call is a `create` of a `ray.io/v1` RayJob in the cluster's namespace, which
is all the chart's Role for the trigger allows.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from mainsail.config.monitor import RayJobActionConfig
from mainsail.core import naming
from mainsail.retrain.actions import RetrainRequest, RunInfo

GROUP = "ray.io"
VERSION = "v1"
PLURAL = "rayjobs"
MANAGED_BY = "mainsail-retrain-trigger"
#: KubeRay's label (and RayJob clusterSelector key) naming a RayCluster.
CLUSTER_LABEL = "ray.io/cluster"
#: KubeRay limits RayJob names (MaxRayJobNameLength) and wants DNS-1035 labels.
MAX_NAME = 47


class RayJobError(RuntimeError):
    """The RayJob could not be created; the message says which and why."""


def job_name(model: str, run_id: str) -> str:
    """`<model>-retrain-<run id>`, cut to KubeRay's length, a DNS-1035 label."""
    safe = "".join(c if c.isalnum() else "-" for c in run_id.lower()).strip("-")
    name = f"{model}-retrain-{safe}"[:MAX_NAME].rstrip("-")
    if not name[0].isalpha():
        name = f"r{name}"[:MAX_NAME]
    return naming.check_dns_label(name)


def entrypoint(
    cfg: RayJobActionConfig,
    command: list[str],
    request: RetrainRequest,
    config_path: Path | None = None,
) -> str:
    """The job's shell command: `cfg.entrypoint`, else the trigger's `command`, filled in
    (`{window}` is empty: the drifted window stays in the trigger's pod)."""
    values = {
        "config": str(config_path or ""),
        "window": "",
        "model": request.model,
        "version": request.version,
        "alert": request.alertname,
        "run_id": request.run_id,
    }
    if cfg.entrypoint is None:
        return shlex.join(_fill(part, values) for part in command)
    return _fill(cfg.entrypoint, {k: shlex.quote(v) if v else "" for k, v in values.items()})


def _fill(template: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return template


def render(
    cfg: RayJobActionConfig,
    command: list[str],
    request: RetrainRequest,
    config_path: Path | None = None,
) -> dict[str, Any]:
    """The RayJob of one retraining run."""
    if not cfg.cluster:
        raise RayJobError(
            "monitor.trigger.rayjob.cluster is required with action rayjob: the RayCluster "
            "that runs the job (the chart's is <release>-ray)"
        )
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RayJob",
        "metadata": {
            "name": job_name(request.model, request.run_id),
            "namespace": cfg.namespace,
            "labels": naming.labels("ray", managed_by=MANAGED_BY, model=request.model),
            "annotations": {
                "mainsail.io/alert": request.alertname,
                "mainsail.io/drifted-version": request.version,
                "mainsail.io/run-id": request.run_id,
            },
        },
        "spec": {
            "entrypoint": entrypoint(cfg, command, request, config_path),
            "clusterSelector": {CLUSTER_LABEL: cfg.cluster},
            "submissionMode": "HTTPMode",
            "metadata": {"mainsail.io/run-id": request.run_id},
        },
    }


class RayJobAction:
    """Create a RayJob per retraining run (kubernetes client, in-cluster credentials first)."""

    def __init__(
        self,
        cfg: RayJobActionConfig,
        command: list[str],
        *,
        config_path: Path | None = None,
        api_client: Any = None,
    ) -> None:
        self.cfg = cfg
        self.command = command
        self.config_path = config_path
        self.api_client = api_client

    def __call__(self, request: RetrainRequest) -> RunInfo:
        from kubernetes.client.exceptions import ApiException

        from mainsail.core.kube import KubeCredentialsError, custom_objects_api

        job = render(self.cfg, self.command, request, self.config_path)
        meta = job["metadata"]
        try:
            api = custom_objects_api(self.api_client)
            api.create_namespaced_custom_object(GROUP, VERSION, meta["namespace"], PLURAL, job)
        except ApiException as err:
            raise RayJobError(
                f"creating RayJob {meta['namespace']}/{meta['name']} failed: "
                f"{err.status} {err.reason}"
            ) from None
        except KubeCredentialsError as err:
            raise RayJobError(str(err)) from None
        return RunInfo(
            "rayjob",
            {
                "rayjob": meta["name"],
                "namespace": meta["namespace"],
                "cluster": self.cfg.cluster,
                "entrypoint": job["spec"]["entrypoint"],
            },
        )
