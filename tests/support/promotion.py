"""A traffic backend for the promotion controller's tests: the champion, the challenger and
its weight in memory, and every call it was asked to make (the real backends, the router's admin
API, the gateway and Seldon's Experiment, have tests of their own)."""

from __future__ import annotations


class RecordingBackend:
    def __init__(self, champion: str = "1", challenger: str | None = "2", weight: int = 10) -> None:
        self.champion, self.challenger, self.weight = champion, challenger, weight
        self.calls: list[tuple[str, int | None]] = []

    def current(self, model: str) -> tuple[str, str | None, int]:
        return self.champion, self.challenger, self.weight

    def set_weight(self, model: str, weight: int) -> None:
        self.weight = weight
        self.calls.append(("set_weight", weight))

    def promote(self, model: str) -> None:
        self.champion, self.challenger, self.weight = self.challenger or self.champion, None, 0
        self.calls.append(("promote", None))

    def rollback(self, model: str) -> None:
        self.challenger, self.weight = None, 0
        self.calls.append(("rollback", None))
