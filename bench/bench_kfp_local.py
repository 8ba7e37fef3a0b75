"""Benchmark: per-step overhead of a kfp.local pipeline run over calling the steps directly.

Both sides run the same training pipeline on the same tiny churn project (600 rows, baseline +
linear, two tuning trials) with a real S3 registry (SeaweedFS):

- baseline: the step functions of mainsail.pipeline.steps called one after the other in this process
  (validate, split, preprocess, tune, train-candidates, evaluate, register);
- kfp.local: ``mainsail.pipeline.runner.run_local`` with caching off, i.e. the
  compiled-from-the-same
  -definition pipeline where every step is a subprocess that starts Python, imports kfp and
  mainsail, reads its executor input and writes artifacts.

kfp.local runs the chain one task at a time, so a step's time is the gap between its
executor_output.json and the previous step's (the first from the run's start). Runs alternate
(direct, kfp, direct, kfp, ...); medians of ``--repeats`` runs go to bench/results/kfp_local.json
with the per-step overhead in seconds (kfp.local minus direct).

Target (exit 1 when missed): the overhead per step at most the floor of a subprocess step plus
1 s, the floor being measured in the same run: a fresh Python that imports kfp and
mainsail.pipeline.steps (what every kfp.local step must do before its work), median of three.

    .venv/pipeline/bin/python bench/bench_kfp_local.py [--repeats 3] [--rows 600] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# Run as a file (`make bench`): the repository root makes `tests.support` importable.
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))
from common import Run, add_common_args  # noqa: E402

RESULTS = HERE / "results"
STEP_SLACK_S = 1.0
STEPS = ("validate", "split", "preprocess", "tune", "train-candidates", "evaluate", "register")


def run_direct(config: Path, ov: dict[str, Any], work: Path) -> dict[str, float]:
    from mainsail.config import config_to_json, load_config
    from mainsail.pipeline import steps

    cfg = load_config(config, ov)
    cj = config_to_json(cfg)
    w = {k: str(work / k) for k in ("ds", "sp", "prep", "tu", "ca", "model")}
    calls = {
        "validate": lambda: steps.validate_step(
            cj, str(cfg.data.path), w["ds"], str(work / "v.html")
        ),
        "split": lambda: steps.split_step(cj, w["ds"], w["sp"]),
        "preprocess": lambda: steps.preprocess_step(cj, w["ds"], w["sp"], w["prep"]),
        "tune": lambda: steps.tune_step(cj, w["prep"], w["tu"]),
        "train-candidates": lambda: steps.train_candidates_step(cj, w["prep"], w["tu"], w["ca"]),
        "evaluate": lambda: steps.evaluate_step(
            cj, w["prep"], w["tu"], w["ca"], w["model"], str(work / "r.html"), str(work / "c.md")
        ),
        "register": lambda: steps.register_step(cj, w["model"]),
    }
    times = {}
    for name in STEPS:
        start = time.perf_counter()
        result = calls[name]()
        times[name] = time.perf_counter() - start
        if name == "evaluate" and not result["chosen"]:
            raise SystemExit(f"no candidate selected, nothing to register: {result['reason']}")
    return times


def run_kfp(config: Path, ov: dict[str, Any]) -> dict[str, float]:
    from mainsail.pipeline.runner import run_local

    start_wall = time.time()
    with contextlib.redirect_stdout(io.StringIO()):  # kfp.local echoes every task's log
        result = run_local(config, "training", overrides=ov, caching=False)
    if result.executed != sorted(STEPS) or result.run_dir is None:
        raise SystemExit(f"kfp.local ran {result.executed}, expected {sorted(STEPS)}")
    times, previous = {}, start_wall
    for name in STEPS:
        done = (result.run_dir / name / "executor_output.json").stat().st_mtime
        times[name] = done - previous
        previous = done
    return times


def import_floor_s() -> float:
    """Seconds for a fresh Python to import kfp and the pipeline steps (median of three)."""
    times = []
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "import kfp, mainsail.pipeline.steps"], check=True, env=env
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=600)
    add_common_args(parser)
    args = parser.parse_args()
    if args.quick:
        args.repeats = 1
    run = Run.start("kfp_local", args)

    from mainsail.registry.seaweedfs import SeaweedS3
    from tests.support.configs import tiny_overrides

    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = Path(
        tempfile.mkdtemp(
            prefix="kfp-local-", dir=RESULTS / "tmp" if (RESULTS / "tmp").exists() else None
        )
    )
    config = tmp / "churn.yaml"
    config.write_text((REPO / "configs" / "churn.yaml").read_text())
    direct: list[dict[str, float]] = []
    kfp: list[dict[str, float]] = []
    try:
        with SeaweedS3(tmp / "s3") as s3:
            os.environ["MAINSAIL_S3_ACCESS_KEY"] = s3.access_key
            os.environ["MAINSAIL_S3_SECRET_KEY"] = s3.secret_key
            ov = {**tiny_overrides(tmp, s3.endpoint.endpoint), "data.synthetic.rows": args.rows}
            for i in range(args.repeats):
                direct.append(run_direct(config, ov, tmp / f"direct-{i}"))
                kfp.append(run_kfp(config, ov))
                print(
                    f"run {i + 1}: direct {sum(direct[-1].values()):.1f}s, "
                    f"kfp.local {sum(kfp[-1].values()):.1f}s",
                    file=sys.stderr,
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def med(runs: list[dict[str, float]], step: str) -> float:
        return round(statistics.median(r[step] for r in runs), 3)

    per_step = {
        step: {
            "direct_s": med(direct, step),
            "kfp_local_s": med(kfp, step),
            "overhead_s": round(med(kfp, step) - med(direct, step), 3),
            "direct_first_run_s": round(direct[0][step], 3),
        }
        for step in STEPS
    }
    total_direct = statistics.median(sum(r.values()) for r in direct)
    total_kfp = statistics.median(sum(r.values()) for r in kfp)
    floor = import_floor_s()
    overhead_per_step = (total_kfp - total_direct) / len(STEPS)
    doc = {
        "what": "training pipeline, per-step seconds: kfp.local SubprocessRunner vs direct calls",
        "rows": args.rows,
        "repeats": args.repeats,
        "per_step": per_step,
        "total": {
            "direct_s": round(total_direct, 3),
            "kfp_local_s": round(total_kfp, 3),
            "overhead_s": round(total_kfp - total_direct, 3),
            "overhead_per_step_s": round(overhead_per_step, 3),
        },
        "import_floor_s": round(floor, 3),
        "note": "direct medians include warm imports after the first run; "
        "direct_first_run_s shows the cold first call in this process",
    }
    print(json.dumps(doc["total"], indent=2))
    targets = [
        run.target(
            "overhead per step",
            overhead_per_step,
            "<=",
            round(floor + STEP_SLACK_S, 2),
            " s",
            f"floor: a fresh python importing kfp + the steps ({floor:.2f} s) + {STEP_SLACK_S} s",
        )
    ]
    return run.finish(doc, targets)


if __name__ == "__main__":
    raise SystemExit(main())
