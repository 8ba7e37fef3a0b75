"""Benchmark: the drift sidecar's check, and serving throughput with the drift feed on vs off.

1. Seconds per check of a 1,000-row window against a 5,000-row reference with 20 numeric
   features (no missing values), median of `--repeats` interleaved runs of each:
   - ours: what the sidecar's worker does per check (copy the window out of its ring buffer,
     `VersionDetectors.check`: KS per feature, correction, row verdict);
   - alibi-detect's `KSDrift.predict` called directly (fitted once, like ours);
   - a plain loop of `scipy.stats.ks_2samp` over the 20 features (scipy's default method).
   Target: ours <= 1.2x direct KSDrift. Runs in the drift env (alibi-detect); from another env
   the script re-runs this part under .venv/drift/bin/python.
2. Serving throughput with the drift feed on vs off, on the real thing: one MLServer 1.7.1
   process (parallel_workers 0) with our runtime serves each model twice, `<model>-off`
   (no feed) and `<model>-on` (`drift_url` set: every served row goes to a live drift sidecar
   process, drift env, which loads the model's reference and runs its checks). Two models:
   - iris: LogisticRegression, one [1, 4] `features` request (the runtime's numpy fast path,
     where the feed's per-request cost weighs most);
   - churn: ColumnTransformer + LogisticRegression, 14 per-feature inputs (pandas path).
   Load: wrk -t1 -c16 (`apt-get install -y wrk`), one row per request, rows rotating through
   real samples (so the sidecar checks varied windows); `--rounds` interleaved rounds of
   `--seconds` each, order reversed every other round; figures are medians over rounds. Any
   non-2xx answer fails the run. Target: feed on >= 0.95x feed off (req/s), per model, on
   the worse of the ratio of medians and the median of paired rounds. Two CPU layouts
   (`--layouts`, see bench/pinning.py) alternate within each round: `shared` (the sidecar
   and wrk compete with MLServer for the 2 cores) and `pinned` (MLServer alone on CPU 0, as
   a serving container with its own CPU next to a sidecar container with its own).
3. The feed's own cost in the serving process, without HTTP and load tool: our runtime
   in-process (serving env), feed on (live sidecar) vs off, short alternating blocks (about
   50 ms: half-second blocks swung the ratio between 0.93 and 1.04 from run to run, on the
   same code); process CPU per request, median over pairs of blocks (`--blocks`). Target:
   implied throughput on/off (1 / CPU ratio) >= 0.95, per model.

Writes bench/results/drift.json; `--part check|serving` runs one part alone and writes its own
file (drift_check.json, drift_serving.json), never mixed with another run's figures. Exits 1
when a target is missed (bench/common.py: header, busy gate, --quick).

    .venv/pipeline/bin/python bench/bench_drift.py [--repeats 15] [--seconds 6] [--rounds 8]
        [--layouts shared,pinned] [--blocks 200] [--part all|check|serving] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))  # bench_serving: the iris artifact and wrk's latency parser
from common import Run, add_common_args  # noqa: E402
from pinning import parse_layouts  # noqa: E402

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def bench_check(repeats: int, seed: int = 0) -> dict[str, Any]:
    """Part 1 (drift env)."""
    import numpy as np
    from alibi_detect.cd import KSDrift
    from scipy.stats import ks_2samp

    from mainsail.drift.detectors import VersionDetectors
    from mainsail.drift.server import _Ring

    rng = np.random.default_rng(seed)
    n_features = 20
    ref = rng.normal(size=(5000, n_features))
    shift = np.where(np.arange(n_features) < 5, 0.2, 0.0)  # a few drifted features
    win = rng.normal(size=(1000, n_features)) + shift
    names = [f"f{i}" for i in range(n_features)]

    ours = VersionDetectors(
        names, [], ref, np.empty((5000, 0), dtype=np.int64), alpha=0.05, correction="bonferroni"
    )
    ring = _Ring(1000, n_features, np.float64)
    ring.extend(rng.normal(size=(300, n_features)))
    ring.extend(win)  # wrapped: view() must reorder, as in the sidecar
    empty_cat = np.empty((1000, 0), dtype=np.int64)
    direct = KSDrift(ref, p_val=0.05)

    def run_ours() -> Any:
        return ours.check(ring.view().copy(), empty_cat)

    def run_direct() -> Any:
        return direct.predict(win)

    def run_scipy() -> Any:
        return [ks_2samp(ref[:, f], win[:, f]) for f in range(n_features)]

    # Same answers (ours vs direct) before timing anything.
    a, b = run_ours(), run_direct()["data"]
    np.testing.assert_allclose([f.p_value for f in a.features], b["p_val"], rtol=1e-6)
    assert a.row_is_drift == bool(b["is_drift"])

    fns = {"ours": run_ours, "ksdrift": run_direct, "scipy_loop": run_scipy}
    for fn in fns.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    keys = list(fns)
    for i in range(repeats):
        # Rotate the order so that no variant always runs right after the same neighbour.
        for key in keys[i % 3 :] + keys[: i % 3]:
            t0 = time.perf_counter()
            fns[key]()
            times[key].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "window_rows": 1000,
        "reference_rows": 5000,
        "features": n_features,
        "repeats": repeats,
        "median_s": med,
        "all_s": times,
        "ours_over_ksdrift": med["ours"] / med["ksdrift"],
        "scipy_loop_over_ksdrift": med["scipy_loop"] / med["ksdrift"],
        "target_ours_over_ksdrift_max": 1.2,
    }


def _iris_reference(artifact: Path, folder: Path) -> None:
    """Sidecar reference of the iris model: its training rows and its schema."""
    import pandas as pd
    from sklearn.datasets import load_iris

    folder.mkdir(parents=True, exist_ok=True)
    iris = load_iris()
    frame = pd.DataFrame(iris.data, columns=IRIS_FEATURES)
    frame.to_parquet(folder / "reference.parquet", index=False)
    (folder / "feature_schema.json").write_bytes((artifact / "feature_schema.json").read_bytes())


def build_churn(folder: Path) -> Path:
    """A churn classifier on the generator's features (ColumnTransformer + LogisticRegression,
    only scikit-learn objects pickled), with the drift demo's schema, sealed as churn v1."""
    import joblib
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from mainsail.data.synthetic import generate_churn
    from mainsail.demos.churn import CATEGORICAL, NUMERIC, churn_schema
    from mainsail.registry.manifest import seal_folder

    frame = generate_churn(3000, seed=5)
    cats = list(CATEGORICAL)
    pre = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), NUMERIC),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(missing_values=pd.NA, strategy="constant", fill_value="?"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                cats,
            ),
            (
                "bool",
                make_pipeline(
                    SimpleImputer(missing_values=pd.NA, strategy="most_frequent"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                ["paperless_billing"],
            ),
        ]
    )
    names = [*NUMERIC, *cats, "paperless_billing"]
    x = frame[names].astype({n: "float64" for n in NUMERIC})
    model = Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=500))])
    model.fit(x, frame["churned"])
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, folder / "model.joblib")
    churn_schema().save(folder / "feature_schema.json")
    seal_folder(folder, "churn", 1)
    return folder


def _churn_reference(folder: Path) -> None:
    """Sidecar reference of the churn model; without its `prediction` column (a score there,
    labels from the runtime): the sidecar takes the first served window as that reference."""
    import pandas as pd

    from mainsail.demos.churn import write_churn_reference

    write_churn_reference(folder, rows=5000)
    ref = pd.read_parquet(folder / "reference.parquet").drop(columns=["prediction"])
    ref.to_parquet(folder / "reference.parquet", index=False)


def _churn_bodies(n: int) -> list[dict[str, Any]]:
    """One V2 request per served row (one input per feature), rows from the generator."""
    import pandas as pd

    from mainsail.demos.churn import churn_rows, churn_schema
    from mainsail.serving.v2client import v2_request

    rows, _ = churn_rows(n, seed=11)
    schema = churn_schema()
    return [v2_request(pd.DataFrame([row]), schema) for row in rows]


def _iris_bodies(n: int) -> list[dict[str, Any]]:
    """One `features` [1, 4] matrix request per iris row (the runtime's numpy fast path)."""
    from sklearn.datasets import load_iris

    data = load_iris().data
    return [
        {
            "inputs": [
                {
                    "name": "features",
                    "shape": [1, 4],
                    "datatype": "FP64",
                    "data": [data[i % len(data)].tolist()],
                }
            ]
        }
        for i in range(n)
    ]


def wrk_bodies(
    url: str, bodies: list[dict[str, Any]], seconds: int, connections: int, work: Path
) -> dict[str, Any]:
    """One wrk -t1 run POSTing `bodies` in turn: req/s, p50/p99 (ms), non-2xx count."""
    from bench_serving import _ms

    script = work / f"bodies-{abs(hash(url))}.lua"
    items = ",\n".join(f"[==[{json.dumps(b)}]==]" for b in bodies)
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"local bodies = {{\n{items}\n}}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i % #bodies + 1\n"
        "  return wrk.format(nil, nil, nil, bodies[i])\n"
        "end\n"
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rps is None:
        raise RuntimeError(f"no Requests/sec in wrk output:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    total = re.search(r"(\d+) requests in", out)
    return {
        "requests": int(total.group(1)) if total else 0,
        "rps": float(rps.group(1)),
        "p50_ms": _ms(out, "50%"),
        "p99_ms": _ms(out, "99%"),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(0) if errors else "",
    }


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _feed_counters(metrics_url: str) -> dict[str, dict[str, float]]:
    """`mainsail_drift_feed_rows_total` of MLServer's /metrics, by model and outcome."""
    with urllib.request.urlopen(metrics_url, timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, dict[str, float]] = {}
    pattern = re.compile(
        r'^mainsail_drift_feed_rows_total\{(?=[^}]*model="([^"]+)")(?=[^}]*outcome="([^"]+)")'
        r"[^}]*\}\s+(\S+)$"
    )
    for line in text.splitlines():
        match = pattern.match(line)
        if match:
            out.setdefault(match.group(1), {})[match.group(2)] = float(match.group(3))
    return out


def bench_serving(
    seconds: int, rounds: int, connections: int, layouts: list[str], blocks: int
) -> dict[str, Any]:
    """Part 2 (pipeline env): MLServer + our runtime, drift feed on vs off, under wrk; then
    part 3 (the feed's in-process cost) in a serving-env child while the sidecar runs."""
    from bench_serving import build_iris
    from pinning import LAYOUTS, apply_layout

    from mainsail.drift.process import SidecarProcess
    from mainsail.serving.mlserver import (
        MLServerProcess,
        ServedModel,
        free_port,
        server_settings,
        write_repository,
    )

    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    work = Path(tempfile.mkdtemp(prefix="bench-drift-"))
    try:
        iris = build_iris(work / "iris")
        churn = build_churn(work / "churn")
        refs = work / "refs"
        _iris_reference(iris, refs / "iris" / "1")
        _churn_reference(refs / "churn" / "1")
        sidecar = SidecarProcess(
            reference=str(refs / "{model}" / "{version}"),
            port=free_port(),
            log=work / "sidecar.log",
        )
        repo = work / "repo"
        settings = server_settings(
            repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port()
        )
        feed = {"drift_url": sidecar.url}
        models = [
            ServedModel("iris-off", uri=str(iris)),
            ServedModel("iris-on", uri=str(iris), extra=feed),
            ServedModel("churn-off", uri=str(churn)),
            ServedModel("churn-on", uri=str(churn), extra=feed),
        ]
        write_repository(repo, models, settings)
        bodies = {"iris": _iris_bodies(150), "churn": _churn_bodies(300)}
        with sidecar, MLServerProcess(repo).start([m.name for m in models]) as server:
            assert server.proc is not None and sidecar.proc is not None
            targets = {
                f"{model}_{side}": (f"{server.url}/v2/models/{model}-{side}/infer", bodies[model])
                for model in ("iris", "churn")
                for side in ("off", "on")
            }
            # Same answers with and without the feed before timing anything.
            for model in ("iris", "churn"):
                answers = [
                    _post_json(targets[f"{model}_{side}"][0], bodies[model][0])["outputs"]
                    for side in ("off", "on")
                ]
                assert answers[0] == answers[1], answers
            names = list(targets)
            for name in names:  # warm-up; the sidecar loads each reference on first rows
                wrk_bodies(*targets[name], 2, connections, work)
            runs: dict[str, dict[str, list[dict[str, Any]]]] = {
                layout: {name: [] for name in names} for layout in layouts
            }
            for r in range(rounds):
                # Alternate the order so neither side always runs on a warmer machine.
                order = names if r % 2 == 0 else names[::-1]
                for layout, name in ((lay, name) for lay in layouts for name in order):
                    apply_layout(layout, [server.proc.pid], [sidecar.proc.pid])
                    # CPU per request of the server and the sidecar: less sensitive to a noisy
                    # machine than req/s, and it shows where the feed's cost goes.
                    pids = {"mlserver": server.proc.pid, "sidecar": sidecar.proc.pid}
                    cpu0 = {k: _cpu_s(pid) for k, pid in pids.items()}
                    result = wrk_bodies(*targets[name], seconds, connections, work)
                    for key, pid in pids.items():
                        spent = _cpu_s(pid) - cpu0[key]
                        result[f"{key}_cpu_ms_per_request"] = round(
                            1000 * spent / max(result["requests"], 1), 4
                        )
                    runs[layout][name].append(result)
                    print(f"round {r + 1} {layout} {name}: {result}", flush=True)
                    if result["non_2xx"]:
                        raise RuntimeError(f"{name}: {result['non_2xx']} non-2xx answers")
            apply_layout("shared", [server.proc.pid], [sidecar.proc.pid])
            time.sleep(2)  # let the feeds drain before reading their counters
            counters = _feed_counters(f"http://127.0.0.1:{server.metrics_port}/metrics")
            with urllib.request.urlopen(sidecar.url + "/v1/status", timeout=10) as resp:
                status = json.loads(resp.read())
            feed_cost = _run_feed_cost(
                {"iris": str(iris), "churn": str(churn)}, sidecar.url, blocks
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "server": "MLServer 1.7.1 (parallel_workers 0) + mainsail runtime; one model per side",
        "models": {
            "iris": "LogisticRegression, [1, 4] `features` request (numpy fast path)",
            "churn": "ColumnTransformer + LogisticRegression, 14 per-feature inputs (pandas)",
        },
        "load": (
            f"wrk -t1 -c{connections} -d{seconds}s, {rounds} interleaved rounds, median; "
            "layouts alternate within each round"
        ),
        "rows_per_request": 1,
        "layouts": {layout: LAYOUTS[layout] for layout in layouts},
        "target_on_over_off_min": 0.95,
        **{layout: _serving_summary(by_name) for layout, by_name in runs.items()},
        "feed_rows": {k: v for k, v in counters.items() if k.endswith("-on")},
        "sidecar_checks": {v: s["checks"] for v, s in status["versions"].items()},
        "feed_cost_in_process": feed_cost,
    }


def _serving_summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians and on/off ratios of one layout's wrk runs."""
    summary = {
        name: {
            key: statistics.median(run[key] for run in rs)
            for key in (
                "rps",
                "p50_ms",
                "p99_ms",
                "mlserver_cpu_ms_per_request",
                "sidecar_cpu_ms_per_request",
            )
        }
        for name, rs in runs.items()
    }
    ratios = {
        model: summary[f"{model}_on"]["rps"] / summary[f"{model}_off"]["rps"]
        for model in ("iris", "churn")
    }
    # Each round runs a model's off and on back to back: the median of those paired ratios is
    # less moved by a neighbour's load that comes and goes than the ratio of medians.
    paired = {
        model: statistics.median(
            on["rps"] / off["rps"]
            for on, off in zip(runs[f"{model}_on"], runs[f"{model}_off"], strict=True)
        )
        for model in ("iris", "churn")
    }
    return {
        "summary": summary,
        "on_over_off": ratios,
        "on_over_off_paired_median": paired,
        "runs": runs,
    }


def bench_feed_cost(
    models: dict[str, str], sidecar_url: str, blocks: int, block_s: float = 0.05
) -> dict[str, Any]:
    """Part 3 (serving env): the feed's own cost in the serving process, without HTTP or load
    tool. Two MainsailRuntime instances per model in this process, one with the feed to the
    live sidecar and one without; blocks of predict() calls (about `block_s` each) alternate
    between them, order reversed every other pair, and each block's process CPU time (every
    thread counts) is divided by its requests. Each feed-on block ends with the feed's flush,
    inside its timing: its POSTs are counted on its side, and at a POST per block instead of
    one per linger (conservative). The ratio is the median over pairs: a neighbour's load
    inflates both blocks of one pair alike, and short blocks pair them closely. Without
    MLServer's HTTP layer the denominator is smaller than in real serving, so the relative
    cost comes out higher than there (conservative too)."""
    import asyncio

    from mlserver.settings import ModelParameters, ModelSettings
    from mlserver.types import InferenceRequest

    from mainsail.serving.runtime import MainsailRuntime

    async def run() -> dict[str, Any]:
        result: dict[str, Any] = {}
        for model, uri in models.items():
            bodies = [
                InferenceRequest.model_validate(b)
                for b in (_iris_bodies(150) if model == "iris" else _churn_bodies(300))
            ]
            sides = {}
            for side, extra in (("off", {}), ("on", {"drift_url": sidecar_url})):
                settings = ModelSettings(
                    name=f"{model}-{side}",
                    implementation=MainsailRuntime,
                    parameters=ModelParameters(uri=uri, extra=extra),
                )
                runtime = MainsailRuntime(settings)
                await runtime.load()
                sides[side] = runtime
            for runtime in sides.values():  # warm-up
                start = time.perf_counter()
                for body in bodies:
                    await runtime.predict(body)
                    await asyncio.sleep(0)
            per_block = max(5, int(block_s * len(bodies) / (time.perf_counter() - start)))
            cpu: dict[str, list[float]] = {"off": [], "on": []}
            for b in range(blocks):
                for side in ("off", "on") if b % 2 == 0 else ("on", "off"):
                    runtime = sides[side]
                    start = time.process_time()
                    for i in range(per_block):
                        await runtime.predict(bodies[(b * per_block + i) % len(bodies)])
                        await asyncio.sleep(0)  # the loop's turn, as between served requests
                    if runtime._feed is not None:
                        await runtime._feed.flush()
                    cpu[side].append(1e6 * (time.process_time() - start) / per_block)
            feeds = {}
            for side, runtime in sides.items():
                if side == "on":
                    feeds = runtime._feed.stats.snapshot()
                await runtime.unload()  # the on side flushes its queue first
            pairs = [on / off for on, off in zip(cpu["on"], cpu["off"], strict=True)]
            result[model] = {
                "cpu_us_per_request": {s: statistics.median(v) for s, v in cpu.items()},
                "on_over_off_cpu_paired_median": statistics.median(pairs),
                "implied_throughput_on_over_off": 1 / statistics.median(pairs),
                "feed_rows": feeds,
                "blocks": blocks,
                "per_block": per_block,
            }
        return result

    return asyncio.run(run())


def _run_feed_cost(models: dict[str, str], sidecar_url: str, blocks: int) -> dict[str, Any]:
    """Part 3 in the serving env's python (MLServer and our runtime live there)."""
    from mainsail.serving.mlserver import find_mlserver

    python = find_mlserver().parent / "python"
    spec = json.dumps({"models": models, "sidecar_url": sidecar_url, "blocks": blocks})
    proc = subprocess.run(
        [str(python), __file__, "--feed-child", spec],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"feed-cost child failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        result: dict[str, Any] = json.loads(resp.read())
        return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--seconds", type=int, default=6, help="wrk seconds per serving run")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved serving rounds")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--part", choices=["all", "check", "serving"], default="all")
    parser.add_argument(
        "--layouts",
        default="shared,pinned",
        help="CPU layouts, alternating within each round: shared (every process on every "
        "CPU) and/or pinned (MLServer alone on CPU 0, wrk and the sidecar on the others)",
    )
    parser.add_argument(
        "--blocks", type=int, default=200, help="alternating blocks of the in-process feed cost"
    )
    add_common_args(parser)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--feed-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.feed_child:  # the serving-env child of _run_feed_cost
        spec = json.loads(args.feed_child)
        cost = bench_feed_cost(spec["models"], spec["sidecar_url"], spec["blocks"])
        json.dump(cost, sys.stdout)
        return 0

    if args.child:  # the drift-env child of _run_check: print part 1 as JSON
        json.dump(bench_check(args.repeats), sys.stdout)
        return 0
    if args.quick:
        args.repeats, args.seconds, args.rounds, args.blocks = 3, 1, 1, 2
    run = Run.start("drift" if args.part == "all" else f"drift_{args.part}", args)
    check = serving = None
    if args.part in ("all", "check"):
        check = _run_check(args.repeats)
    if args.part in ("all", "serving"):
        try:
            layouts = parse_layouts(args.layouts)
        except ValueError as err:
            parser.error(str(err))
        serving = bench_serving(args.seconds, args.rounds, args.connections, layouts, args.blocks)
    targets = []
    if check is not None:
        med = check["median_s"]
        print(
            f"check (1000 vs 5000 rows, 20 features): ours {med['ours'] * 1000:.1f} ms, "
            f"KSDrift {med['ksdrift'] * 1000:.1f} ms, scipy loop "
            f"{med['scipy_loop'] * 1000:.1f} ms; ours/KSDrift = "
            f"{check['ours_over_ksdrift']:.2f} (target <= 1.2)"
        )
        targets.append(
            run.target("check: ours / alibi-detect KSDrift", check["ours_over_ksdrift"], "<=",
                       1.2, "x", "seconds per 1,000-row check against 5,000 reference rows")
        )  # fmt: skip
    if serving is not None:
        for layout in serving.get("layouts", {}):
            result = serving[layout]
            for model, ratio in result["on_over_off"].items():
                off = result["summary"][f"{model}_off"]
                on = result["summary"][f"{model}_on"]
                paired = result["on_over_off_paired_median"][model]
                print(
                    f"serving {model} ({layout}): feed off {off['rps']:.0f} req/s "
                    f"(p50 {off['p50_ms']:.1f} ms), feed on {on['rps']:.0f} req/s "
                    f"(p50 {on['p50_ms']:.1f} ms); on/off = {ratio:.3f} (target >= 0.95), "
                    f"paired rounds {paired:.3f}; server CPU per request "
                    f"{off['mlserver_cpu_ms_per_request']:.3f} -> "
                    f"{on['mlserver_cpu_ms_per_request']:.3f} ms, sidecar "
                    f"{on['sidecar_cpu_ms_per_request']:.3f} ms"
                )
                # The worse of the two wrk estimates, as in bench_router.
                targets.append(
                    run.target(f"serving {model} ({layout}): feed on/off req/s",
                               min(ratio, paired), ">=", 0.95, "x",
                               "wrk; worse of ratio of medians and paired median")
                )  # fmt: skip
        for model, cost in (serving.get("feed_cost_in_process") or {}).items():
            cpu = cost["cpu_us_per_request"]
            implied = cost["implied_throughput_on_over_off"]
            print(
                f"{model} in process: {cpu['off']:.0f} -> {cpu['on']:.0f} us CPU per request "
                f"with the feed; implied throughput on/off {implied:.3f} (target >= 0.95)"
            )
            targets.append(
                run.target(f"in process {model}: feed on/off (1 / CPU per request)", implied,
                           ">=", 0.95, "x", "the runtime without HTTP, paired blocks")
            )  # fmt: skip
    return run.finish({"check": check, "serving": serving}, targets)


def _run_check(repeats: int) -> dict[str, Any]:
    try:
        import alibi_detect  # noqa: F401
    except ImportError:
        from mainsail.drift.process import drift_python

        proc = subprocess.run(
            [str(drift_python()), __file__, "--child", "--repeats", str(repeats)],
            capture_output=True,
            text=True,
            check=True,
        )
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return result
    return bench_check(repeats)


if __name__ == "__main__":
    raise SystemExit(main())
