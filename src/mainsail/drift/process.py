"""Running the sidecar as its own process in the drift environment (stack, tests, demo).

The sidecar needs alibi-detect, which only the drift env has (numpy<2), so other environments
start it as `<drift python> -m mainsail.drift serve …`. Standard library only.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

__all__ = ["SidecarError", "SidecarProcess", "drift_python", "sidecar_argv"]


class SidecarError(RuntimeError):
    """The sidecar could not be found or started; the message says why and where the log is."""


def drift_python(hint: Path | None = None) -> Path:
    """The drift env's python: `hint`, else `.venv/drift` beside the running venv or in cwd."""
    candidates = [hint] if hint else []
    candidates += [
        Path(sys.prefix).parent / "drift" / "bin" / "python",
        Path.cwd() / ".venv" / "drift" / "bin" / "python",
        Path(__file__).resolve().parents[3] / ".venv" / "drift" / "bin" / "python",
    ]
    for path in candidates:
        if path is not None and path.exists():
            return path
    raise SidecarError(
        "the drift env's python was not found (.venv/drift/bin/python); build it with `make envs`"
    )


def sidecar_argv(
    python: Path,
    *,
    host: str,
    port: int,
    reference: str,
    config: Path | None = None,
    settings: Mapping[str, object] | None = None,
) -> list[str]:
    argv = [str(python), "-m", "mainsail.drift", "serve", "--host", host, "--port", str(port)]
    argv += ["--reference", reference]
    if config is not None:
        argv += ["--config", str(config)]
    for key, value in (settings or {}).items():
        argv += ["--set", f"{key}={value}"]
    return argv


class SidecarProcess:
    """A sidecar subprocess; `start()` waits for `/healthz`."""

    def __init__(
        self,
        *,
        reference: str,
        port: int,
        log: Path,
        host: str = "127.0.0.1",
        settings: Mapping[str, object] | None = None,
        python: Path | None = None,
        env: Mapping[str, str] | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.url = f"http://{host}:{port}"
        self.argv = sidecar_argv(
            drift_python(python), host=host, port=port, reference=reference, settings=settings
        ) + list(extra_args or [])
        self.log = log
        self.env = dict(env) if env is not None else None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 90.0) -> SidecarProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as handle:
            self.proc = subprocess.Popen(
                self.argv, stdout=handle, stderr=subprocess.STDOUT, env=self.env
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        tail = self.log.read_text(errors="replace")[-3000:]
        raise SidecarError(
            f"the drift sidecar did not start at {self.url}; log {self.log}:\n{tail}"
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> SidecarProcess:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
