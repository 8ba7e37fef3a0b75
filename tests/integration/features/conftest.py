"""Fixtures of the Feast tests: repositories applied and materialized once per module.

Everything runs against real Feast (local provider, DuckDB offline store) and the real Redis at
127.0.0.1:6379, in db 13 with a per-run project name so no other test's keys are touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from mainsail.config import ProjectConfig
from tests.support.feast import T0, churn_frame, controlled_rows, make_config


@pytest.fixture(scope="session")
def frame() -> pd.DataFrame:
    return pd.concat([churn_frame(), controlled_rows()], ignore_index=True)


def _build(cfg: ProjectConfig, repo: Path, frame: pd.DataFrame) -> Path:
    from mainsail.features import store

    store.apply(cfg, repo, frame)
    store.materialize(cfg, repo, start=T0 - timedelta(days=800), end=T0)
    return repo


@pytest.fixture(scope="module")
def sqlite_repo(
    tmp_path_factory: pytest.TempPathFactory, frame: pd.DataFrame
) -> Iterator[tuple[ProjectConfig, Path]]:
    cfg = make_config("sqlite")
    repo = tmp_path_factory.mktemp("sqlite_repo")
    yield cfg, _build(cfg, repo, frame)


@pytest.fixture(scope="module")
def redis_repo(
    tmp_path_factory: pytest.TempPathFactory, frame: pd.DataFrame
) -> Iterator[tuple[ProjectConfig, Path]]:
    cfg = make_config("redis")
    repo = tmp_path_factory.mktemp("redis_repo")
    _build(cfg, repo, frame)
    yield cfg, repo
    from mainsail.features.store import open_store

    open_store(cfg, repo).teardown()  # drops this project's keys from db 13


@pytest.fixture(params=["sqlite", "redis"])
def online_repo(
    request: pytest.FixtureRequest,
) -> tuple[ProjectConfig, Path]:
    repo: tuple[ProjectConfig, Path] = request.getfixturevalue(f"{request.param}_repo")
    return repo
