"""Helpers of the container tests (tests/containers): the image digests, SeaweedFS in MinIO's
place, what Seldon adds to the Server pod, V2 request bodies."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from mainsail.core import naming
from tests.support.pods import Cluster

REPO = Path(__file__).resolve().parents[2]
BUCKET = "mainsail-models"


def source_digest(env: str) -> str:
    """What scripts/images.sh labels an image with: the digest of the files it is built from."""
    out = subprocess.run(
        [str(REPO / "scripts" / "images.sh"), "--digest", env],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return out.stdout.strip()


SEAWEED_LAUNCHER = """
import os, signal, socket
from mainsail.registry.seaweedfs import SeaweedS3
env = os.environ
s3 = SeaweedS3("/data/s3", port=9000, host=socket.gethostbyname(socket.gethostname()),
               access_key=env["MINIO_ROOT_USER"], secret_key=env["MINIO_ROOT_PASSWORD"],
               buckets=[env["BUCKET"]])
s3.start()
print("SeaweedFS S3 ready on :9000", flush=True)
signal.sigwait({signal.SIGTERM, signal.SIGINT})
s3.stop()
"""


# The volume Seldon's rclone fills and its agent loads from (the ServerConfig mounts it on the
# `mlserver` container at /mnt/agent, read-only): the tests pass a host folder for it.
SELDON_MODELS_VOLUME = "mlserver-models"


def seldon_server_pod(
    cluster: Cluster, containers: tuple[str, ...] = ("mlserver", "drift")
) -> tuple[dict[str, Any], dict[str, str]]:
    """The chart's Server podSpec as Seldon runs it: our containers (all, or those named),
    the `mlserver` one merged with Seldon's ServerConfig container (tests.support.seldon: its
    ports, its env before ours, its mounts) but the TLS certificates' mount (no TLS here)."""
    from tests.support.seldon import merge_container

    spec, labels = cluster.pod_spec("Server", naming.server_name())
    merged = []
    for c in spec["containers"]:
        if c["name"] not in containers:
            continue
        c = dict(c)
        if c["name"] == "mlserver":
            c = merge_container(c)
            c["volumeMounts"] = [m for m in c["volumeMounts"] if m["mountPath"] != "/mnt/certs"]
        merged.append(c)
    return {**spec, "containers": merged}, labels


#: Rows generated per body, of which a body takes a random few: `generate_churn` sorts its rows by
#: time and tenure grows with time, so the first rows of a small generation are a distribution of
#: their own (low tenure and charges, few customers), which a drift sidecar rightly flags.
_GENERATED = 200


def v2_body(churn_artifact: Path, rows: int, seed: int, *, drift: float = 0.0) -> dict[str, Any]:
    """A V2 request of `rows` fresh churn rows (`generate_churn`'s, drifted by `drift`) that the
    artifact's schema accepts, drawn at random from a generation that spans the generator's whole
    time range: the generator leaves some values missing, as real data does, and rows missing
    one the schema requires are not drawn."""
    return v2_labelled(churn_artifact, rows, seed, drift=drift)[0]


def v2_labelled(
    churn_artifact: Path, rows: int, seed: int, *, drift: float = 0.0
) -> tuple[dict[str, Any], list[str]]:
    """:func:`v2_body`'s request with its rows' ground truth: the generator's target (the
    class each customer really took), as text, the form of the model's `classes`."""
    from mainsail.data.schema import FeatureSchema
    from mainsail.data.synthetic import generate_churn
    from tests.support.serving import v2_inputs

    schema = FeatureSchema.load(churn_artifact / "feature_schema.json")
    required = [f.name for f in schema.features if not f.nullable]
    size = max(rows, _GENERATED)
    while True:
        frame = generate_churn(size, drift=drift, seed=seed).dropna(subset=required)
        if len(frame) >= rows:
            drawn = frame.sample(n=rows, random_state=seed)
            truth = [str(v) for v in drawn[schema.target].tolist()]
            return {"inputs": v2_inputs(drawn, schema)}, truth
        size *= 2


def chart_values() -> dict[str, Any]:
    """The chart's default values (helm/mainsail/values.yaml): e.g. the development service
    tokens of its `auth` Secret, which the rendered containers receive."""
    import yaml

    data: dict[str, Any] = yaml.safe_load((REPO / "helm" / "mainsail" / "values.yaml").read_text())
    return data
