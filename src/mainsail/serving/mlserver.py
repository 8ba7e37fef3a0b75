"""MLServer model repositories and server processes (standard library only; every env).

`write_repository()` lays out a folder that `mlserver start` serves: a server-wide
settings.json and one sub-folder per model with its model-settings.json. `MLServerProcess`
starts `<serving venv>/bin/mlserver start <folder>` on free ports, waits for readiness (with a
timeout and the log tail in the error), and stops exactly the process it started.

Parallel workers — why MLServer 1.7.1 with default settings fails every request here:
with `parallel_workers >= 1` each inference worker is a spawned process whose `run()` calls
`install_uvloop_event_loop()` and then `asyncio.get_event_loop()` (to ignore signals) *before*
any loop exists. uvloop 0.22 rewrote its (now deprecated) `EventLoopPolicy` on top of
`AbstractEventLoopPolicy`, whose `get_event_loop()` raises "There is no current event loop"
instead of creating one as asyncio's default policy (and uvloop <= 0.21) does. The worker dies
at start-up, and every request routed to it fails. Two settings work, both shipped and tested:
`uvloop<0.22` in requirements/serving.in (workers start), and `parallel_workers: 0`, our
default, which scores in the server process — fastest for small tabular models on few cores,
and immune to the uvloop change.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from mainsail.core.ports import free_port

if TYPE_CHECKING:
    from mainsail.config.features import FeaturesConfig
    from mainsail.config.registry import RegistryConfig
    from mainsail.config.serving import ServingConfig

__all__ = [
    "MLServerError",
    "MLServerProcess",
    "ServedModel",
    "free_port",
    "registry_model",
    "server_settings",
    "write_repository",
]


class MLServerError(RuntimeError):
    """MLServer could not be started or did not get ready; the message holds the log tail."""


@dataclass(frozen=True)
class ServedModel:
    """One model of a repository."""

    name: str
    """MLServer model name (the URL segment /v2/models/<name>)."""
    implementation: str = "mainsail.serving.runtime.MainsailRuntime"
    """Runtime class import path."""
    uri: str | None = None
    """Artifact folder or file (absolute, or relative to the model's folder)."""
    version: str | None = None
    """Model version reported by MLServer."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """`parameters.extra` (see `mainsail.serving.runtime.RuntimeOptions`)."""
    parallel_workers: int | None = None
    """Per-model override of the server's `parallel_workers` (None = server setting)."""

    def settings(self) -> dict[str, Any]:
        """The model-settings.json mapping."""
        parameters: dict[str, Any] = {}
        if self.uri is not None:
            parameters["uri"] = self.uri
        if self.version is not None:
            parameters["version"] = self.version
        if self.extra:
            parameters["extra"] = dict(self.extra)
        body: dict[str, Any] = {"name": self.name, "implementation": self.implementation}
        if parameters:
            body["parameters"] = parameters
        if self.parallel_workers is not None:
            body["parallel_workers"] = self.parallel_workers
        return body


def registry_model(
    name: str,
    *,
    endpoint: str,
    registry: RegistryConfig,
    serving: ServingConfig,
    ref: str = "champion",
    model: str | None = None,
    secure: bool | None = None,
    features: FeaturesConfig | None = None,
) -> ServedModel:
    """A model served from the registry (`ref`: alias, version or `latest`) with the runtime
    options of the project's `serving` section. Credentials stay in the environment variables
    that `registry` names; the MLServer process must have them."""
    extra: dict[str, Any] = {
        "registry": {
            "endpoint": endpoint,
            "bucket": registry.bucket,
            "prefix": registry.prefix,
            "secure": registry.secure if secure is None else secure,
            "model": model or name,
            "ref": ref,
            "access_key_env": registry.access_key_env,
            "secret_key_env": registry.secret_key_env,
            "cache_dir": str(registry.cache_dir),
        },
        **serving_options(serving, features),
    }
    return ServedModel(name, extra=extra)


def serving_options(
    serving: ServingConfig,
    features: FeaturesConfig | None = None,
    feature_server_url: str | None = None,
) -> dict[str, Any]:
    """The runtime options of the project's `serving` section, as model-settings `extra`.

    With the `features` section, requests by entity key follow its online policy (`fallback`,
    `enforce_freshness`). `feature_server_url` is the default feature server (the local stack's
    `feast serve`) when `serving.feature_server_url` is not set.
    """
    options: dict[str, Any] = {
        "max_rows": serving.max_rows,
        "feature_timeout_s": serving.feature_timeout_s,
        "drift_queue_size": serving.drift_queue_size,
        "drift_timeout_s": serving.drift_timeout_s,
    }
    url = serving.feature_server_url or feature_server_url
    if url:
        options["feature_server_url"] = url
    if features is not None:
        options["feature_fallback"] = features.fallback
        options["enforce_freshness"] = features.enforce_freshness
    if serving.drift_url:
        options["drift_url"] = serving.drift_url
    return options


def server_settings(
    folder: Path,
    *,
    http_port: int,
    grpc_port: int,
    metrics_port: int,
    parallel_workers: int = 0,
    host: str = "127.0.0.1",
) -> dict[str, Any]:
    """Server-wide settings.json for a repository in `folder`.

    Metrics and worker environments get folders of their own: MLServer's defaults put them in
    the working directory, where two servers would share one Prometheus multiprocess dir.
    """
    return {
        "debug": False,
        "host": host,
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "parallel_workers": parallel_workers,
        "model_repository_root": str(folder),
        "load_models_at_startup": True,
        "metrics_dir": str(folder / ".metrics"),
        "environments_dir": str(folder / ".envs"),
    }


def write_repository(
    folder: Path, models: Sequence[ServedModel], settings: Mapping[str, Any]
) -> Path:
    """Write settings.json and `<name>/model-settings.json` for each model into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".metrics").mkdir(exist_ok=True)
    (folder / "settings.json").write_text(json.dumps(dict(settings), indent=2) + "\n")
    for model in models:
        sub = folder / model.name
        sub.mkdir(exist_ok=True)
        (sub / "model-settings.json").write_text(json.dumps(model.settings(), indent=2) + "\n")
    return folder


def find_mlserver(explicit: str | Path | None = None) -> Path:
    """`mlserver` executable: `explicit`, else beside this Python, else the repo's serving venv."""
    candidates = [Path(explicit)] if explicit else []
    candidates += [
        Path(sys.executable).parent / "mlserver",
        Path(__file__).resolve().parents[3] / ".venv" / "serving" / "bin" / "mlserver",
    ]
    for path in candidates:
        if path.is_file():
            return path
    raise MLServerError(
        f"mlserver executable not found (looked at {', '.join(map(str, candidates))}); "
        "build the serving env (make envs)"
    )


class MLServerProcess:
    """`mlserver start` for a repository folder, on the ports in its settings.json."""

    def __init__(
        self,
        folder: Path,
        *,
        mlserver: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 90.0,
    ) -> None:
        self.folder = Path(folder)
        settings = json.loads((self.folder / "settings.json").read_text())
        self.host = str(settings.get("host", "127.0.0.1"))
        self.http_port = int(settings["http_port"])
        self.grpc_port = int(settings["grpc_port"])
        self.metrics_port = int(settings["metrics_port"])
        self.binary = find_mlserver(mlserver)
        self.env = dict(env) if env is not None else None
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the REST API."""
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        """`host:port` of the gRPC API."""
        return f"{self.host}:{self.grpc_port}"

    @property
    def log_path(self) -> Path:
        """The server's combined stdout/stderr."""
        return self.folder / "mlserver.log"

    def start(self, models: Sequence[str] = ()) -> MLServerProcess:
        """Start and wait until the server and every model in `models` are ready.

        Idempotent: a running server is left as it is (so `with proc.start(...)` is safe).
        """
        if self.alive():
            return self
        env = dict(os.environ if self.env is None else self.env)
        log = self.log_path.open("ab")
        # MLServer's own CLI behind Mainsail's guards (mainsail.serving.guard), with the
        # Python of the venv that holds this `mlserver`.
        python = self.binary.parent / "python"
        try:
            self.proc = subprocess.Popen(
                [str(python), "-m", "mainsail.serving.guard", "start", str(self.folder)],
                cwd=self.folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()
        try:
            self._wait(["/v2/health/ready", *(f"/v2/models/{m}/ready" for m in models)])
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self, paths: Sequence[str]) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.startup_timeout
        pending = list(paths)
        while pending:
            if self.proc.poll() is not None:
                raise MLServerError(
                    f"mlserver exited with code {self.proc.returncode} during start-up; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise MLServerError(
                    f"mlserver at {self.url} not ready after {self.startup_timeout:.0f}s "
                    f"(waiting for {pending[0]}); log {self.log_path}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.url + pending[0], timeout=2) as resp:
                    if resp.status == 200:
                        pending.pop(0)
                        continue
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)

    def alive(self) -> bool:
        """Whether the process is running."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the server (and its worker processes, same session), SIGKILL on timeout."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        # MLServer's parallel workers share the server's process group (its own session).
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of the log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> MLServerProcess:
        return self if self.alive() else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
