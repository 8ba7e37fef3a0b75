"""Benchmark: the same number of Optuna (TPE) trials run several ways, side by side in one script.

- ``ray_defaults``: Ray Tune as documented (``Tuner`` + ``OptunaSearch``, default TuneConfig:
  a new actor per trial, no concurrency limiter, default loggers);
- ``ours``: ``mainsail.tune.search.run_search`` with backend ``auto``, Ray already running (as
  here, where Ray starts once before any timing): trial 0, the probe, runs in-process while
  the rest of the first batch runs as Ray tasks; short trials then stay in-process, long ones
  go on in batches of Ray tasks;
- ``ours_ray``: backend ``ray``: independent trials as batches of Ray tasks from the start;
- ``ours_ray_tune``: backend ``ray_tune``: Ray Tune + OptunaSearch with our settings (what
  iterative trials use, with ASHA);
- ``optuna_seq``: ``study.optimize`` in one process (the baseline of the ratios);
- ``optuna_n_jobs2``: ``study.optimize(n_jobs=2)`` (threads; parallel only for sleeping trials).

Workloads: short trials (``time.sleep(0.1)``), long sleeping trials (``time.sleep(2)``) and long
CPU-bound trials (2 s of this thread's CPU time, so each trial does the same work whatever the
load). The objective is ``-(x - 0.3)**2`` with x from the sampler, so the best scores of the
variants are comparable. Ray starts once before any timing (its start-up is reported apart),
and optuna is imported before any timing, so the first variant measured pays for neither.
Each variant runs ``--repeats`` times, interleaved; medians go to bench/results/tuning.json
with the load average before and after (the machine may be shared).

    .venv/pipeline/bin/python bench/bench_tuning.py [--repeats 3] [--quick]
        [--workloads long_cpu_2s,short_sleep_0.1s] [--out PATH]

Targets (exit 1 when one is missed): the default ``auto`` backend at least 1.8x as fast as
sequential Optuna on the long CPU-bound trials, and at most 1.1x its wall time on the 0.1 s
trials, on 2 CPUs. ``--quick`` (one repeat, fewer and shorter trials) is a smoke test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

sys.path.insert(0, str(HERE))
from common import Run, add_common_args  # noqa: E402

from mainsail.config.train import RayConfig  # noqa: E402
from mainsail.tune.search import SearchSettings, run_search  # noqa: E402


def _work(kind: str, seconds: float) -> None:
    if kind == "sleep":
        time.sleep(seconds)
        return
    end = time.thread_time() + seconds  # CPU time of this thread: fixed work under any load
    x = 0
    while time.thread_time() < end:
        for i in range(10_000):
            x += i * i


def make_objective(kind: str, seconds: float) -> Callable[[dict[str, Any], Any], float]:
    def objective(params: dict[str, Any], report: Any = None) -> float:
        _work(kind, seconds)
        return -((params["x"] - 0.3) ** 2)

    return objective


class Space:
    """One float in [0, 1]."""

    def __call__(self, trial: Any) -> dict[str, Any]:
        return {"x": trial.suggest_float("x", 0.0, 1.0)}


def run_ray_defaults(kind: str, seconds: float, n: int, seed: int, storage: str) -> float:
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    objective = make_objective(kind, seconds)

    def trainable(config: dict[str, Any]) -> dict[str, float]:
        return {"score": objective(config)}

    tuner = tune.Tuner(
        trainable,
        param_space={"x": tune.uniform(0.0, 1.0)},
        tune_config=tune.TuneConfig(
            search_alg=OptunaSearch(metric="score", mode="max", seed=seed), num_samples=n
        ),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    )
    grid = tuner.fit()
    return float(grid.get_best_result(metric="score", mode="max").metrics["score"])


def run_ours(kind: str, seconds: float, n: int, seed: int, storage: str, backend: str) -> float:
    settings = SearchSettings(
        n_trials=n,
        direction="maximize",
        seed=seed,
        backend=backend,
        short_trial_s=1.0,
        ray=RayConfig(num_cpus=2),
        storage_dir=Path(storage),
    )
    return run_search(make_objective(kind, seconds), Space(), settings).best_score


def run_optuna(kind: str, seconds: float, n: int, seed: int, n_jobs: int) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objective = make_objective(kind, seconds)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(lambda t: objective(Space()(t)), n_trials=n, n_jobs=n_jobs)
    return float(study.best_value)


def measure(fn: Callable[[], float]) -> tuple[float, float]:
    t0 = time.perf_counter()
    best = fn()
    return time.perf_counter() - t0, best


SHORT_MAX, LONG_CPU_MIN = 1.1, 1.8


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    add_common_args(ap)
    ap.add_argument("--workloads", default="", help="comma list of workload names; all if empty")
    ap.add_argument(
        "--variants",
        default="",
        help="comma list of variants (optuna_seq always runs: it is the baseline); all if empty",
    )
    args = ap.parse_args()
    repeats = 1 if args.quick else args.repeats
    long_s = 0.5 if args.quick else 2.0
    workloads = [
        ("short_sleep_0.1s", "sleep", 0.1, 6 if args.quick else 20),
        ("long_sleep_2s", "sleep", long_s, 4 if args.quick else 10),
        ("long_cpu_2s", "cpu", long_s, 4 if args.quick else 10),
    ]
    if args.workloads:
        chosen = args.workloads.split(",")
        unknown = set(chosen) - {w[0] for w in workloads}
        if unknown:
            ap.error(f"unknown workloads {sorted(unknown)}; known: {[w[0] for w in workloads]}")
        workloads = [w for w in workloads if w[0] in chosen]
    known = {"ray_defaults", "ours", "ours_ray", "ours_ray_tune", "optuna_seq", "optuna_n_jobs2"}
    unknown_variants = set(filter(None, args.variants.split(","))) - known
    if unknown_variants:
        ap.error(f"unknown variants {sorted(unknown_variants)}; known: {sorted(known)}")
    run = Run.start("tuning", args)
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.get(ray.put(0))  # the first put of a process sets up its object store client (~0.4 s)
    # Ray's workers come up after init returns: wait until both run a task at the same time.
    ready = ray.remote(num_cpus=1)(lambda: time.sleep(0.2))
    ray.get([ready.remote() for _ in range(2)])
    ray_init_s = time.perf_counter() - t0
    run_optuna("sleep", 0.0, 3, 0, 1)  # import optuna and its TPE sampler before any timing
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-tune-") as storage:
        for name, kind, secs, n in workloads:
            variants: dict[str, Callable[[int], float]] = {
                "ray_defaults": lambda s, k=kind, d=secs, n=n: run_ray_defaults(
                    k, d, n, s, storage
                ),
                "ours": lambda s, k=kind, d=secs, n=n: run_ours(k, d, n, s, storage, "auto"),
                "ours_ray": lambda s, k=kind, d=secs, n=n: run_ours(k, d, n, s, storage, "ray"),
                "ours_ray_tune": lambda s, k=kind, d=secs, n=n: run_ours(
                    k, d, n, s, storage, "ray_tune"
                ),
                "optuna_seq": lambda s, k=kind, d=secs, n=n: run_optuna(k, d, n, s, 1),
                "optuna_n_jobs2": lambda s, k=kind, d=secs, n=n: run_optuna(k, d, n, s, 2),
            }
            if name.startswith("short"):
                variants.pop("ours_ray")  # the Ray paths are not what short trials take
                variants.pop("ours_ray_tune")
            if args.variants:
                keep = set(args.variants.split(",")) | {"optuna_seq"}
                variants = {v: fn for v, fn in variants.items() if v in keep}
            runs: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
            for rep in range(repeats):
                for vname, fn in variants.items():  # interleaved: load drifts hit all alike
                    runs[vname].append(measure(lambda fn=fn, rep=rep: fn(rep)))
                    print(f"{name} {vname} rep {rep}: {runs[vname][-1][0]:.2f}s", flush=True)
            med = {v: statistics.median(w for w, _ in r) for v, r in runs.items()}
            seq = med["optuna_seq"]
            results[name] = {
                "trials": n,
                "trial_seconds": secs,
                "kind": kind,
                "wall_s_median": {v: round(w, 3) for v, w in med.items()},
                "wall_s_runs": {v: [round(w, 3) for w, _ in r] for v, r in runs.items()},
                "ratio_to_optuna_seq": {v: round(w / seq, 3) for v, w in med.items()},
                "speedup_over_optuna_seq": {v: round(seq / w, 3) for v, w in med.items()},
                "best_score_median": {
                    v: round(statistics.median(b for _, b in r), 5) for v, r in runs.items()
                },
            }
    ray.shutdown()
    short = results.get("short_sleep_0.1s", {}).get("ratio_to_optuna_seq", {}).get("ours")
    long_cpu = results.get("long_cpu_2s", {}).get("speedup_over_optuna_seq", {}).get("ours")
    targets = [
        run.target(
            "long CPU trials: auto speed-up over sequential Optuna",
            long_cpu,
            ">=",
            LONG_CPU_MIN,
            "x",
            "backend auto, 2 CPUs, wall time of sequential study.optimize / ours",
        ),
        run.target(
            "0.1 s trials: auto wall time / sequential Optuna",
            short,
            "<=",
            SHORT_MAX,
            "x",
            "backend auto; short trials must not pay for Ray",
        ),
    ]
    doc = {
        "description": __doc__.split("\n\n")[0],
        "repeats": repeats,
        "variants_run": args.variants or "all",
        "workloads_run": args.workloads or "all",
        "ray_init_s": round(ray_init_s, 3),
        "results": results,
    }
    print(json.dumps({k: v["ratio_to_optuna_seq"] for k, v in results.items()}, indent=1))
    return run.finish(doc, targets)


if __name__ == "__main__":
    sys.exit(main())
