"""Start and stop the Feast feature server (`feast serve`) as a child process."""

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

from mainsail.features.errors import FeatureStoreError


def feast_executable() -> str:
    """The `feast` script of the running interpreter's environment."""
    candidate = Path(sys.executable).parent / "feast"
    return str(candidate) if candidate.exists() else "feast"


class FeatureServer:
    """`feast -c REPO serve` on host:port; `start()` waits for /health, `stop()` ends it.

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
    ) -> None:
        self.repo_dir = repo_dir
        self.host = host
        self.port = port
        self.workers = workers
        self.registry_ttl_s = registry_ttl_s
        self.max_requests = max_requests
        self.log_path = log_path or repo_dir / "data" / "feature_server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
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
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise FeatureStoreError(
                        f"feast serve exited with code {self.process.returncode}:\n"
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
            f"feast serve did not become healthy on {self.url} within {timeout_s:g}s:\n"
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
