"""`mainsail run`: the lifecycle stages in one process, writing one run folder.

The run folder is built under a hidden temporary name and renamed into place only when every
stage succeeded, so a failed run leaves nothing that looks like a finished one.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mainsail.config import ProjectConfig
from mainsail.lineage import build_lineage

#: Reports progress: (stage name, fraction of that stage done in [0, 1]).
ProgressFn = Callable[[str, float], None]


def _quiet(stage: str, done: float) -> None:
    """Progress sink that ignores updates (library use, tests)."""


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
) -> RunResult:
    """Run the stages that exist so far and return where their outputs are."""
    from mainsail.data.stage import run_data_stage

    final = cfg.runs_dir / (run_id or new_run_id(cfg))
    timings: dict[str, float] = {}
    with staged_dir(final) as tmp:
        started = time.perf_counter()
        progress("data", 0.0)
        data = run_data_stage(cfg, tmp, progress=lambda _step, frac: progress("data", frac))
        progress("data", 1.0)
        timings["data"] = time.perf_counter() - started

        summary: dict[str, Any] = {"data": data.summary}
        artifacts: dict[str, Path] = {}
        if "train" in stages:
            started = time.perf_counter()
            training = _run_training(cfg, data, tmp, progress)
            if training is not None:
                summary["train"] = training
                timings["train"] = time.perf_counter() - started

        lineage = build_lineage(cfg, data.data_sha256, config_path)
        if data.feast is not None:
            lineage["features"] = data.feast  # feature service and registry behind the rows
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


def _run_training(
    cfg: ProjectConfig, data: Any, run_dir: Path, progress: ProgressFn
) -> dict[str, Any] | None:
    """The training stage: tune, train, cross-validate, compare, select, card and report."""
    from mainsail.train.stage import run_training_stage

    result = run_training_stage(cfg, data, run_dir, progress=progress)
    return result.summary()
