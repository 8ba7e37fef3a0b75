"""kfp.local's DockerRunner for the Mainsail pipelines: every step in the pipeline image.

`mainsail run CONFIG --runner kfp-docker` (and `pipeline.runner.run_local(..., runner="docker")`)
runs the very pipeline the cluster runs, each task as a container of `pipelines.image` on the
container engine, reading and writing the same S3 registry as a SubprocessRunner run.

The engine is the one `DOCKER_HOST` names, else the project's own dockerd
(`scripts/docker.sh up`, socket `~/.cache/mainsail/docker/docker.sock`; then `DOCKER_HOST` is
set in this process, for kfp's own client). Each step container:

- runs as the invoking user's uid:gid, so what it writes into bind-mounted host folders (the
  pipeline root, which kfp.local creates as that user, and the Feast repository) stays that
  user's and it reads what that user reads (the image's 10001 could not write there); read-only
  root filesystem, all capabilities dropped, no privilege escalation, /tmp a tmpfs (HOME=/tmp);
- uses the host's network, so the registry and the local stack on 127.0.0.1 are reached at the
  same addresses as from a SubprocessRunner run (the config, hence the cache keys and the
  lineage, are the same);
- sees the config's host paths at the same paths: kfp mounts the pipeline root; the data file
  (read-only), the Feast repository and the registry cache are mounted here;
- is kept until its exit code is read, then removed (`exit_codes_read`): kfp's own
  `run_docker_container` starts containers with `auto_remove=True` and reads a container already
  removed when it asks for the exit code as exit 0, so a step that failed fast "succeeded" and
  the run broke later, at a downstream task, with a message naming the wrong thing;
- gets the registry's S3 keys (and the router token, the Ray token) as environment variables,
  from the variables the config names, and the host's numeric-library settings
  (`NUMERIC_ENV_PREFIXES`); with no `registry.endpoint` nor MAINSAIL_S3_ENDPOINT, the local
  stack's SeaweedFS endpoint and keys, as `mainsail.registry.open_registry` uses them.

Pipeline environment only (kfp, docker-py); imported by pipeline.runner when this runner is chosen.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kfp.local import DockerRunner

    from mainsail.config import ProjectConfig

#: Where scripts/docker.sh keeps the project's own engine (socket, data root, log).
DOCKER_DIR_ENV = "MAINSAIL_DOCKER_DIR"
#: Host variables that steer numeric libraries (BLAS kernel and threads, hashing): passed into
#: the step containers, as a SubprocessRunner step inherits them, so both runners compute the
#: same numbers (e.g. OPENBLAS_CORETYPE pins the kernel that OpenBLAS would otherwise pick per
#: CPU, and kernels differ in the last bits).
NUMERIC_ENV_PREFIXES = ("OPENBLAS_", "OMP_", "MKL_", "NUMEXPR_", "PYTHONHASHSEED")


class ContainerEngineError(RuntimeError):
    """No container engine answers, or it lacks the image; the message says what to do."""


def project_socket() -> Path:
    """The socket of the project's own dockerd (scripts/docker.sh)."""
    base = os.environ.get(DOCKER_DIR_ENV) or str(Path.home() / ".cache" / "mainsail" / "docker")
    return Path(base) / "docker.sock"


def docker_host() -> str | None:
    """`DOCKER_HOST` when set, else the project's engine socket when it exists, else None
    (docker-py's default, /var/run/docker.sock)."""
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    socket = project_socket()
    return f"unix://{socket}" if socket.exists() else None


def engine_client(timeout_s: float = 10.0) -> Any:
    """A docker-py client of the engine; `ContainerEngineError` naming the engine when none
    answers."""
    import docker

    host = docker_host()
    where = host or "the default socket (/var/run/docker.sock)"
    try:
        client = docker.DockerClient(base_url=host, timeout=int(timeout_s)) if host else None
        client = client or docker.from_env(timeout=int(timeout_s))
        client.ping()
    except Exception as err:  # docker-py raises DockerException, requests' and OS errors
        raise ContainerEngineError(
            f"no container engine answers at {where} ({err}); start the project's engine with "
            "`make engine` (scripts/docker.sh up) or set DOCKER_HOST"
        ) from None
    return client


def _registry_access(cfg: ProjectConfig) -> tuple[str, dict[str, str]]:
    """The registry endpoint the steps use and the S3 keys to hand them."""
    from mainsail.core import naming

    reg = cfg.registry
    endpoint = reg.endpoint or os.environ.get(naming.ENV_S3_ENDPOINT)
    if endpoint:
        # Keys missing here fail in the step with the registry's own message naming them.
        names = (reg.access_key_env, reg.secret_key_env)
        return endpoint, {name: os.environ[name] for name in names if os.environ.get(name)}
    from mainsail.registry.seaweedfs import local_credentials

    access, secret = local_credentials(reg, cfg.stack.data_dir.resolve())
    endpoint = f"{cfg.stack.host}:{cfg.stack.s3_port}"
    return endpoint, {reg.access_key_env: access, reg.secret_key_env: secret}


def docker_runner(cfg: ProjectConfig) -> tuple[ProjectConfig, DockerRunner]:
    """The config the steps get (registry endpoint filled in) and a DockerRunner set up as the
    module docstring says. Raises `ContainerEngineError` when the engine does not answer or
    lacks the pipeline image."""
    import docker
    from docker.types import Mount
    from kfp import local

    from mainsail.features.training import feast_enabled

    image = cfg.pipelines.image
    client = engine_client()
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise ContainerEngineError(
            f"the engine at {docker_host() or 'the default socket'} has no image {image}: build "
            "it with `make images` (or set pipelines.image to one it has)"
        ) from None
    finally:
        client.close()
    # kfp's task handler makes its own client with docker.from_env(), which reads DOCKER_HOST.
    host = docker_host()
    if host:
        os.environ["DOCKER_HOST"] = host
    cfg = cfg.model_copy(deep=True)
    cfg.registry.endpoint, env = _registry_access(cfg)
    for name in (cfg.stack.router.token_env, cfg.pipelines.kuberay.token_env):
        if os.environ.get(name):
            env[name] = os.environ[name]
    env.update({k: v for k, v in os.environ.items() if k.startswith(NUMERIC_ENV_PREFIXES)})
    mounts = [Mount(str(cfg.data.path), str(cfg.data.path), type="bind", read_only=True)]
    cache = cfg.registry.cache_dir.resolve()
    cache.mkdir(parents=True, exist_ok=True)
    cfg.registry.cache_dir = cache
    mounts.append(Mount(str(cache), str(cache), type="bind"))
    if feast_enabled(cfg):
        repo = cfg.features.repo_dir.resolve()
        repo.mkdir(parents=True, exist_ok=True)
        mounts.append(Mount(str(repo), str(repo), type="bind"))
    runner = local.DockerRunner(
        user=f"{os.getuid()}:{os.getgid()}",
        read_only=True,
        tmpfs={"/tmp": "rw,exec"},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        network_mode="host",
        mounts=mounts,
        environment=env,
    )
    return cfg, runner


def _run_container_and_read_exit_code(
    client: Any, image: str, command: list[str], volumes: dict[str, Any], **run_args: Any
) -> int:
    """kfp's `run_docker_container` without its race: the container is not auto-removed, so its
    exit code is read from the engine whatever the timing, then the container is removed. The
    image is not pulled (no registry is assumed; `docker_runner` checked the engine has it)."""
    run_args.pop("auto_remove", None)
    print(f"Found image {image!r}\n")  # kfp's own line: the step log says which image ran it
    container = client.containers.run(
        image=image,
        command=command,
        detach=True,
        stdout=True,
        stderr=True,
        volumes=volumes,
        auto_remove=False,
        **run_args,
    )
    try:
        for line in container.logs(stream=True, follow=True):
            print(line.decode(errors="replace"), end="")
        return int(container.wait()["StatusCode"])
    finally:
        container.remove(force=True)


@contextlib.contextmanager
def exit_codes_read() -> Iterator[None]:
    """Within this block kfp.local's DockerRunner runs each step with
    `_run_container_and_read_exit_code` (kfp's task handler calls the module-level
    `run_docker_container`; it is put back on exit)."""
    from kfp.local import docker_task_handler

    original = docker_task_handler.run_docker_container
    docker_task_handler.run_docker_container = _run_container_and_read_exit_code
    try:
        yield
    finally:
        docker_task_handler.run_docker_container = original
