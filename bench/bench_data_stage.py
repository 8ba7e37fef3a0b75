"""Benchmark: the data stage on 100k, 1M and 10M rows × 50 columns next to plain pandas reading the
file.

Writes a wide synthetic churn-like parquet file per size once (bench/results/tmp/, git-ignored;
the 10M-row file is 1.9 GB and takes about a minute to write), then runs
each measurement in a fresh subprocess so that peak memory (ru_maxrss) belongs to that
measurement alone:

- baseline: ``pandas.read_parquet(path)``, nothing else;
- data stage: ``run_data_stage(cfg, run_dir)`` (read, validate, stratified-group split, fit the
  preprocessor on train, write all artifacts).

Runs alternate (baseline, stage, baseline, stage, ...); the medians of ``--repeats`` runs of each
size go to bench/results/data_stage.json (bench/results/data_stage_<rows>.json for a set of
sizes without 1M), with how the stage's wall time, CPU time and peak memory grow with the rows.

Before its clock starts, each child imports what its call would import on first use (pyarrow's
parquet reader for both; scikit-learn and SciPy, about 1.6 s of CPU, for the stage) and records
that time apart: the gated ratios compare the calls, ``ratio_*_with_imports`` the cold process.

Targets (exit 1 when one is missed; `gates`): at 1M rows, the stage's wall time and CPU time at
most 3x the plain read's; its peak RSS at most 3 GiB at 1M rows and 8 GiB at 10M rows (this
machine: 2 cores, 24 GiB). A quick run gates all three on its small file. The 10M rows are one
in-memory frame, not a stream: the stage keeps no copy of the table that it can avoid (see
src/mainsail/data/README.md).

    .venv/pipeline/bin/python bench/bench_data_stage.py [--rows 100000 1000000 10000000]
        [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
RATIO_MAX = 3.0
sys.path.insert(0, str(HERE))
from common import Run, Target, add_common_args  # noqa: E402


def gates(rows: int, quick: bool) -> tuple[bool, float | None]:
    """What a size is gated on: the time ratios (at 1M rows), and the peak-memory budget in GiB
    (3 up to 1M rows, 8 from 10M rows; None below 1M). A quick run gates everything; the other
    sizes show how the figures grow."""
    budget = 8.0 if rows >= 10_000_000 else 3.0
    return rows == 1_000_000 or quick, budget if rows >= 1_000_000 or quick else None


#: The sizes measured by default: how time and memory grow from 100k to 10M rows.
SIZES = (100_000, 1_000_000, 10_000_000)
N_FLOAT, N_INT, N_CAT = 36, 6, 5  # + entity, timestamp, target = 50 columns


def make_wide_file(path: Path, rows: int, seed: int = 0) -> None:
    """A churn-like table: entity ids, timestamps, 36 float32, 6 int, 5 text columns, a label.

    Floats carry 2% missing values and a few outliers; the label (~12% positive) depends on a
    handful of columns so the leakage probe has real (not perfect) signal to score.
    """
    rng = np.random.default_rng(seed)
    entities = rows // 5
    ent = rng.integers(0, entities, rows)
    cols: dict[str, Any] = {
        "customer_id": pd.Categorical.from_codes(
            ent, pd.Index([f"C{i:08d}" for i in range(entities)])
        ),
        "event_timestamp": pd.Timestamp("2023-01-01", tz="UTC")
        + pd.to_timedelta(rng.integers(0, 730 * 86_400, rows), unit="s"),
    }
    logit = np.full(rows, -2.4)
    for j in range(N_FLOAT):
        x = rng.normal(0, 1, rows).astype(np.float32)
        if j < 6:
            logit += 0.35 * x
        x[rng.random(rows) < 0.02] = np.nan
        x[rng.random(rows) < 0.001] *= 50
        cols[f"f{j:02d}"] = x
    for j in range(N_INT):
        cols[f"n{j}"] = rng.poisson(2 + j, rows).astype(np.int32)
    for j in range(N_CAT):
        levels = np.array([f"level_{j}_{k}" for k in range(5 + 10 * j)])
        codes = rng.integers(0, len(levels), rows)
        if j == 0:
            logit += 0.4 * (codes == 0)
        cols[f"c{j}"] = pd.Categorical.from_codes(codes, pd.Index(levels))
    cols["churned"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    frame = pd.DataFrame(cols)
    # One row per customer and time, like real snapshots.
    frame = frame.drop_duplicates(["customer_id", "event_timestamp"], ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)


def _peak_rss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: KiB


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return float(usage.ru_utime + usage.ru_stime)


def _timed_imports(modules: list[str]) -> dict[str, float]:
    """Import `modules` (what the measured call would import on first use) and time it."""
    import importlib

    cpu0, start = _cpu_s(), time.perf_counter()
    for name in modules:
        importlib.import_module(name)
    return {"wall_s": time.perf_counter() - start, "cpu_s": _cpu_s() - cpu0}


#: What `pandas.read_parquet` imports on its first call.
BASELINE_IMPORTS = ["pandas.io.parquet", "pyarrow.parquet", "pyarrow.pandas_compat"]
#: What `run_data_stage` imports on its first call: scikit-learn (and SciPy under it) for the
#: preprocessor, pyarrow, joblib; about 1.6 s of CPU on this machine, whatever the rows.
STAGE_IMPORTS = [
    *BASELINE_IMPORTS,
    "pyarrow.compute",
    "joblib",
    "mainsail.data.ingest",
    "mainsail.data.validate",
    "mainsail.data.split",
    "mainsail.data.imbalance",
    "mainsail.data.preprocess",
    "mainsail.core.privacy",
    "mainsail.features.training",
]


def child_baseline(path: Path) -> dict[str, Any]:
    imports = _timed_imports(BASELINE_IMPORTS)
    cpu0, start = _cpu_s(), time.perf_counter()
    frame = pd.read_parquet(path)
    wall, cpu = time.perf_counter() - start, _cpu_s() - cpu0
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "imports": imports,
        "peak_rss_bytes": _peak_rss_bytes(),
        "rows": len(frame),
    }


def child_stage(path: Path) -> dict[str, Any]:
    from mainsail.config import parse_config
    from mainsail.lifecycle.data import run_data_stage

    imports = _timed_imports(STAGE_IMPORTS)
    cfg = parse_config(
        {
            "name": "bench",
            "seed": 42,
            "data": {
                "path": str(path),
                "target": "churned",
                "entity_key": "customer_id",
                "event_timestamp": "event_timestamp",
            },
            "split": {"strategy": "stratified"},
        }
    )
    with tempfile.TemporaryDirectory(dir=RESULTS / "tmp") as tmp:
        cpu0, start = _cpu_s(), time.perf_counter()
        result = run_data_stage(cfg, Path(tmp) / "run")
        wall, cpu = time.perf_counter() - start, _cpu_s() - cpu0
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "imports": imports,
        "peak_rss_bytes": _peak_rss_bytes(),
        "rows": len(result.frame),
        "features": len(result.features),
        "steps_s": result.timings,
        "split_rows": {k: v["rows"] for k, v in result.summary["sides"].items()},
    }


def _run_child(kind: str, path: Path) -> dict[str, Any]:
    env = dict(os.environ)
    src = str(HERE.parent / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--path", str(path)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def measure_size(
    run: Run, rows: int, repeats: int, *, quick: bool = False
) -> tuple[dict[str, Any], list[Target]]:
    """Baseline and stage on a `rows`-row file: the figures and this size's targets (`gates`)."""
    path = RESULTS / "tmp" / f"wide_{rows}.parquet"
    if not path.exists():
        print(f"writing {path} ...", flush=True)
        make_wide_file(path, rows)
    meta = pq.read_metadata(path)
    runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "stage": []}
    for i in range(repeats):
        for kind in ("baseline", "stage"):
            res = _run_child(kind, path)
            runs[kind].append(res)
            print(
                f"run {i + 1} {kind:8s} {res['wall_s']:7.2f} s wall {res['cpu_s']:7.2f} s cpu  "
                f"peak {res['peak_rss_bytes'] / 2**30:5.2f} GiB",
                flush=True,
            )

    def med(kind: str, key: str) -> float:
        return float(statistics.median(r[key] for r in runs[kind]))

    def med_imports(kind: str, key: str) -> float:
        return float(statistics.median(r["imports"][key] for r in runs[kind]))

    stage_peak = med("stage", "peak_rss_bytes")
    steps = {
        k: round(statistics.median(r["steps_s"][k] for r in runs["stage"]), 3)
        for k in runs["stage"][0]["steps_s"]
    }
    ratios_gated, budget = gates(rows, quick)
    ratio_wall = med("stage", "wall_s") / med("baseline", "wall_s")
    ratio_cpu = med("stage", "cpu_s") / med("baseline", "cpu_s")
    # The same with each side's first-use imports counted (a fresh process pays them once).
    cold = {
        key: (med("stage", key) + med_imports("stage", key))
        / (med("baseline", key) + med_imports("baseline", key))
        for key in ("wall_s", "cpu_s")
    }
    result = {
        "file": {
            "rows": meta.num_rows,
            "columns": len(pq.read_schema(path).names),
            "bytes": path.stat().st_size,
            "format": "parquet",
        },
        "repeats": repeats,
        "baseline": {
            "what": "pandas.read_parquet(file)",
            "wall_s_median": round(med("baseline", "wall_s"), 3),
            "peak_rss_gib_median": round(med("baseline", "peak_rss_bytes") / 2**30, 3),
            "cpu_s_median": round(med("baseline", "cpu_s"), 3),
            "wall_s_runs": [round(r["wall_s"], 3) for r in runs["baseline"]],
            "cpu_s_runs": [round(r["cpu_s"], 3) for r in runs["baseline"]],
            "imports_wall_s_median": round(med_imports("baseline", "wall_s"), 3),
            "imports_cpu_s_median": round(med_imports("baseline", "cpu_s"), 3),
        },
        "data_stage": {
            "what": "run_data_stage: read, validate, stratified-group split, fit preprocessor, "
            "write artifacts",
            "wall_s_median": round(med("stage", "wall_s"), 3),
            "peak_rss_gib_median": round(stage_peak / 2**30, 3),
            "cpu_s_median": round(med("stage", "cpu_s"), 3),
            "wall_s_runs": [round(r["wall_s"], 3) for r in runs["stage"]],
            "cpu_s_runs": [round(r["cpu_s"], 3) for r in runs["stage"]],
            "imports_wall_s_median": round(med_imports("stage", "wall_s"), 3),
            "imports_cpu_s_median": round(med_imports("stage", "cpu_s"), 3),
            "steps_s_median": steps,
            "features": runs["stage"][0]["features"],
            "split_rows": runs["stage"][0]["split_rows"],
        },
        "ratio_wall_stage_over_baseline": round(ratio_wall, 2),
        "ratio_cpu_stage_over_baseline": round(ratio_cpu, 2),
        "ratio_peak_stage_over_baseline": round(stage_peak / med("baseline", "peak_rss_bytes"), 2),
        "ratio_wall_with_imports": round(cold["wall_s"], 2),
        "ratio_cpu_with_imports": round(cold["cpu_s"], 2),
        "note": "wall times depend on how busy the machine's cores were; cpu_s (user+sys of the "
        "measured call) is the steadier figure when other work shares the CPUs. Each child "
        "imports what its call imports on first use before the clock starts (imports_*: "
        "scikit-learn and SciPy for the stage, a fixed cost whatever the rows); the gated "
        "ratios are of the calls alone, ratio_*_with_imports count the imports on both sides",
        "versions": {"pandas": pd.__version__, "numpy": np.__version__},
    }
    rows = f"{meta.num_rows:,} rows"
    targets = []
    if ratios_gated:
        targets += [
            run.target(f"{rows}: stage wall / read_parquet", ratio_wall, "<=", RATIO_MAX, "x"),
            run.target(f"{rows}: stage CPU / read_parquet", ratio_cpu, "<=", RATIO_MAX, "x"),
        ]
    if budget is not None:
        targets.append(
            run.target(f"{rows}: stage peak RSS", stage_peak / 2**30, "<=", budget, " GiB")
        )
    return result, targets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows",
        type=int,
        nargs="+",
        default=list(SIZES),
        help="table sizes (default 100k, 1M and 10M rows: 10M needs about 2 GB of disk, 7 GiB "
        "of memory and a minute and a half per run)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=["baseline", "stage"])
    parser.add_argument("--path", type=Path)
    add_common_args(parser)
    args = parser.parse_args()

    if args.child:
        fn = child_baseline if args.child == "baseline" else child_stage
        print(json.dumps(fn(args.path)))
        return 0

    if args.quick:
        args.rows, args.repeats = [20_000], 1
    sizes = sorted(set(args.rows))
    name = "data_stage" if 1_000_000 in sizes or args.quick else f"data_stage_{sizes[-1]}"
    run = Run.start(name, args)
    results: dict[str, Any] = {}
    targets: list[Target] = []
    for rows in sizes:
        result, size_targets = measure_size(run, rows, args.repeats, quick=args.quick)
        results[str(rows)] = result
        targets += size_targets
    growth = {
        rows: {
            "stage_wall_s": r["data_stage"]["wall_s_median"],
            "stage_cpu_s": r["data_stage"]["cpu_s_median"],
            "stage_peak_gib": r["data_stage"]["peak_rss_gib_median"],
            "stage_over_read_cpu": r["ratio_cpu_stage_over_baseline"],
            "read_wall_s": r["baseline"]["wall_s_median"],
            "read_peak_gib": r["baseline"]["peak_rss_gib_median"],
        }
        for rows, r in results.items()
    }
    print(json.dumps(growth, indent=2))
    return run.finish({"sizes": results, "growth": growth}, targets)


if __name__ == "__main__":
    sys.exit(main())
