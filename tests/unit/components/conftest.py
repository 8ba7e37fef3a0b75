"""A tiny churn project for the step functions that the kfp components wrap (no kfp here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mainsail.config import ProjectConfig, config_to_json, load_config
from tests.support.configs import REPO, tiny_overrides


@pytest.fixture
def tiny_cfg(tmp_path: Path) -> ProjectConfig:
    return load_config(REPO / "configs" / "churn.yaml", tiny_overrides(tmp_path))


@pytest.fixture
def tiny_json(tiny_cfg: ProjectConfig) -> str:
    return config_to_json(tiny_cfg)
