"""Serving side by side: the Mainsail MLServer runtime against MLServer's stock sklearn
runtime, BentoML serving the same model, and a bare ASGI endpoint (the ceiling); same model,
same load tool, same run.

    .venv/pipeline/bin/python bench/bench_serving.py [--seconds 8] [--rounds 3] [--pairs 12]
        [--quick]

Model: an iris LogisticRegression (scikit-learn), fitted on a DataFrame as training does, one
joblib file loaded by every server. Requests of 1 row and of 32 rows. Servers, all on loopback:

  stock     MLServer 1.7.1 + mlserver_sklearn.SKLearnModel, one [n, 4] FP64 input
  mainsail  MLServer 1.7.1 + mainsail.serving.runtime.MainsailRuntime, the same [n, 4] request
            (our `features` matrix layout), validated against the feature schema, label and
            probability out
  mainsail_per_feature  the same runtime with one input per feature (our general layout; for
            information)
  bentoml   BentoML (`bentoml serve`, one worker, access log off) with a `@bentoml.api`
            taking and returning a numpy array: the peer users pick instead. It runs in its own
            venv (`make bench-env`: requirements/bench.lock), since bentoml 1.4 needs starlette
            >= 1 and MLServer 1.7.1 pins starlette 0.46
  bare      uvicorn + a raw ASGI app: json.loads, numpy, model.predict, json.dumps (the ceiling)

stock and mainsail are two models of one MLServer process (parallel_workers 0); every server
is one process. REST: wrk (`apt-get install -y wrk`), -t1 -c16, `--seconds` per run; rounds
interleave the servers so a noisy neighbour hurts them alike, each round starting one server
later; figures are medians over rounds. Then stock against Mainsail, the close comparison:
`--pairs` pairs of `--pair-seconds` runs per request size and transport, the two sides back to
back, alternating which goes first (gRPC is measured by these pairs only).
gRPC: MLServer's gRPC endpoint (stock and mainsail), a closed loop of 16 concurrent calls from
grpc.aio in the serving venv; BentoML 1.4's service API has no gRPC server, the bare app none.
Any non-2xx answer fails the benchmark.

Targets, per request size (REST): mainsail >= 1.0x stock and >= 1.0x bentoml throughput, at a
p99 no worse than theirs; gRPC: mainsail >= 1.0x stock throughput. Against stock, each target
is the median of the pairs' ratios (runs of one server a minute apart on this shared host
differ by 10-20%: more than the gap judged); against bentoml, the ratio of the rounds' medians. The
ratio to the bare ceiling is reported. Results: bench/results/serving.json (bench/common.py
writes the header).
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from common import Run, add_common_args  # noqa: E402

from mainsail.data.schema import FeatureSchema, FeatureSpec  # noqa: E402
from mainsail.registry.manifest import seal_folder  # noqa: E402
from mainsail.serving.mlserver import (  # noqa: E402
    MLServerProcess,
    ServedModel,
    find_mlserver,
    free_port,
    server_settings,
    write_repository,
)

SIZES = (1, 32)
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROW = [5.9, 3.0, 5.1, 1.8]

BARE_APP = """
import json, joblib, numpy as np
MODEL = joblib.load({model_path!r})

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    request = json.loads(body)
    x = np.asarray(request["inputs"][0]["data"], dtype=np.float64).reshape(-1, 4)
    labels = MODEL.predict(x).tolist()
    out = json.dumps({{"outputs": [{{"name": "predict", "shape": [len(labels)],
                       "datatype": "INT64", "data": labels}}]}}).encode()
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]}})
    await send({{"type": "http.response.body", "body": out}})
"""


def build_iris(folder: Path) -> Path:
    """The iris LogisticRegression artifact (model, schema, manifest)."""
    import joblib
    import pandas as pd
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    iris = load_iris()
    frame = pd.DataFrame(iris.data, columns=FEATURES)
    model = LogisticRegression(max_iter=1000, random_state=0).fit(frame, iris.target)
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, folder / "model.joblib")
    FeatureSchema(
        features=[
            FeatureSpec(
                name=n,
                kind="numeric",
                dtype="float64",
                nullable=False,
                min=float(frame[n].min()),
                max=float(frame[n].max()),
            )
            for n in FEATURES
        ],
        target="species",
        problem_type="classification",
        classes=[str(c) for c in range(3)],
    ).save(folder / "feature_schema.json")
    seal_folder(folder, "iris", 1)
    return folder


def wrk(
    url: str, seconds: int, connections: int, work: Path, *, body: dict[str, Any]
) -> dict[str, Any]:
    """One wrk run: req/s, p50/p99 (ms), non-2xx count."""
    script = work / f"post-{abs(hash((url, json.dumps(body))))}.lua"
    payload = json.dumps(body)
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(payload)}\n"
    )
    return run_wrk(script, url, seconds, connections)


def run_wrk(script: Path, url: str, seconds: int, connections: int) -> dict[str, Any]:
    """One wrk run of a Lua `script`: req/s, p50/p99 (ms), answers, non-2xx count."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    total = re.search(r"(\d+) requests in", out)
    return {
        "rps": rps,
        "requests": int(total.group(1)) if total else 0,
        "p50_ms": _ms(out, "50%"),
        "p99_ms": _ms(out, "99%"),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(0) if errors else "",
    }


def _ms(text: str, pct: str) -> float:
    match = re.search(rf"^\s+{re.escape(pct)}\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no {pct} latency in wrk output:\n{text}")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


BENTO_SERVICE = """
import os

import bentoml
import joblib
import numpy as np

MODEL_PATH = os.environ["BENCH_MODEL_PATH"]


@bentoml.service(workers=1)
class Iris:
    def __init__(self) -> None:
        self.model = joblib.load(MODEL_PATH)

    @bentoml.api
    def predict(self, inputs: np.ndarray) -> np.ndarray:
        return self.model.predict(inputs)
"""


def bench_python() -> Path | None:
    """The bench venv's python (BentoML), or None when it was not built (`make bench-env`)."""
    venv = Path(os.environ.get("MAINSAIL_BENCH_VENV") or ROOT / ".venv" / "bench")
    python = venv / "bin" / "python"
    return python if python.exists() else None


def _spawn(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(5)


def _rows(n: int) -> list[list[float]]:
    from sklearn.datasets import load_iris

    data = load_iris().data
    return [[float(v) for v in data[(37 * i) % len(data)]] for i in range(n)]


def grpc_run(
    target: str, model: str, rows: list[list[float]], name: str, seconds: int
) -> dict[str, Any]:
    python = find_mlserver().parent / "python"
    out = subprocess.run(
        [
            str(python),
            str(ROOT / "bench" / "grpc_load.py"),
            target,
            model,
            "--rows-json",
            json.dumps(rows),
            "--input-name",
            name,
            "--seconds",
            str(seconds),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


PAIRED = "median of paired short runs"
GRPC_MODELS = {"stock": ("iris-stock", "x"), "mainsail": ("iris-mainsail", "features")}
"""Per side, the model MLServer serves and its input's name."""


def rest_checked(name: str, target: tuple[str, Any], seconds: int, args: Any, work: Path) -> Any:
    """One wrk run of `target` (url, body); any non-2xx answer fails the benchmark."""
    url, body = target
    result = wrk(url, seconds, args.connections, work, body=body)
    if result["non_2xx"]:
        raise RuntimeError(f"{name}: {result['non_2xx']} non-2xx answers")
    return result


def grpc_checked(side: str, n: int, grpc_port: int, seconds: int) -> Any:
    """One gRPC run of `side`'s model with `n`-row requests; any failed call fails it."""
    model, name = GRPC_MODELS[side]
    result = grpc_run(f"127.0.0.1:{grpc_port}", model, _rows(n), name, seconds)
    if result["errors"]:
        raise RuntimeError(f"grpc_{side}_{n}: {result['errors']} failed calls")
    return result


def paired_runs(
    targets: dict[str, tuple[str, dict[str, Any]]], grpc_port: int | None, args: Any, work: Path
) -> dict[str, list[dict[str, dict[str, Any]]]]:
    """Stock against Mainsail, the comparison the targets judge closely: `--pairs` pairs of
    short runs per request size and transport, the two sides back to back, alternating which
    goes first (stock-mainsail, then mainsail-stock). On a shared host runs of one server a
    minute apart differ by 10-20% (12-07), more than the gap being judged; a pair shares the
    host's state of the moment, and the median of many pairs' ratios keeps little of it."""
    paired: dict[str, list[dict[str, dict[str, Any]]]] = {}
    for p in range(args.pairs):
        order = ("stock", "mainsail") if p % 2 == 0 else ("mainsail", "stock")
        for n in SIZES:
            pair = {s: rest_checked(f"{s}_{n}", targets[f"{s}_{n}"], args.pair_seconds, args, work)
                    for s in order}  # fmt: skip
            paired.setdefault(f"rest_{n}", []).append(pair)
            if grpc_port is not None:
                paired.setdefault(f"grpc_{n}", []).append(
                    {s: grpc_checked(s, n, grpc_port, args.pair_seconds) for s in order}
                )
        last = paired[f"rest_{SIZES[-1]}"][-1]
        print(f"pair {p + 1}: REST {SIZES[-1]} rows mainsail/stock "
              f"{last['mainsail']['rps'] / last['stock']['rps']:.3f}", flush=True)  # fmt: skip
    return paired


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--pairs", type=int, default=12, help="short stock/mainsail run pairs per comparison"
    )
    parser.add_argument("--pair-seconds", type=int, default=2, help="seconds per paired run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--no-grpc", action="store_true", help="REST only")
    add_common_args(parser)
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.pairs, args.pair_seconds = 1, 1, 2, 1
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    run = Run.start("serving", args)
    notes: list[str] = []
    bento_python = bench_python()
    if bento_python is None:
        notes.append(
            "BentoML not measured: its venv is missing (`make bench-env` builds it from "
            "requirements/bench.lock; MAINSAIL_BENCH_VENV=DIR if it is elsewhere)"
        )
        print(notes[-1], file=sys.stderr)

    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    procs: list[subprocess.Popen[bytes]] = []
    server = None
    runs: dict[str, list[dict[str, Any]]] = {}
    try:
        artifact = build_iris(work / "iris")
        model_path = str(artifact / "model.joblib")
        repo = work / "repo"
        grpc_port = free_port()
        settings = server_settings(
            repo, http_port=free_port(), grpc_port=grpc_port, metrics_port=free_port()
        )
        models = [
            ServedModel(
                "iris-stock", implementation="mlserver_sklearn.SKLearnModel", uri=model_path
            ),
            ServedModel("iris-mainsail", uri=str(artifact), version="1"),
        ]
        write_repository(repo, models, settings)
        server = MLServerProcess(repo).start([m.name for m in models])

        (work / "bare_app.py").write_text(BARE_APP.format(model_path=model_path))
        bare_port = free_port()
        python = find_mlserver().parent / "python"
        uvicorn = [str(python), "-m", "uvicorn", "bare_app:app", "--host", "127.0.0.1"]
        quiet = ["--no-access-log", "--log-level", "warning"]
        procs.append(_spawn([*uvicorn, "--port", str(bare_port), *quiet], work))
        _wait_http(f"http://127.0.0.1:{bare_port}/")
        bento_port = None
        if bento_python is not None:
            (work / "bento_service.py").write_text(BENTO_SERVICE)
            bento_port = free_port()
            procs.append(
                _spawn(
                    [str(bento_python), "-m", "bentoml", "serve", "bento_service:Iris",
                     "--host", "127.0.0.1", "--port", str(bento_port)],
                    work,
                    {
                        "BENCH_MODEL_PATH": model_path,
                        "BENTOML_DO_NOT_TRACK": "True",
                        # MLServer and uvicorn run without access logs too.
                        "BENTOML_CONFIG_OPTIONS": "api_server.logging.access.enabled=false",
                    },
                )
            )  # fmt: skip
            _wait_http(f"http://127.0.0.1:{bento_port}/readyz", timeout=120)

        targets: dict[str, tuple[str, dict[str, Any]]] = {}
        for n in SIZES:
            rows = _rows(n)
            matrix = {"shape": [n, 4], "datatype": "FP64", "data": rows}
            stock_body = {"inputs": [{"name": "x", **matrix}]}
            per_feature = {
                "inputs": [
                    {"name": f, "shape": [n], "datatype": "FP64", "data": [r[j] for r in rows]}
                    for j, f in enumerate(FEATURES)
                ]
            }
            url = f"{server.url}/v2/models"
            targets[f"stock_{n}"] = (f"{url}/iris-stock/infer", stock_body)
            targets[f"mainsail_{n}"] = (
                f"{url}/iris-mainsail/infer",
                {"inputs": [{"name": "features", **matrix}]},
            )
            targets[f"mainsail_per_feature_{n}"] = (f"{url}/iris-mainsail/infer", per_feature)
            if bento_port is not None:
                targets[f"bentoml_{n}"] = (
                    f"http://127.0.0.1:{bento_port}/predict",
                    {"inputs": rows},
                )
            targets[f"bare_{n}"] = (f"http://127.0.0.1:{bare_port}/", stock_body)
        # Same predictions everywhere before timing anything.
        answers = {}
        for name, (url, body) in targets.items():
            out = _post(url, body)
            labels = out if isinstance(out, list) else out["outputs"][0]["data"]
            answers[name] = [str(x) for x in labels]
        for n in SIZES:
            same = {k: v for k, v in answers.items() if k.endswith(f"_{n}")}
            if len({json.dumps(v) for v in same.values()}) != 1:
                raise RuntimeError(f"servers disagree on the {n}-row request: {same}")

        runs = {name: [] for name in targets}
        for url, body in targets.values():  # warm-up
            wrk(url, 1 if args.quick else 2, args.connections, work, body=body)
        for n in SIZES if not args.no_grpc else ():
            for side in GRPC_MODELS:
                grpc_checked(side, n, grpc_port, 1)
        names = list(targets)
        for r in range(args.rounds):
            # Each round starts one server later, so no server always runs first or last: the
            # machine's drift over a round hits them alike.
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                result = rest_checked(name, targets[name], args.seconds, args, work)
                runs[name].append(result)
                print(f"round {r + 1} {name}: {result}", flush=True)
        paired = paired_runs(targets, None if args.no_grpc else grpc_port, args, work)
    finally:
        if server is not None:
            server.stop()
        for proc in procs:
            _stop(proc)
        shutil.rmtree(work, ignore_errors=True)

    def med(rs: list[dict[str, Any]]) -> dict[str, float]:
        return {k: statistics.median(r[k] for r in rs) for k in ("rps", "p50_ms", "p99_ms")}

    summary = {name: med(rs) for name, rs in runs.items()}
    # gRPC per side: medians over the pairs' runs (the pairs are its only runs).
    grpc_summary = {
        f"grpc_{side}_{n}": med([pair[side] for pair in paired[f"grpc_{n}"]])
        for n in SIZES
        for side in GRPC_MODELS
        if f"grpc_{n}" in paired
    }
    ratios: dict[str, Any] = {}
    checks = []

    def paired_median(key: str, field: str) -> float:
        return statistics.median(p["mainsail"][field] / p["stock"][field] for p in paired[key])

    for n in SIZES:
        ours = summary[f"mainsail_{n}"]
        row: dict[str, Any] = {
            "to_bare_ceiling": round(ours["rps"] / summary[f"bare_{n}"]["rps"], 3)
        }
        for peer in ("stock", "bentoml"):
            other = summary.get(f"{peer}_{n}")
            rps_ratio = ours["rps"] / other["rps"] if other else None
            p99_ratio = ours["p99_ms"] / other["p99_ms"] if other else None
            if peer == "stock":  # the paired runs judge the close comparison
                rps_ratio = paired_median(f"rest_{n}", "rps")
                p99_ratio = paired_median(f"rest_{n}", "p99_ms")
            row[f"to_{peer}_rps"] = None if rps_ratio is None else round(rps_ratio, 3)
            row[f"to_{peer}_p99"] = None if p99_ratio is None else round(p99_ratio, 3)
            label = "MLServer stock" if peer == "stock" else "BentoML"
            how = PAIRED if peer == "stock" else "medians over rounds"
            checks.append(
                run.target(f"REST {n} row(s): mainsail/{peer} req/s", rps_ratio, ">=", 1.0, "x",
                           f"Mainsail runtime over {label}, wrk -c{args.connections}, {how}")
            )  # fmt: skip
            checks.append(
                run.target(f"REST {n} row(s): mainsail/{peer} p99", p99_ratio, "<=", 1.0, "x",
                           f"equal or better p99 than {label}, {how}")
            )  # fmt: skip
        if grpc_summary:
            g = paired_median(f"grpc_{n}", "rps")
            row["grpc_to_stock_rps"] = round(g, 3)
            checks.append(
                run.target(f"gRPC {n} row(s): mainsail/stock req/s", g, ">=", 1.0, "x",
                           f"MLServer gRPC, 16 calls in flight (grpc.aio), {PAIRED}")
            )  # fmt: skip
        ratios[f"{n}_rows"] = row
    result = {
        "model": "iris LogisticRegression; requests of 1 and 32 rows",
        "load": f"wrk -t1 -c{args.connections} -d{args.seconds}s, {args.rounds} rounds, median",
        "paired_load": f"{args.pairs} pairs of {args.pair_seconds}s runs per comparison, "
        "alternating which side goes first; the stock targets are medians of the pairs' ratios",
        "grpc_load": None
        if args.no_grpc
        else "bench/grpc_load.py, 16 calls in flight, in the pairs only",
        "servers": {
            "stock": "MLServer 1.7.1 + mlserver_sklearn.SKLearnModel (parallel_workers 0)",
            "mainsail": "MLServer 1.7.1 + MainsailRuntime, `features` matrix input",
            "mainsail_per_feature": "the same, one input per feature (information)",
            "bentoml": "unavailable" if bento_python is None else _bentoml_version(bento_python),
            "bare": "uvicorn + raw ASGI app (the ceiling)",
        },
        "summary": summary,
        "grpc_summary": grpc_summary,
        "mainsail_ratios": ratios,
        "runs": runs,
        "paired_runs": paired,
    }
    print(json.dumps(ratios, indent=2))
    return run.finish(result, checks, notes)


def _bentoml_version(python: Path) -> str:
    out = subprocess.run(
        [str(python), "-c", "import bentoml; print(bentoml.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return f"BentoML {out.stdout.strip()} (`bentoml serve`, 1 worker, access log off)"


if __name__ == "__main__":
    sys.exit(main())
