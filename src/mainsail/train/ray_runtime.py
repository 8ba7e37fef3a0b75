"""Start (or join) Ray once per process, the way the config says (pipeline env only)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mainsail.config.train import RayConfig


def quiet_ray() -> None:
    """Keep Ray's start-up notices off the CLI: the notice that token authentication is on
    (it stays on: Ray's default for a new local cluster; only the log line is silenced) and Ray
    Data's own DeprecationWarnings (raised by its default context, not by our calls). Called
    before anything of Ray is imported or started."""
    import logging
    import warnings

    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
        logging.ERROR
    )
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray\.data\.context")


def ensure_ray(ray_cfg: RayConfig) -> int:
    """Initialise Ray (once per process, quietly) unless it already runs; return its CPUs."""
    quiet_ray()
    import ray

    if not ray.is_initialized():
        # The dashboard and log forwarding cost seconds and CPU on small machines; nothing
        # here reads them.
        os.environ.setdefault("RAY_TRAIN_ENABLE_STATE_ACTOR_RECONCILIATION", "0")
        kwargs: dict[str, object] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "configure_logging": False,
            "runtime_env": {
                "worker_process_setup_hook": "mainsail.train.ray_runtime.preload_worker_modules"
            },
        }
        if ray_cfg.address:
            ray.init(address=ray_cfg.address, **kwargs)  # type: ignore[arg-type]
        else:
            ray.init(num_cpus=ray_cfg.num_cpus, **kwargs)  # type: ignore[arg-type]
    return int(ray.cluster_resources().get("CPU", 1))


def preload_worker_modules() -> None:
    """Ray worker set-up hook: import pandas and scikit-learn once, in the worker's main
    thread, before it runs a task. A worker importing them from two threads at once (a task
    and Ray's own threads) can see a half-initialised pandas ("partially initialized module
    'pandas' has no attribute '_pandas_datetime_CAPI'"), which failed a tuning trial in CI."""
    import pandas  # noqa: F401
    import sklearn.base  # noqa: F401


def report_from_rank0(metrics: dict[str, Any], write: Callable[[Path], None]) -> None:
    """Inside a Ray Train worker: every rank reports `metrics`; rank 0 also hands back a
    checkpoint, the folder that `write(folder)` fills (the fitted model's files)."""
    import tempfile

    import ray.train

    if ray.train.get_context().get_world_rank() == 0:
        with tempfile.TemporaryDirectory() as tmp:
            write(Path(tmp))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    else:
        ray.train.report(metrics)


def ray_storage(local: Path, name: str = "run") -> RayStorage:
    """Where Ray Train and Ray Tune keep a fit's results and checkpoints (after `ensure_ray`).

    On Ray of one machine, the folder `local`. On a cluster of several nodes (a KubeRay
    cluster), every node must reach it, and a folder of the node that runs the driver is not
    reachable from the workers ("Check that all nodes in the cluster have read/write access to
    the configured storage path"): then the registry's S3 store, from the environment the chart
    gives every Ray pod (MAINSAIL_S3_ENDPOINT, MAINSAIL_S3_BUCKET, MAINSAIL_S3_ACCESS_KEY,
    MAINSAIL_S3_SECRET_KEY), under `ray-storage/<name>-<unique>/`; `RayStorage.cleanup` removes
    it when the results have been read.
    """
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) <= 1:
        local.mkdir(parents=True, exist_ok=True)
        return RayStorage(str(local.resolve()), None)
    from pyarrow import fs

    from mainsail.core import naming
    from mainsail.registry.store import s3_address

    endpoint = os.environ.get(naming.ENV_S3_ENDPOINT, "")
    access = os.environ.get("MAINSAIL_S3_ACCESS_KEY", "")
    secret = os.environ.get("MAINSAIL_S3_SECRET_KEY", "")
    if not (endpoint and access and secret):
        raise RuntimeError(
            f"Ray runs on {len(nodes)} nodes: Ray Train and Tune need a storage every node "
            f"reaches; set {naming.ENV_S3_ENDPOINT}, MAINSAIL_S3_ACCESS_KEY and "
            "MAINSAIL_S3_SECRET_KEY (the chart sets them on the Ray pods)"
        )
    address, secure = s3_address(endpoint)
    filesystem = fs.S3FileSystem(
        access_key=access,
        secret_key=secret,
        endpoint_override=address,
        scheme="https" if secure else "http",
        region=os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        allow_bucket_creation=True,
    )
    bucket = os.environ.get(naming.ENV_S3_BUCKET) or "mainsail-models"
    if filesystem.get_file_info(bucket).type == fs.FileType.NotFound:
        filesystem.create_dir(bucket)
    return RayStorage(f"{bucket}/ray-storage/{name}-{uuid.uuid4().hex[:12]}", filesystem)


@dataclass
class RayStorage:
    """A storage path for Ray's RunConfig, and its filesystem (None: the local one)."""

    path: str
    filesystem: Any

    def cleanup(self) -> None:
        """Remove what Ray wrote there (S3 only: local folders belong to their caller)."""
        if self.filesystem is not None:
            with contextlib.suppress(OSError):
                self.filesystem.delete_dir(self.path)
