"""Start, watch and stop the local stack's processes; the state file records what was started.

A process is described by a :class:`ProcessSpec`. Each runs in its own session (process group),
so `down` can stop it together with any workers it forked, and it survives the CLI that started
it. The state file keeps pid, process start time, port and health URL of every process; `down`
stops exactly those processes, and checks the start time first so that a pid reused by an
unrelated process is never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"


class StackError(RuntimeError):
    """The stack cannot be started, inspected or stopped; the message says which process and why."""


@dataclass(frozen=True)
class ProcessSpec:
    """One process of the local stack."""

    name: str
    """Unique name shown by `mainsail status` (e.g. `mlserver-champion`)."""
    argv: list[str]
    """Command line."""
    env: dict[str, str] = field(default_factory=dict)
    """Variables added to the current environment."""
    port: int | None = None
    """Main port (shown by `status`, checked free before start)."""
    health_url: str | None = None
    """URL that answers 200 once the process is ready; None = ready once started."""
    extra_ports: tuple[int, ...] = ()
    """Further ports the process binds (checked free before start)."""
    cwd: str | None = None
    """Working directory; the stack data dir when None."""
    startup_timeout_s: float | None = None
    """Override of the stack's start-up timeout for this process."""


@dataclass
class RunningProcess:
    """A started process as recorded in the state file."""

    name: str
    pid: int
    create_time: float
    port: int | None
    health_url: str | None
    log: str
    argv: list[str]
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    def spec(self) -> ProcessSpec:
        """The spec this process was started from (for a restart)."""
        return ProcessSpec(
            name=self.name,
            argv=self.argv,
            env=self.env,
            port=self.port,
            health_url=self.health_url,
            cwd=self.cwd,
        )

    def alive(self) -> bool:
        """Whether this exact process (pid and start time) still runs."""
        import psutil

        try:
            proc = psutil.Process(self.pid)
            return (
                abs(proc.create_time() - self.create_time) < 0.5
                and proc.status() != psutil.STATUS_ZOMBIE
            )
        except psutil.Error:
            return False


def port_in_use(host: str, port: int) -> bool:
    """Whether something listens on host:port (or the port cannot be bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def probe(url: str, timeout: float = 1.0) -> int | None:
    """HTTP status of a GET to `url`, or None when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (urllib.error.URLError, OSError, ValueError):
        return None


def read_state(data_dir: Path) -> list[RunningProcess]:
    """The processes recorded in the state file (empty when there is none)."""
    path = data_dir / STATE_FILE
    if not path.exists():
        return []
    try:
        raw = json.loads(path.read_text())
        return [RunningProcess(**item) for item in raw["processes"]]
    except (ValueError, KeyError, TypeError) as err:
        raise StackError(f"state file {path} is unreadable ({err}); remove it by hand") from None


def write_state(data_dir: Path, processes: list[RunningProcess]) -> None:
    """Write the state file atomically (a crash never leaves half a file), mode 0600."""
    from mainsail.core.files import write_private

    # 0600: the processes' environments hold secrets (S3 keys, tokens).
    payload = {"written_at": time.time(), "processes": [asdict(p) for p in processes]}
    write_private(data_dir / STATE_FILE, json.dumps(payload, indent=2))


def start(spec: ProcessSpec, data_dir: Path) -> RunningProcess:
    """Launch `spec` detached (own session), logging to `<data_dir>/logs/<name>.log`."""
    import psutil

    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{spec.name}.log"
    env = {**os.environ, **spec.env}
    with log_path.open("ab") as log:
        try:
            proc = subprocess.Popen(
                spec.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=spec.cwd or data_dir,
                env=env,
                start_new_session=True,
            )
        except OSError as err:
            raise StackError(f"{spec.name}: cannot run {spec.argv[0]!r}: {err}") from None
    try:
        created = psutil.Process(proc.pid).create_time()
    except psutil.Error:
        created = time.time()
    return RunningProcess(
        name=spec.name,
        pid=proc.pid,
        create_time=created,
        port=spec.port,
        health_url=spec.health_url,
        log=str(log_path),
        argv=spec.argv,
        cwd=spec.cwd or str(data_dir),
        env=spec.env,
    )


def wait_healthy(running: RunningProcess, timeout: float) -> None:
    """Wait until the health URL answers 200; raise with the log tail if it dies or times out."""
    deadline = time.monotonic() + timeout
    last: int | None = None
    while True:
        if not running.alive():
            raise StackError(
                f"{running.name} exited during start-up; log {running.log}:\n"
                f"{log_tail(running.log)}"
            )
        if running.health_url is None:
            return
        last = probe(running.health_url)
        if last == 200:
            return
        if time.monotonic() > deadline:
            seen = "no answer" if last is None else f"HTTP {last}"
            raise StackError(
                f"{running.name} not healthy after {timeout:.0f}s ({running.health_url}: {seen}); "
                f"log {running.log}:\n{log_tail(running.log)}"
            )
        time.sleep(0.2)


def stop(running: RunningProcess, timeout: float) -> str:
    """SIGTERM the process group, SIGKILL after `timeout`; returns what happened."""
    import psutil

    if not running.alive():
        return "not running"
    try:
        pgid = os.getpgid(running.pid)
    except ProcessLookupError:
        return "not running"
    # The process was started as a session leader, so its group id is its pid; signalling the
    # group also stops workers it forked (MLServer's inference pool, weed's sub-servers).
    target_group = pgid == running.pid
    _signal(running.pid, signal.SIGTERM, target_group)
    proc = psutil.Process(running.pid)
    try:
        proc.wait(timeout)
        outcome = "stopped"
    except psutil.TimeoutExpired:
        _signal(running.pid, signal.SIGKILL, target_group)
        with contextlib.suppress(psutil.Error):
            proc.wait(5)
        outcome = "killed"
    except psutil.NoSuchProcess:
        outcome = "stopped"
    if target_group:
        # Reap stragglers of the group that outlived their parent.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(running.pid, signal.SIGKILL)
    return outcome


def stop_all(processes: list[RunningProcess], timeout: float) -> list[tuple[str, str]]:
    """Stop processes in the given order, without waiting for one before signalling the next
    (each gets `timeout` seconds after its SIGTERM); returns (name, outcome) in that order."""
    import concurrent.futures

    if not processes:
        return []
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(processes)) as pool:
        futures = []
        for p in processes:
            futures.append(pool.submit(stop, p, timeout))
            time.sleep(0.05)  # keep the signal order (front-ends before what they call)
        return [(p.name, f.result()) for p, f in zip(processes, futures, strict=True)]


def _signal(pid: int, sig: signal.Signals, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def log_tail(path: str, lines: int = 15) -> str:
    """The last lines of a log file."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def describe(processes: list[RunningProcess]) -> list[dict[str, Any]]:
    """Name, pid, port, liveness and health of every recorded process."""
    rows = []
    for p in processes:
        alive = p.alive()
        code = probe(p.health_url) if alive and p.health_url else None
        if not alive:
            health = "dead"
        elif p.health_url is None:
            health = "running"
        elif code == 200:
            health = "healthy"
        else:
            health = "unhealthy" if code is not None else "no answer"
        rows.append(
            {
                "name": p.name,
                "pid": p.pid,
                "port": p.port,
                "alive": alive,
                "health": health,
                "health_url": p.health_url,
                "log": p.log,
            }
        )
    return rows
