"""Run a step's Ray work on a KubeRay cluster (Ray Jobs API) or on local Ray: one code path.

A step function that uses Ray (training, tuning) is called through :func:`run_ray_work`:

- no cluster configured (`pipelines.kuberay.dashboard_url` unset): the function runs in this
  process and starts (or joins) local Ray as `train.ray` says;
- a cluster configured: the same function, with the same arguments, becomes the entrypoint of a
  Ray job submitted with `ray.job_submission.JobSubmissionClient`. The job's driver runs on the
  cluster head and joins the cluster (`train.ray.address = "auto"`), so its trials and workers
  spread over the cluster's CPU and GPU worker groups.

Inputs and outputs travel through a staging area that both sides reach, one folder per job:
by default the registry's S3 store (`s3://<registry.bucket>/<registry.prefix>ray-jobs/`; the
chart gives the step pods and the Ray pods the same S3 endpoint and keys, so no volume has to be
shared), or `pipelines.kuberay.working_dir`: an `s3://bucket/prefix` URL, or a folder both sides
mount (a ReadWriteMany volume). The step uploads the call (`call.json`) and its inputs; the job
downloads them, runs the function, uploads the outputs and the JSON result; the step downloads
those and removes the job's folder.

`python -m mainsail.pipeline.ray_jobs CALL` is the job entrypoint (`CALL`: the call's
`call.json`, a path or an `s3://` URL).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mainsail.config.pipelines import KubeRayConfig

if TYPE_CHECKING:
    from minio import Minio

    from mainsail.config.registry import RegistryConfig

#: Key prefix (under the registry's prefix) of the jobs' staging folders in the registry bucket.
STAGING_PREFIX = "ray-jobs/"
CALL_FILE = "call.json"
RESULT_FILE = "result.json"
#: Environment variable of the job's driver that carries the registry section (JSON, no keys).
REGISTRY_ENV = "MAINSAIL_RAY_JOB_REGISTRY"


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


# ------------------------------------------------------------------------------ staging


class Staging(Protocol):
    """One job's folder in the staging area; names inside it are relative (`in/<arg>/...`)."""

    url: str
    """Where the folder is, as the job entrypoint is given it (a path or an `s3://` URL)."""

    def put(self, local: Path, name: str) -> None:
        """Upload a file or a folder (recursively) as `name`; nothing when `local` is absent."""
        ...

    def get(self, name: str, local: Path) -> None:
        """Download `name` (a file or a folder) to `local`."""
        ...

    def write_text(self, name: str, text: str) -> None: ...

    def read_text(self, name: str) -> str: ...

    def remove(self) -> None:
        """Remove the whole folder."""
        ...


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, dirs_exist_ok=True)
    elif src.exists():
        shutil.copy2(src, dst)


class FolderStaging:
    """A folder that the step pods and the Ray pods both mount."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"{root}/"

    def put(self, local: Path, name: str) -> None:
        _copy(local, self.root / name)

    def get(self, name: str, local: Path) -> None:
        _copy(self.root / name, local)

    def write_text(self, name: str, text: str) -> None:
        (self.root / name).parent.mkdir(parents=True, exist_ok=True)
        (self.root / name).write_text(text)

    def read_text(self, name: str) -> str:
        return (self.root / name).read_text()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class S3Staging:
    """A key prefix in an S3 bucket, reached with the registry's endpoint and keys."""

    def __init__(self, client: Minio, bucket: str, prefix: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.url = f"s3://{bucket}/{self.prefix}"

    def put(self, local: Path, name: str) -> None:
        files = sorted(p for p in local.rglob("*") if p.is_file()) if local.is_dir() else [local]
        for path in files:
            if not path.is_file():
                continue
            rel = path.relative_to(local).as_posix() if local.is_dir() else ""
            key = f"{self.prefix}{name}/{rel}" if rel else f"{self.prefix}{name}"
            self.client.fput_object(self.bucket, key, str(path))

    def get(self, name: str, local: Path) -> None:
        base = f"{self.prefix}{name}"
        found = False
        for obj in self.client.list_objects(self.bucket, prefix=base, recursive=True):
            key = str(obj.object_name)
            if key == base:  # a file
                target = local
            elif key.startswith(base + "/"):
                target = local / key[len(base) + 1 :]
            else:  # another name that starts the same way
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            self.client.fget_object(self.bucket, key, str(target))
            found = True
        if not found:
            local.mkdir(parents=True, exist_ok=True)  # an output folder the job left empty

    def write_text(self, name: str, text: str) -> None:
        import io

        data = text.encode()
        self.client.put_object(
            self.bucket,
            f"{self.prefix}{name}",
            io.BytesIO(data),
            len(data),
            content_type="application/json",
        )

    def read_text(self, name: str) -> str:
        response = self.client.get_object(self.bucket, f"{self.prefix}{name}")
        try:
            return bytes(response.read()).decode()
        finally:
            response.close()
            response.release_conn()

    def remove(self) -> None:
        from minio.deleteobjects import DeleteObject

        keys = [
            DeleteObject(str(o.object_name))
            for o in self.client.list_objects(self.bucket, prefix=self.prefix, recursive=True)
        ]
        for error in self.client.remove_objects(self.bucket, keys):
            raise RayClusterError(f"cannot remove the staging object {error.name}: {error}")


def _s3_client(registry: dict[str, Any]) -> Minio:
    """A minio client for the registry section `registry` (its endpoint from the environment
    when the section names none, its keys from the variables it names)."""
    from mainsail.config.registry import RegistryConfig
    from mainsail.registry.store import ModelRegistry

    return ModelRegistry.from_config(RegistryConfig.model_validate(registry), os.environ).client


def _split_s3_url(url: str) -> tuple[str, str]:
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError(f"{url!r} names no bucket (s3://bucket/prefix)")
    return bucket, prefix.strip("/") + "/" if prefix.strip("/") else ""


def staging_for(
    kuberay: KubeRayConfig, registry: RegistryConfig | None, job: str
) -> tuple[Staging, dict[str, Any] | None]:
    """The staging folder of `job`, and the registry section the job needs to reach it (None
    for a shared folder)."""
    where = kuberay.working_dir
    if where is not None and not where.startswith("s3://"):
        return FolderStaging(Path(where) / job), None
    if registry is None:
        raise RayClusterError(
            "a KubeRay cluster needs a staging area for the job's inputs and outputs: give the "
            "step's registry section (run_ray_work(..., registry=cfg.registry)) or set "
            "pipelines.kuberay.working_dir to an s3:// URL or a folder both sides mount"
        )
    from mainsail.registry.store import registry_from_env

    section = registry_from_env(registry, os.environ)
    if where is None:
        bucket, prefix = section.bucket, f"{section.prefix}{STAGING_PREFIX}"
    else:
        bucket, prefix = _split_s3_url(where)
    record = section.model_dump(mode="json", exclude={"cache_dir"})
    return S3Staging(_s3_client(record), bucket, f"{prefix}{job}/"), record


def _open_staging(call_url: str) -> tuple[Staging, dict[str, Any]]:
    """The staging folder and the call record of the job entrypoint's argument.

    For S3, the registry section that reaches the bucket comes in MAINSAIL_RAY_JOB_REGISTRY (the
    submitter sets it in the job's runtime env; the call itself lies in the bucket). Each side
    reaches S3 its own way: this environment's MAINSAIL_S3_ENDPOINT (what the chart sets on the
    Ray pods) wins over the endpoint the submitter used.
    """
    if not call_url.startswith("s3://"):
        path = Path(call_url)
        return FolderStaging(path.parent), json.loads(path.read_text())
    from mainsail.core import naming

    registry = json.loads(os.environ.get(REGISTRY_ENV) or "null")
    if not isinstance(registry, dict):
        raise RayClusterError(f"{call_url} is on S3 but {REGISTRY_ENV} names no registry section")
    if os.environ.get(naming.ENV_S3_ENDPOINT):
        registry["endpoint"] = None
    bucket, prefix = _split_s3_url(call_url.rsplit("/", 1)[0])
    staging = S3Staging(_s3_client(registry), bucket, prefix)
    return staging, json.loads(staging.read_text(CALL_FILE))


def run_ray_work(
    target: str,
    kwargs: dict[str, Any],
    kuberay: KubeRayConfig,
    *,
    inputs: Iterable[str] = (),
    outputs: Iterable[str] = (),
    registry: RegistryConfig | None = None,
) -> dict[str, Any]:
    """Call `target` ("module:function") with `kwargs` on local Ray or on the KubeRay cluster.

    `inputs` and `outputs` name the keyword arguments that are file or folder paths; for a
    cluster run they travel through the staging area (see the module's docstring), which is in
    `registry`'s S3 store unless `kuberay.working_dir` names another. Returns the function's
    result.
    """
    if kuberay.dashboard_url is None:
        return _resolve(target)(**kwargs)
    return _submit_job(target, kwargs, kuberay, list(inputs), list(outputs), registry)


#: How long a submission waits for the head's job agent to register.
AGENT_WAIT_S = 60.0


def _submit_job(
    target: str,
    kwargs: dict[str, Any],
    kuberay: KubeRayConfig,
    inputs: list[str],
    outputs: list[str],
    registry: RegistryConfig | None,
) -> dict[str, Any]:
    from ray.job_submission import JobStatus, JobSubmissionClient

    missing = [k for k in [*inputs, *outputs] if k not in kwargs]
    if missing:
        raise ValueError(f"inputs/outputs {missing} are not arguments of the call")
    job = f"job-{uuid.uuid4().hex[:12]}"
    staging, record = staging_for(kuberay, registry, job)
    call: dict[str, Any] = {
        "target": target,
        "kwargs": _for_cluster(kwargs),
        "inputs": {k: f"in/{k}/{Path(str(kwargs[k])).name}" for k in inputs},
        "outputs": {k: f"out/{k}/{Path(str(kwargs[k])).name}" for k in outputs},
        "registry": record,
    }
    try:
        for key, name in call["inputs"].items():
            staging.put(Path(str(kwargs[key])), name)
        staging.write_text(CALL_FILE, json.dumps(call, indent=2))
    except Exception as err:
        staging.remove()
        raise RayClusterError(f"cannot stage the job's inputs in {staging.url}: {err}") from err
    env_vars = {REGISTRY_ENV: json.dumps(record)} if record else {}
    # A head that has just started answers on 8265 before its dashboard agent registers, and
    # Ray answers 500 "No available agent to submit job" meanwhile (seen at load average 20 on
    # a 2-core machine); that one answer is retried until the submission deadline.
    agent_deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            client = JobSubmissionClient(kuberay.dashboard_url, headers=auth_headers(kuberay))
            job_id = client.submit_job(
                entrypoint=f"python -m mainsail.pipeline.ray_jobs {staging.url}{CALL_FILE}",
                submission_id=f"mainsail-{job}",
                metadata={"mainsail.io/target": target},
                runtime_env={"env_vars": env_vars} if env_vars else None,
            )
            break
        except Exception as err:  # plain exceptions for HTTP and connection errors
            if "No available agent" in str(err) and time.monotonic() < agent_deadline:
                time.sleep(1.0)
                continue
            staging.remove()
            raise RayClusterError(
                f"cannot submit a Ray job to {kuberay.dashboard_url}: {err}"
            ) from err
    deadline = time.monotonic() + kuberay.timeout_s
    status = client.get_job_status(job_id)
    while status not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        if time.monotonic() > deadline:
            client.stop_job(job_id)
            staging.remove()
            raise RayClusterError(f"Ray job {job_id} timed out after {kuberay.timeout_s:.0f}s")
        time.sleep(kuberay.poll_interval_s)
        status = client.get_job_status(job_id)
    if status != JobStatus.SUCCEEDED:
        logs = client.get_job_logs(job_id)
        staging.remove()
        raise RayClusterError(f"Ray job {job_id} ended {status}; last log lines:\n{logs[-4000:]}")
    for key, name in call["outputs"].items():
        staging.get(name, Path(str(kwargs[key])))
    result: dict[str, Any] = json.loads(staging.read_text(RESULT_FILE))
    result.setdefault("ray_job_id", job_id)
    staging.remove()
    return result


def cluster_probe(config_json: str, out_path: str, inputs_dir: str | None = None) -> dict[str, Any]:
    """Join Ray as `train.ray` says, run a few tasks, report where they ran and which files it
    was given in `inputs_dir` (used by tests to prove that the Ray work reaches the cluster and
    that inputs and outputs travel)."""
    import ray

    from mainsail.config import config_from_json
    from mainsail.train.ray_runtime import ensure_ray

    cfg = config_from_json(config_json)
    cpus = ensure_ray(cfg.train.ray)

    @ray.remote
    def square(x: int) -> int:
        return x * x

    squares = ray.get([square.remote(i) for i in range(4)])
    info: dict[str, Any] = {
        "cpus": cpus,
        "squares": squares,
        "job_id": ray.get_runtime_context().get_job_id(),
        "gcs_address": ray.get_runtime_context().gcs_address,
        "node_resources": [
            {"ip": n["NodeManagerAddress"], "resources": n["Resources"]}
            for n in ray.nodes()
            if n["Alive"]
        ],
    }
    if inputs_dir is not None:
        root = Path(inputs_dir)
        info["inputs"] = {
            p.relative_to(root).as_posix(): p.read_text()[:200]
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }
    Path(out_path).write_text(json.dumps(info))
    return info


def main(argv: list[str] | None = None) -> int:
    """Job entrypoint: fetch the call and its inputs, run it, put back its outputs and result."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m mainsail.pipeline.ray_jobs CALL", file=sys.stderr)
        return 2
    staging, spec = _open_staging(args[0])
    kwargs = dict(spec["kwargs"])
    with tempfile.TemporaryDirectory(prefix="mainsail-ray-job-") as tmp:
        local = Path(tmp)
        for key, name in spec.get("inputs", {}).items():
            staging.get(name, local / name)
            kwargs[key] = str(local / name)
        for key, name in spec.get("outputs", {}).items():
            (local / name).parent.mkdir(parents=True, exist_ok=True)
            kwargs[key] = str(local / name)
        result = _resolve(spec["target"])(**kwargs)
        for key, name in spec.get("outputs", {}).items():
            staging.put(Path(kwargs[key]), name)
    staging.write_text(RESULT_FILE, json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
