"""Lineage of a run: what data, config, seed, code and library versions produced it."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

from mainsail.config import ProjectConfig

# The packages whose versions decide whether a model loads and predicts the same elsewhere.
TRACKED_PACKAGES = ("numpy", "pandas", "pyarrow", "scikit-learn", "scipy", "torch", "ray", "optuna")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def code_version(repo: Path | None = None) -> str:
    """`<package version>+g<commit>[.dirty]` when run from a git checkout, else the version."""
    try:
        version = importlib.metadata.version("mainsail")
    except importlib.metadata.PackageNotFoundError:
        version = "0+unknown"
    where = repo or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+g{commit}{'.dirty' if dirty else ''}"


def package_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def build_lineage(cfg: ProjectConfig, data_sha256: str, config_path: Path | None) -> dict[str, Any]:
    """The lineage record written as lineage.json into every run folder and model version."""
    return {
        "data_path": str(cfg.data.path),
        "data_sha256": data_sha256,
        "config_path": str(config_path) if config_path else None,
        "config_sha256": cfg.digest(),
        "config": cfg.model_dump(mode="json"),
        "seed": cfg.seed,
        "code_version": code_version(),
        "python": platform.python_version(),
        "packages": package_versions(),
    }
