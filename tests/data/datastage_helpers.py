"""Helpers of the data-stage tests (a uniquely named module: tests/ folders are not packages)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mainsail.config import ProjectConfig, parse_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BAD_INPUTS = FIXTURES / "bad_inputs"


def make_config(path: Path, *, seed: int = 7, **sections: dict[str, Any]) -> ProjectConfig:
    """A config for `path`; `data`, `split`, ... sections are merged over churn-like defaults."""
    raw: dict[str, Any] = {
        "name": "test",
        "seed": seed,
        "data": {
            "path": str(path),
            "target": "churned",
            "entity_key": "customer_id",
            "event_timestamp": "event_timestamp",
        },
        "split": {"strategy": "group"},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return parse_config(raw, source="<test>")
