"""Free TCP ports for local processes (the stack, tests, demos, benchmarks).

Asking the OS for port 0 returns a port from the ephemeral range, the same range the kernel
draws the source ports of outgoing connections from: between choosing a port and a child
process binding it, any HTTP client on the machine can take it (seen in CI: "port 58915 is
already in use" while the loop demo started its processes). So ports are drawn at random from
below the ephemeral range, never handed out twice by this process, and checked bindable.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

__all__ = ["free_port"]

_LOWEST = 20000
_given: set[int] = set()
_lock = threading.Lock()
# Not the global `random`: seeded code must draw the same numbers whether or not ports were asked.
_draw = random.SystemRandom()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now, outside the ephemeral range where possible."""
    high = _ephemeral_low() - 1
    with _lock:
        if high - _LOWEST >= 1000:
            for _ in range(200):
                port = _draw.randint(_LOWEST, high)
                if port not in _given and _bindable(host, port):
                    _given.add(port)
                    return port
        # A machine whose ephemeral range leaves no room below it: let the OS choose.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        _given.add(port)
        return port
