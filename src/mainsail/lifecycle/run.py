"""`mainsail run`: every lifecycle stage in one process, writing one run folder.

    data      load_validated → split_rows → prepare → run-folder files   (lifecycle.data)
    training  tune_candidates → fit_candidates                           (lifecycle.training)
              evaluate_candidates: CV → test-set selection → model/      (lifecycle.evaluation)

The run folder is built under a hidden temporary name and renamed into place only when every
stage succeeded, so a failed run leaves nothing that looks like a finished one. Everything of the
model lands in `<run>/model/` (see `mainsail.evaluate.document`), plus:

    experiment_log.jsonl   one JSON line per tuning trial (enough to re-run it)
    timings.json           wall seconds per step (kept out of metrics.json: they vary per run)

Ray's own files (TorchTrainer checkpoints, Tune state) go to a temporary folder, removed at the
end. `progress(stage, done)` receives the cumulative fraction of each stage in STAGES.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mainsail.config import ProjectConfig
from mainsail.core.files import jsonable
from mainsail.data.prepared import DataStageResult
from mainsail.evaluate.compare import Selection
from mainsail.lifecycle.lineage import run_lineage
from mainsail.train.model import TabularModel
from mainsail.tune.search import TuneResult

if TYPE_CHECKING:
    from mainsail.registry.snapshots import SnapshotStore

#: Reports progress: (stage name, fraction of that stage done in [0, 1]).
ProgressFn = Callable[[str, float], None]

STAGES = ("tune", "train", "cross-validate", "evaluate", "report")
"""Progress stage names of the training stage, in order; each stage's advances add up to 1.0."""


def _quiet(stage: str, done: float) -> None:
    """Progress sink that ignores updates (library use, tests)."""


@dataclass
class TrainingResult:
    """What the training stage returns to :func:`run`."""

    chosen: str | None
    """The selected family; None when no candidate beat the baseline significantly."""
    reason: str
    model_dir: Path
    model_path: Path | None
    card_path: Path
    metrics_path: Path
    report_path: Path
    log_path: Path
    reference_path: Path | None
    plots: dict[str, Path]
    selection: Selection
    test_metrics: dict[str, dict[str, float]]
    cv_metrics: dict[str, dict[str, dict[str, float]]]
    tuning: dict[str, TuneResult] = field(default_factory=dict)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    model: TabularModel | None = None
    """The served model (refit and calibrated), when one was chosen."""
    final_metrics: dict[str, float] = field(default_factory=dict)
    """The served model's test metrics (empty when none was chosen)."""
    warnings: list[str] = field(default_factory=list)
    """Warnings about the chosen model (too good to be true, CV and test disagreeing)."""

    def summary(self) -> dict[str, Any]:
        """JSON-safe summary for `mainsail run`'s run summary."""
        return {
            "chosen": self.chosen,
            "reason": self.reason,
            "model_dir": str(self.model_dir),
            "model": str(self.model_path) if self.model_path else None,
            "card": str(self.card_path),
            "report": str(self.report_path),
            "experiment_log": str(self.log_path),
            "test": jsonable(self.final_metrics),
            "candidates_test": jsonable(self.test_metrics),
            "warnings": list(self.warnings),
            "tuning": {
                f: {"backend": t.backend, "trials": len(t.trials), "best_score": t.best_score}
                for f, t in self.tuning.items()
            },
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


def run_training_stage(
    cfg: ProjectConfig,
    data: DataStageResult,
    run_dir: Path,
    progress: ProgressFn | None = None,
) -> TrainingResult:
    """Tune, fit, cross-validate, compare, select and document into `run_dir/model/`."""
    from mainsail.lifecycle.evaluation import evaluate_candidates
    from mainsail.lifecycle.training import fit_candidates, tune_candidates

    report_progress = progress or _quiet
    done: dict[str, float] = {}

    def tick(stage: str, advance: float) -> None:
        done[stage] = min(1.0, done.get(stage, 0.0) + advance)
        report_progress(stage, done[stage])

    model_dir = run_dir / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    log_path = model_dir / "experiment_log.jsonl"
    log_path.unlink(missing_ok=True)
    timings: dict[str, float] = {}
    # Ray's own files (Train checkpoints, Tune state) are scratch: kept out of the run folder.
    with tempfile.TemporaryDirectory(prefix="mainsail-ray-") as scratch:
        t0 = time.perf_counter()
        tuned = tune_candidates(
            cfg, data, log_path=log_path, storage_dir=Path(scratch) / "tune", tick=tick
        )
        timings["tune_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        candidates = fit_candidates(cfg, data, tuned, storage_dir=Path(scratch), tick=tick)
        timings["train_s"] = time.perf_counter() - t0
    doc = evaluate_candidates(
        cfg,
        data,
        candidates,
        tuned,
        model_dir,
        version=run_dir.name.removeprefix(".tmp-"),  # `mainsail run` stages it as .tmp-<id>
        tick=tick,
        timings=timings,
    )
    (model_dir / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    return TrainingResult(
        doc.chosen,
        doc.selection.reason,
        model_dir,
        doc.model_path,
        doc.card_path,
        doc.metrics_path,
        doc.report_path,
        log_path,
        doc.reference_path,
        doc.plots,
        doc.selection,
        doc.test_metrics,
        doc.cv_summary,
        tuned,
        candidates.params,
        timings,
        doc.final.final.model if doc.final is not None else None,
        doc.final.metrics if doc.final is not None else {},
        doc.final.warnings if doc.final is not None else [],
    )


@dataclass
class RunResult:
    """Where a run's outputs are, and the headline numbers."""

    run_dir: Path
    problem_type: str
    problem_type_detected: bool
    artifacts: dict[str, Path] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def new_run_id(cfg: ProjectConfig, now: datetime | None = None) -> str:
    """`<name>-<UTC timestamp>-<config digest prefix>`: sortable and traceable to the config."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{cfg.name}-{stamp}-{cfg.digest()[:8]}"


@contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `final`; rename it to `final` only if the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    tmp.rename(final)


def run(
    cfg: ProjectConfig,
    *,
    config_path: Path | None = None,
    progress: ProgressFn = _quiet,
    run_id: str | None = None,
    stages: tuple[str, ...] = ("data", "train"),
    snapshots: SnapshotStore | None = None,
) -> RunResult:
    """Run the stages (data, then training unless left out) and return where their outputs are.
    With `snapshots`, the training data is stored there as a snapshot (see
    `mainsail.lifecycle.snapshot`) and referenced from lineage.json and the model card."""
    from mainsail.lifecycle.data import run_data_stage

    final = cfg.runs_dir / (run_id or new_run_id(cfg))
    timings: dict[str, float] = {}
    with staged_dir(final) as tmp:
        started = time.perf_counter()
        progress("data", 0.0)
        data = run_data_stage(
            cfg, tmp, progress=lambda _step, frac: progress("data", frac), snapshots=snapshots
        )
        progress("data", 1.0)
        timings["data"] = time.perf_counter() - started

        summary: dict[str, Any] = {"data": data.summary}
        artifacts: dict[str, Path] = {}
        if "train" in stages:
            started = time.perf_counter()
            summary["train"] = run_training_stage(cfg, data, tmp, progress=progress).summary()
            timings["train"] = time.perf_counter() - started

        lineage = run_lineage(cfg, data.data_sha256, data.feast, config_path, data.snapshot)
        lineage["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
        text = json.dumps(lineage, indent=2, sort_keys=True) + "\n"
        (tmp / "lineage.json").write_text(text)
        if (tmp / "model").is_dir():
            # The model folder is what the registry publishes: it carries its own lineage.
            (tmp / "model" / "lineage.json").write_text(text)
        (tmp / "config.json").write_text(
            json.dumps(cfg.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
        )
        for path in sorted(tmp.rglob("*")):
            if path.is_file():
                artifacts[str(path.relative_to(tmp))] = final / path.relative_to(tmp)

    # Stages report paths inside the temporary folder; point them at the final one.
    summary = json.loads(
        json.dumps(summary, default=str).replace(
            str(final.parent / f".tmp-{final.name}"), str(final)
        )
    )
    return RunResult(
        run_dir=final,
        problem_type=data.problem_type,
        problem_type_detected=data.problem_type_detected,
        artifacts=artifacts,
        summary=summary,
        timings=timings,
    )
