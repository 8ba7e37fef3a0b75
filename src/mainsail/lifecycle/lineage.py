"""Lineage of a run: what data, config, seed, code and library versions produced it."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

from mainsail.config import ProjectConfig

# The packages whose versions decide whether a model loads and predicts the same elsewhere.
TRACKED_PACKAGES = ("numpy", "pandas", "pyarrow", "scikit-learn", "scipy", "torch", "ray", "optuna")


def code_version(repo: Path | None = None) -> str:
    """`<package version>+g<commit>[.dirty]` when run from a git checkout, else the version."""
    try:
        version = importlib.metadata.version("mainsail")
    except importlib.metadata.PackageNotFoundError:
        version = "0+unknown"
    where = repo or Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=where, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+g{commit}{'.dirty' if dirty else ''}"


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that decide whether a model loads and predicts alike."""
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


def run_lineage(
    cfg: ProjectConfig,
    data_sha256: str,
    feast: dict[str, Any] | None,
    config_path: Path | None = None,
    snapshot: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """:func:`build_lineage`, plus the Feast feature service and registry behind the rows when
    the data came from Feast, and the data snapshot's reference (`data_snapshot`, null without
    one): what `mainsail run` and the evaluate step write as lineage.json."""
    lineage = build_lineage(cfg, data_sha256, config_path)
    lineage["data_snapshot"] = snapshot
    if feast is not None:
        lineage["features"] = feast
    return lineage
