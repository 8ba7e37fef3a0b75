"""The data-snapshot stage: store the training data a run used, read it back, reproduce the run.

store_snapshot   the data file → content-addressed parquet in the registry bucket
                 (deduplicated by sha256); `mainsail run` records the reference in
                 lineage.json (`data_snapshot`) and the model card (`training_data.snapshot`)
run_snapshot     the reference a run folder recorded
show_snapshot / diff_snapshots   `mainsail data show` / `mainsail data diff`
reproduce        the run again, from its config.json and its snapshot alone
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mainsail.config import ProjectConfig

if TYPE_CHECKING:
    from mainsail.lifecycle.run import RunResult
    from mainsail.registry.snapshots import SnapshotStore


class SnapshotError(ValueError):
    """A snapshot that cannot be stored, found or used; the message says which and why."""


def open_snapshots(cfg: ProjectConfig) -> tuple[SnapshotStore | None, str]:
    """The store a run writes its snapshot to, per `snapshots.mode`, and a note for the user
    when there is none. `always` raises :class:`SnapshotError` when the registry cannot be
    reached; `auto` then returns (None, why)."""
    from mainsail.registry import open_registry
    from mainsail.registry.snapshots import SnapshotStore

    if cfg.snapshots.mode == "never":
        return None, "snapshots.mode is never: no data snapshot"
    if cfg.snapshots.mode == "auto" and not _registry_configured(cfg):
        return None, (
            "no registry.endpoint nor MAINSAIL_S3_ENDPOINT, and the local stack's S3 is not up "
            "(`mainsail up`): the run has no data snapshot (snapshots.mode auto)"
        )
    try:
        registry = open_registry(cfg)
        registry.ensure_bucket()
    except Exception as err:  # RegistryError, or minio/urllib3's errors for an unreachable S3
        why = f"the registry cannot be reached for the data snapshot: {err}"
        if cfg.snapshots.mode == "always":
            raise SnapshotError(f"{why} (snapshots.mode is always)") from None
        return None, f"{why}; the run has no snapshot (snapshots.mode auto)"
    return SnapshotStore(registry, cfg.snapshots.prefix), ""


def _registry_configured(cfg: ProjectConfig) -> bool:
    """A registry is named (config or environment), or the local stack's S3 port answers."""
    import os
    import socket

    from mainsail.core import naming

    if cfg.registry.endpoint or os.environ.get(naming.ENV_S3_ENDPOINT):
        return True
    try:
        with socket.create_connection((cfg.stack.host, cfg.stack.s3_port), timeout=0.5):
            return True
    except OSError:
        return False


def run_snapshot(run_dir: Path) -> dict[str, Any]:
    """The snapshot reference of a run folder (its lineage.json's `data_snapshot`)."""
    lineage_path = Path(run_dir) / "lineage.json"
    try:
        lineage = json.loads(lineage_path.read_text())
    except FileNotFoundError:
        raise SnapshotError(f"{run_dir} is not a run folder: it has no lineage.json") from None
    except ValueError as err:
        raise SnapshotError(f"{lineage_path} is not valid JSON: {err}") from None
    ref = lineage.get("data_snapshot")
    if not isinstance(ref, dict) or "sha256" not in ref:
        raise SnapshotError(
            f"run {Path(run_dir).name} has no data snapshot (it ran without a reachable "
            "registry, or with snapshots.mode never)"
        )
    return ref


def show_snapshot(run_dir: Path, store: SnapshotStore) -> dict[str, Any]:
    """The run's snapshot reference and its summary (schema, rows, per-column summary)."""
    from mainsail.data.snapshot import read_snapshot, summarize

    ref = run_snapshot(run_dir)
    return {"run": Path(run_dir).name, **ref, **summarize(read_snapshot(store.get(ref["sha256"])))}


def diff_snapshots(run_a: Path, run_b: Path, store: SnapshotStore) -> dict[str, Any]:
    """What changed from run A's training data to run B's."""
    from mainsail.data.snapshot import diff_summaries

    a, b = show_snapshot(run_a, store), show_snapshot(run_b, store)
    return {
        "a": {"run": a["run"], "sha256": a["sha256"]},
        "b": {"run": b["run"], "sha256": b["sha256"]},
        "same_data": a["sha256"] == b["sha256"],
        **diff_summaries(a, b),
    }


def reproduce(run_dir: Path, store: SnapshotStore, runs_dir: Path) -> RunResult:
    """Run again what produced `run_dir`, from its config.json and its data snapshot alone (the
    original data file is not read). The new run lands in `runs_dir`; with the same code and
    packages, its model.joblib and metrics.json are byte-identical to the original's. A run
    whose rows came from Feast joins them again from the snapshot, with the feature
    definitions of `features.repo_dir` (code) in a copy of that folder without its data."""
    from mainsail.config import config_from_json
    from mainsail.lifecycle.run import run

    run_dir = Path(run_dir)
    ref = run_snapshot(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise SnapshotError(f"{run_dir} has no config.json to reproduce the run from")
    cfg = config_from_json(config_path.read_text())
    data_file = runs_dir / ".snapshots" / f"{ref['sha256']}.parquet"
    data_file.parent.mkdir(parents=True, exist_ok=True)
    data_file.write_bytes(store.get(ref["sha256"]))
    data = cfg.data.model_copy(
        update={"path": data_file, "format": "parquet", "synthetic": None, "packaged": None}
    )
    update: dict[str, Any] = {"data": data, "runs_dir": Path(runs_dir)}
    if cfg.features.training_set is True:
        # Feast joins the rows again from the snapshot, in a private copy of the repository's
        # definitions: the project's own repository (its sources, its registry) is not touched.
        repo = runs_dir / ".snapshots" / f"feature_repo-{run_dir.name}"
        shutil.rmtree(repo, ignore_errors=True)
        shutil.copytree(cfg.features.repo_dir, repo, ignore=shutil.ignore_patterns("data"))
        update["features"] = cfg.features.model_copy(update={"repo_dir": repo})
    cfg = cfg.model_copy(update=update)
    return run(cfg, snapshots=store, run_id=f"{run_dir.name}-reproduced")
