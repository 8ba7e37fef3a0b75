"""The RayJob example's entrypoint, run where KubeRay runs it: in the pipeline image as the
chart's RayCluster head container is configured (uid 10001, read-only root, /tmp and /dev/shm
emptyDirs, the S3 environment with the keys of the chart's Secret), on the cluster network where
the chart's MinIO Service name resolves. It must train and publish the model to the registry.
(tests/cluster runs it through the real KubeRay operator on the kind cluster.)

The entrypoint used to be `mainsail run /app/configs/churn.yaml`: it wrote its data and run
folder under /app (read-only: the run failed) and never published, so no model trained on Ray
reached the registry. The only additions here are `--set` overrides that make the run small.
"""

from __future__ import annotations

import shlex
from typing import Any

import pytest
import yaml

from mainsail.registry.store import ModelRegistry
from tests.support.containers import BUCKET, REPO
from tests.support.pods import Cluster, Pod

pytestmark = [pytest.mark.containers, pytest.mark.integration, pytest.mark.slow]

RAYJOB = REPO / "manifests" / "examples" / "training" / "rayjob-train.yaml"

#: A small run: the same stages, fewer rows, two quick candidates, two trials, two folds.
SMALL = {
    "data.synthetic.rows": "600",
    "train.candidates": "[baseline, linear]",
    "tune.candidates": "[linear]",
    "tune.num_trials": "2",
    "tune.backend": "optuna",
    "evaluate.cv_folds": "2",
    "evaluate.alpha": "0.3",
    "evaluate.bootstrap": "100",
    "evaluate.importance_rows": "100",
    "evaluate.reference_rows": "100",
    "evaluate.permutation_repeats": "1",
}


def test_the_rayjob_entrypoint_trains_and_publishes_to_the_registry(
    cluster: Cluster, minio: Pod, s3_client: Any, published: int
) -> None:
    job = yaml.safe_load(RAYJOB.read_text())
    ray_cluster = next(o for o in cluster.objects if o["kind"] == "RayCluster")
    assert job["spec"]["clusterSelector"]["ray.io/cluster"] == ray_cluster["metadata"]["name"]
    head = ray_cluster["spec"]["headGroupSpec"]["template"]["spec"]
    container = dict(head["containers"][0])
    for key in ("ports", "livenessProbe", "readinessProbe"):
        container.pop(key, None)
    small = [arg for key, value in SMALL.items() for arg in ("--set", f"{key}={value}")]
    container["command"] = [*shlex.split(job["spec"]["entrypoint"]), *small]
    registry = ModelRegistry(s3_client, BUCKET)
    before = [v.version for v in registry.versions("churn")]

    code, out = cluster.run_to_end("rayjob-head", {**head, "containers": [container]}, 900)

    assert code == 0, out[-4000:]
    after = [v.version for v in registry.versions("churn")]
    assert len(after) == len(before) + 1, out[-2000:]
    assert f"published: churn v{after[-1]}" in out.replace("\n", " ")
