"""A child process with a log file and an HTTP readiness check, for tests, demos and benchmarks.

`start()` launches the command with its output appended to the log, waits until
`GET <url><ready_path>` answers 200 and otherwise stops it and raises the class's error with the
log's tail; `stop()` terminates it (kills after 10 s); it is a context manager. The drift
sidecar and the local Prometheus and Alertmanager use it. Standard library only: every
environment imports it. (The local stack has its own, with a state file that `mainsail down`
reads from another process.)
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["HttpChild"]


class HttpChild:
    """See the module docstring. Subclasses set `ready_path`, `what` and `error`."""

    ready_path = "/healthz"
    """Path that answers 200 once the process is ready."""
    what = "the process"
    """How error messages name it."""
    error: type[Exception] = RuntimeError
    """What `start()` raises when the process does not get ready."""

    def __init__(
        self, argv: list[str], log: Path, url: str, env: Mapping[str, str] | None = None
    ) -> None:
        self.argv = argv
        self.log = log
        self.url = url
        self.env = dict(env) if env is not None else None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> Self:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as handle:
            self.proc = subprocess.Popen(
                self.argv, stdout=handle, stderr=subprocess.STDOUT, env=self.env
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:  # exited: its log says why
                break
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        tail = self.log.read_text(errors="replace")[-3000:]
        raise self.error(f"{self.what} did not become ready at {self.url}; log {self.log}:\n{tail}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
