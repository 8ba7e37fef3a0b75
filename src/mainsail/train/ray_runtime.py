"""Start (or join) Ray once per process, the way the config says (pipeline env only)."""

from __future__ import annotations

import os
from collections.abc import Callable
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
