"""Fixtures of the data-stage tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from mainsail.data.synthetic import generate_churn


@pytest.fixture(scope="session")
def churn_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4,000 synthetic churn rows (about 1,000 customers over two years) as parquet."""
    path = tmp_path_factory.mktemp("churn") / "churn.parquet"
    generate_churn(4_000, seed=11).to_parquet(path, index=False)
    return path
