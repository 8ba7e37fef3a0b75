"""Start and stop a feature server as a child process: Feast's (`feast serve`) or Mainsail's
(`python -m mainsail.features.api`, the same API behind a bearer token)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from mainsail.core import naming
from mainsail.features.errors import FeatureStoreError


def feast_executable() -> str:
    """The `feast` script of the running interpreter's environment."""
    candidate = Path(sys.executable).parent / "feast"
    return str(candidate) if candidate.exists() else "feast"


class FeatureServer:
    """`feast -c REPO serve` (`engine="feast"`) or Mainsail's server for the project config
    `config` with bearer `token` (`engine="mainsail"`) on host:port; `start()` waits for
    /health, `stop()` ends it.

    The server runs in its own process group (gunicorn master plus workers), so `stop()`
    ends exactly the processes it started.
    """

    def __init__(
        self,
        repo_dir: Path,
        host: str = "127.0.0.1",
        port: int = 6566,
        *,
        workers: int = 1,
        registry_ttl_s: int = 60,
        log_path: Path | None = None,
        max_requests: int = 0,
        engine: str = "feast",
        config: Path | None = None,
        token: str | None = None,
    ) -> None:
        if engine not in ("feast", "mainsail"):
            raise ValueError(f"engine {engine!r}: expected feast or mainsail")
        if engine == "mainsail" and (config is None or not token):
            raise ValueError("Mainsail's feature server needs the project config and a token")
        self.engine, self.config, self.token = engine, config, token
        self.repo_dir = repo_dir
        self.host = host
        self.port = port
        self.workers = workers
        self.registry_ttl_s = registry_ttl_s
        self.max_requests = max_requests
        self.log_path = log_path or repo_dir / "data" / "feature_server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return "feast serve" if self.engine == "feast" else "Mainsail's feature server"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        if self.engine == "mainsail":
            return [
                sys.executable,
                "-m",
                "mainsail.features.api",
                "--config",
                str(self.config),
                "--repo",
                str(self.repo_dir),
                "--host",
                self.host,
                "--port",
                str(self.port),
            ]
        return [
            feast_executable(),
            "-c",
            str(self.repo_dir),
            "serve",
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-w",
            str(self.workers),
            "-r",
            str(self.registry_ttl_s),
            # Feast's default recycles a worker every ~1000 requests; the new worker reloads the
            # registry on its first lookup (about a second), a latency spike a serving path
            # should not take. 0 disables recycling.
            "--max-requests",
            str(self.max_requests),
            "--no-access-log",
        ]

    def start(self, timeout_s: float = 90.0, warmup: dict[str, Any] | None = None) -> str:
        """Start the server and wait until /health answers 200; returns its URL.

        `warmup`, a /get-online-features body, is sent once before returning: the worker
        loads the registry and its lazy imports on the first lookup (about a second).
        """
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        env = dict(os.environ)
        headers = {}
        if self.token:  # through the environment: a command line is visible to `ps`
            env[naming.ENV_FEATURES_TOKEN] = self.token
            headers["authorization"] = f"Bearer {self.token}"
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=1.0, headers=headers) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise FeatureStoreError(
                        f"{self.name} exited with code {self.process.returncode}:\n"
                        f"{self.log_tail()}"
                    )
                try:
                    if client.get(f"{self.url}/health").status_code == 200:
                        if warmup is not None:
                            remaining = max(1.0, deadline - time.monotonic())
                            client.post(
                                f"{self.url}/get-online-features", json=warmup, timeout=remaining
                            )
                        return self.url
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)
        self.stop()
        raise FeatureStoreError(
            f"{self.name} did not become healthy on {self.url} within {timeout_s:g}s:\n"
            f"{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait(self) -> int:
        """Block until the server exits (for the foreground CLI command)."""
        assert self.process is not None, "start() first"
        return self.process.wait()

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM the server's process group, SIGKILL it if it does not exit in time."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        pgid = os.getpgid(proc.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            proc.wait(timeout=5)
        # Workers may outlive the master by a moment; make sure none stays behind.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)

    def __enter__(self) -> FeatureServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
