"""Running the sidecar as its own process in the drift environment (stack, tests, demo).

The sidecar needs alibi-detect, which only the drift env has (numpy<2), so other environments
start it as `<drift python> -m mainsail.drift serve …`. Standard library only.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from mainsail.core.child import HttpChild

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


class SidecarProcess(HttpChild):
    """A sidecar subprocess; `start()` waits for `/healthz` (see `mainsail.core.child`)."""

    what = "the drift sidecar"
    error = SidecarError

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
        argv = sidecar_argv(
            drift_python(python), host=host, port=port, reference=reference, settings=settings
        ) + list(extra_args or [])
        super().__init__(argv, log, f"http://{host}:{port}", env)

    def start(self, timeout_s: float = 90.0) -> SidecarProcess:
        return super().start(timeout_s)
