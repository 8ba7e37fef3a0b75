"""Serving throughput and latency: our MLServer runtime against MLServer's stock sklearn runtime
and a bare ASGI endpoint (the ceiling), same model, same load tool, same run.

    .venv/pipeline/bin/python bench/bench_serving.py [--seconds 10] [--rounds 3]

Model: a one-row iris LogisticRegression (scikit-learn), fitted on a DataFrame as training
does. Targets, all on loopback, one request shape each:

  (a) stock    MLServer 1.7.1 + mlserver_sklearn.SKLearnModel, one [1, 4] FP64 input
  (b) mainsail MLServer 1.7.1 + mainsail.serving.runtime.MainsailRuntime, the same [1, 4]
               request (our `features` matrix layout), validated against the feature schema,
               label + probability out
  (b2)         the same runtime with one input per feature (our general request layout)
  (d) bare     uvicorn + a raw ASGI app: json.loads, numpy, model.predict, json.dumps

(a) and (b) are two models of the same MLServer process (parallel_workers 0). Load: wrk
(`apt-get install -y wrk`), -t1 -c16, `--seconds` per run; rounds interleave the targets so a
noisy neighbour hurts them alike; each figure is the median over rounds. Any non-2xx answer
fails the benchmark. Results: bench/results/serving.json. The router helper adds (c).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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

RESULTS = ROOT / "bench" / "results" / "serving.json"
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
    url: str, body: dict[str, Any], seconds: int, connections: int, work: Path
) -> dict[str, Any]:
    """One wrk run: req/s, p50/p99 (ms), non-2xx count."""
    script = work / f"post-{abs(hash(url))}.lua"
    payload = json.dumps(body)
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(payload)}\n"
    )
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
    return {
        "rps": rps,
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


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")

    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    bare: subprocess.Popen[bytes] | None = None
    try:
        artifact = build_iris(work / "iris")
        repo = work / "repo"
        settings = server_settings(
            repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port()
        )
        models = [
            ServedModel(
                "iris-stock",
                implementation="mlserver_sklearn.SKLearnModel",
                uri=str(artifact / "model.joblib"),
            ),
            ServedModel("iris-mainsail", uri=str(artifact), version="1"),
        ]
        write_repository(repo, models, settings)
        server = MLServerProcess(repo).start([m.name for m in models])

        (work / "bare_app.py").write_text(
            BARE_APP.format(model_path=str(artifact / "model.joblib"))
        )
        bare_port = free_port()
        python = find_mlserver().parent / "python"
        bare = subprocess.Popen(
            [
                str(python),
                "-m",
                "uvicorn",
                "bare_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(bare_port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_http(f"http://127.0.0.1:{bare_port}/")

        stock_body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [ROW]}]}
        matrix_body = {
            "inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP64", "data": [ROW]}]
        }
        per_feature_body = {
            "inputs": [
                {"name": n, "shape": [1], "datatype": "FP64", "data": [v]}
                for n, v in zip(FEATURES, ROW, strict=True)
            ]
        }
        targets = {
            "a_stock_sklearn": (f"{server.url}/v2/models/iris-stock/infer", stock_body),
            "b_mainsail_runtime": (f"{server.url}/v2/models/iris-mainsail/infer", matrix_body),
            "b2_mainsail_per_feature": (
                f"{server.url}/v2/models/iris-mainsail/infer",
                per_feature_body,
            ),
            "d_bare_asgi": (f"http://127.0.0.1:{bare_port}/", stock_body),
        }
        # Same prediction everywhere before timing anything.
        answers = {
            name: _post(url, body)["outputs"][0]["data"] for name, (url, body) in targets.items()
        }
        print("answers:", answers)
        assert answers["b_mainsail_runtime"] == [str(answers["a_stock_sklearn"][0])]
        assert answers["b2_mainsail_per_feature"] == answers["b_mainsail_runtime"]

        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
        for url, body in targets.values():  # warm-up
            wrk(url, body, 2, args.connections, work)
        for r in range(args.rounds):
            for name, (url, body) in targets.items():
                result = wrk(url, body, args.seconds, args.connections, work)
                runs[name].append(result)
                print(f"round {r + 1} {name}: {result}")
                if result["non_2xx"]:
                    raise RuntimeError(f"{name}: {result['non_2xx']} non-2xx answers")
        server.stop()
    finally:
        if bare is not None and bare.poll() is None:
            os.killpg(bare.pid, 15)
            bare.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    summary = {
        name: {
            "rps": statistics.median(r["rps"] for r in rs),
            "p50_ms": statistics.median(r["p50_ms"] for r in rs),
            "p99_ms": statistics.median(r["p99_ms"] for r in rs),
        }
        for name, rs in runs.items()
    }
    ratio = summary["b_mainsail_runtime"]["rps"] / summary["a_stock_sklearn"]["rps"]
    ratio2 = summary["b2_mainsail_per_feature"]["rps"] / summary["a_stock_sklearn"]["rps"]
    result = {
        "benchmark": "serving",
        "model": "iris LogisticRegression, one row per request",
        "load": f"wrk -t1 -c{args.connections} -d{args.seconds}s, {args.rounds} rounds, median",
        "mlserver": {"version": "1.7.1", "parallel_workers": 0},
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_at_end": os.getloadavg(),
        },
        "summary": summary,
        "b_over_a_throughput": round(ratio, 3),
        "b2_over_a_throughput": round(ratio2, 3),
        "target_b_over_a": 1.0,
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"(b)/(a) throughput: {ratio:.2f}x (target >= 1.0x); (b2)/(a): {ratio2:.2f}x")


if __name__ == "__main__":
    main()
