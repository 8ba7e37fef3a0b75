"""`up`, `down` and `status` of the local stack (plain functions; the CLI wraps them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mainsail.config import ProjectConfig
from mainsail.stack.process import (
    RunningProcess,
    StackError,
    describe,
    port_in_use,
    read_state,
    start,
    stop,
    stop_all,
    wait_healthy,
    write_state,
)
from mainsail.stack.providers import StackContext, load_provider_modules, selected_providers


def data_dir(config: ProjectConfig) -> Path:
    """The stack's data dir as an absolute path."""
    return config.stack.data_dir.resolve()


def up(config: ProjectConfig, log: Any = None) -> list[RunningProcess]:
    """Start every stack process in order and wait for each to be healthy.

    Refuses to start while a previous stack of this data dir still runs, or when a port is taken.
    When a process fails to come up, every process already started is stopped again and the
    state file removed, so a failed `up` leaves nothing running.
    """
    root = data_dir(config)
    root.mkdir(parents=True, exist_ok=True)
    alive = [p.name for p in read_state(root) if p.alive()]
    if alive:
        raise StackError(
            f"the stack in {root} is already running ({', '.join(alive)}); "
            "run `mainsail down` first"
        )
    load_provider_modules()
    ctx = StackContext(config=config, data_dir=root)
    started: list[RunningProcess] = []
    try:
        for _name, provider in selected_providers(ctx):
            # Asked only now: a provider may need the processes started before it.
            specs = provider(ctx)
            for spec in specs:
                if any(spec.name == p.name for p in started):
                    raise StackError(f"two stack processes are named {spec.name!r}")
                for port in (spec.port, *spec.extra_ports):
                    if port is not None and port_in_use(config.stack.host, port):
                        raise StackError(
                            f"{spec.name}: port {port} on {config.stack.host} is already in use; "
                            "free it or change the port in the config's `stack` section"
                        )
            for spec in specs:
                running = start(spec, root)
                started.append(running)
                write_state(root, started)
                timeout = spec.startup_timeout_s or config.stack.startup_timeout_s
                wait_healthy(running, timeout)
                if log is not None:
                    log(f"{spec.name} healthy (pid {running.pid}, port {spec.port})")
    except BaseException:
        stop_all(list(reversed(started)), config.stack.stop_timeout_s)
        (root / "state.json").unlink(missing_ok=True)
        raise
    return started


def down(config: ProjectConfig) -> list[tuple[str, str]]:
    """Stop exactly the processes `up` recorded, in reverse order; returns (name, outcome)."""
    root = data_dir(config)
    processes = read_state(root)
    results = stop_all(list(reversed(processes)), config.stack.stop_timeout_s)
    (root / "state.json").unlink(missing_ok=True)
    return results


def restart(config: ProjectConfig, name: str) -> RunningProcess:
    """Stop (if running) and start again one recorded process, then wait until it is healthy."""
    root = data_dir(config)
    processes = read_state(root)
    index = next((i for i, p in enumerate(processes) if p.name == name), None)
    if index is None:
        known = ", ".join(p.name for p in processes) or "none"
        raise StackError(f"no stack process named {name!r} (running: {known})")
    old = processes[index]
    stop(old, config.stack.stop_timeout_s)
    running = start(old.spec(), root)
    processes[index] = running
    write_state(root, processes)
    wait_healthy(running, config.stack.startup_timeout_s)
    return running


def status(config: ProjectConfig) -> list[dict[str, Any]]:
    """One row per recorded process: name, pid, port, alive, health."""
    return describe(read_state(data_dir(config)))
