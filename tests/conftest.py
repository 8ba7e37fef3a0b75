"""Fixtures shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (the folder holding pyproject.toml)."""
    return REPO


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the checkout (upstream CRDs); CI lays a copy there too."""
    path = REPO.parent / "shared"
    if not path.is_dir():
        pytest.fail(f"{path} is missing: the CRD schemas are laid beside the checkout")
    return path
