"""Run a step's Ray work on a KubeRay cluster (Ray Jobs API) or on local Ray: one code path.

A step function that uses Ray (training, tuning) is called through :func:`run_ray_work`:

- no cluster configured (`pipelines.kuberay.dashboard_url` unset): the function runs in this
  process and starts (or joins) local Ray as `train.ray` says;
- a cluster configured: the same function, with the same arguments, becomes the entrypoint of a
  Ray job submitted with `ray.job_submission.JobSubmissionClient`. The job's driver runs on the
  cluster head and joins the cluster (`train.ray.address = "auto"`), so its trials and workers
  spread over the cluster's CPU and GPU worker groups. Inputs and outputs travel through a
  folder both sides mount (`pipelines.kuberay.working_dir`): inputs are copied in, outputs
  copied back, and the function's JSON result is returned.

`python -m mainsail.pipeline.ray_jobs CALL_JSON` is the job entrypoint.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mainsail.config.pipelines import KubeRayConfig


class RayClusterError(RuntimeError):
    """The Ray job could not be submitted, failed, or timed out; the message says which."""


def _resolve(target: str) -> Callable[..., dict[str, Any]]:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ValueError(f"expected 'package.module:function', got {target!r}")
    fn = getattr(importlib.import_module(module_name), attr, None)
    if not callable(fn):
        raise ValueError(f"{target!r} is not a function")
    return fn


def _for_cluster(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Make the job's driver join the cluster instead of starting its own Ray."""
    out = dict(kwargs)
    if "config_json" in out:
        raw = json.loads(out["config_json"])
        ray_cfg = raw.setdefault("train", {}).setdefault("ray", {})
        ray_cfg["address"] = "auto"
        ray_cfg["num_cpus"] = None
        out["config_json"] = json.dumps(raw)
    return out


def auth_headers(kuberay: KubeRayConfig) -> dict[str, str]:
    """The bearer token header for a cluster with Ray token authentication, if a token is known."""
    token = os.environ.get(kuberay.token_env, "").strip()
    if not token:
        path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
        if path.is_file():
            token = path.read_text().strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, dirs_exist_ok=True)
    elif src.exists():
        shutil.copy2(src, dst)


def run_ray_work(
    target: str,
    kwargs: dict[str, Any],
    kuberay: KubeRayConfig,
    *,
    inputs: Iterable[str] = (),
    outputs: Iterable[str] = (),
) -> dict[str, Any]:
    """Call `target` ("module:function") with `kwargs` on local Ray or on the KubeRay cluster.

    `inputs` and `outputs` name the keyword arguments that are file or folder paths; for a
    cluster run they are staged through `kuberay.working_dir`. Returns the function's result.
    """
    if kuberay.dashboard_url is None:
        return _resolve(target)(**kwargs)
    return _submit_job(target, kwargs, kuberay, list(inputs), list(outputs))


#: How long a submission waits for the head's job agent to register.
AGENT_WAIT_S = 60.0


def _submit_job(
    target: str,
    kwargs: dict[str, Any],
    kuberay: KubeRayConfig,
    inputs: list[str],
    outputs: list[str],
) -> dict[str, Any]:
    from ray.job_submission import JobStatus, JobSubmissionClient

    if kuberay.working_dir is None:
        raise RayClusterError(
            "pipelines.kuberay.working_dir is required with a KubeRay cluster: a folder that "
            "the step pods and the Ray pods both mount, to exchange inputs and outputs"
        )
    missing = [k for k in [*inputs, *outputs] if k not in kwargs]
    if missing:
        raise ValueError(f"inputs/outputs {missing} are not arguments of the call")
    job_dir = Path(kuberay.working_dir) / f"job-{uuid.uuid4().hex[:12]}"
    job_dir.mkdir(parents=True)
    call = _for_cluster(kwargs)
    for key in inputs:
        staged = job_dir / "in" / key / Path(str(kwargs[key])).name
        _copy(Path(str(kwargs[key])), staged)
        call[key] = str(staged)
    for key in outputs:
        call[key] = str(job_dir / "out" / key / Path(str(kwargs[key])).name)
        Path(call[key]).parent.mkdir(parents=True, exist_ok=True)
    result_path = job_dir / "result.json"
    call_path = job_dir / "call.json"
    call_path.write_text(
        json.dumps({"target": target, "kwargs": call, "result": str(result_path)}, indent=2)
    )
    # A head that has just started answers on 8265 before its dashboard agent registers, and
    # Ray answers 500 "No available agent to submit job" meanwhile (seen at load average 20 on
    # a 2-core machine); that one answer is retried until the submission deadline.
    agent_deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            client = JobSubmissionClient(kuberay.dashboard_url, headers=auth_headers(kuberay))
            job_id = client.submit_job(
                entrypoint=f"python -m mainsail.pipeline.ray_jobs {call_path}",
                submission_id=f"mainsail-{job_dir.name}",
                metadata={"mainsail.io/target": target},
            )
            break
        except Exception as err:  # plain exceptions for HTTP and connection errors
            if "No available agent" in str(err) and time.monotonic() < agent_deadline:
                time.sleep(1.0)
                continue
            shutil.rmtree(job_dir, ignore_errors=True)
            raise RayClusterError(
                f"cannot submit a Ray job to {kuberay.dashboard_url}: {err}"
            ) from err
    deadline = time.monotonic() + kuberay.timeout_s
    status = client.get_job_status(job_id)
    while status not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        if time.monotonic() > deadline:
            client.stop_job(job_id)
            raise RayClusterError(f"Ray job {job_id} timed out after {kuberay.timeout_s:.0f}s")
        time.sleep(kuberay.poll_interval_s)
        status = client.get_job_status(job_id)
    if status != JobStatus.SUCCEEDED:
        logs = client.get_job_logs(job_id)
        raise RayClusterError(f"Ray job {job_id} ended {status}; last log lines:\n{logs[-4000:]}")
    for key in outputs:
        _copy(Path(call[key]), Path(str(kwargs[key])))
    result: dict[str, Any] = json.loads(result_path.read_text())
    result.setdefault("ray_job_id", job_id)
    shutil.rmtree(job_dir, ignore_errors=True)
    return result


def cluster_probe(config_json: str, out_path: str) -> dict[str, Any]:
    """Join Ray as `train.ray` says, run a few tasks, report where they ran (used by tests and
    by `mainsail doctor`-style checks to prove the Ray work reaches the cluster)."""
    import ray

    from mainsail.config import config_from_json
    from mainsail.train.ray_runtime import ensure_ray

    cfg = config_from_json(config_json)
    cpus = ensure_ray(cfg.train.ray)

    @ray.remote
    def square(x: int) -> int:
        return x * x

    squares = ray.get([square.remote(i) for i in range(4)])
    info = {
        "cpus": cpus,
        "squares": squares,
        "job_id": ray.get_runtime_context().get_job_id(),
        "gcs_address": ray.get_runtime_context().gcs_address,
    }
    Path(out_path).write_text(json.dumps(info))
    return info


def main(argv: list[str] | None = None) -> int:
    """Job entrypoint: run the call described by a JSON file and write its result."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m mainsail.pipeline.ray_jobs CALL_JSON", file=sys.stderr)
        return 2
    spec = json.loads(Path(args[0]).read_text())
    result = _resolve(spec["target"])(**spec["kwargs"])
    Path(spec["result"]).write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
