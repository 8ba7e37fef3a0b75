"""free_port: ports outside the kernel's ephemeral range, where outgoing connections cannot
take them between choosing and binding, and never the same one twice in a process."""

from __future__ import annotations

import socket

import pytest

from mainsail.core import ports
from mainsail.core.ports import _ephemeral_low, free_port


def test_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(p < _ephemeral_low() for p in ports)
    for port in ports[:5]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # raises if it was not free


def test_a_drawn_port_that_is_in_use_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    busy_port, next_port = free_port(), free_port()  # two ports from our range, free now
    ports._given.discard(busy_port)
    ports._given.discard(next_port)
    draws = iter([busy_port, next_port])
    monkeypatch.setattr(ports._draw, "randint", lambda low, high: next(draws))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", busy_port))
        assert ports.free_port() == next_port
