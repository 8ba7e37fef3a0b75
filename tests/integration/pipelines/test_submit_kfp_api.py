"""`submit` talks KFP v2 REST through kfp's own client to a recording stand-in server.

A Kubeflow Pipelines server cannot run here (it needs a Kubernetes cluster, MySQL and Argo), so
the test starts a small HTTP server that answers the v2beta1 endpoints kfp.Client uses, records
every request, and rejects anything that is not a valid KFP v2 call: unknown paths, bodies
without the required fields, and pipeline specs that do not parse as the IR protobuf.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from typer.testing import CliRunner

from mainsail.cli import app
from mainsail.config import ProjectConfig, config_from_json, load_config
from mainsail.pipeline.runner import (
    KfpUnreachableError,
    PipelineError,
    kfp_cron,
    submit,
)
from mainsail.registry.seaweedfs import free_port
from tests.support.configs import REPO, tiny_overrides

pytestmark = pytest.mark.integration

API = "/apis/v2beta1"


@dataclass
class Recorder:
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    refuse_runs: str | None = None
    """When set, run creation is answered 400 with this message (a server-side refusal)."""


def _check_spec(body: dict[str, Any]) -> str | None:
    spec = body.get("pipeline_spec")
    if not isinstance(spec, dict):
        return "pipeline_spec missing"
    # A package with a platform (Kubernetes) section arrives as {pipeline_spec, platform_spec}.
    ir = spec.get("pipeline_spec", spec)
    try:
        parsed = json_format.ParseDict(ir, pipeline_spec_pb2.PipelineSpec())
    except json_format.ParseError as err:
        return f"pipeline_spec is not a PipelineSpec: {err}"
    if not parsed.pipeline_info.name or not parsed.root.dag.tasks:
        return "pipeline_spec has no name or no tasks"
    declared = set(parsed.root.input_definitions.parameters)
    given = set((body.get("runtime_config") or {}).get("parameters") or {})
    if not given <= declared:
        return f"parameters {sorted(given - declared)} are not inputs of the pipeline"
    return None


def _handler(rec: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return None

        def _reply(self, status: int, doc: dict[str, Any]) -> None:
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _fail(self, message: str) -> None:
            rec.errors.append(message)
            self._reply(400, {"error": message, "code": 3})

        def do_GET(self) -> None:
            url = urlparse(self.path)
            rec.requests.append(("GET", url.path, parse_qs(url.query)))
            if url.path == f"{API}/healthz":
                self._reply(200, {"multi_user": False})
            elif url.path == f"{API}/experiments":
                flt = json.loads(parse_qs(url.query).get("filter", ["{}"])[0])
                names = [
                    p.get("string_value") or p.get("stringValue") for p in flt.get("predicates", [])
                ]
                found = [e for e in rec.experiments.values() if e["display_name"] in names]
                self._reply(200, {"experiments": found, "total_size": len(found)} if found else {})
            else:
                self._reply(404, {"error": f"no route {url.path}"})

        def do_POST(self) -> None:
            url = urlparse(self.path)
            try:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            except (TypeError, ValueError):
                self._fail("body is not JSON")
                return
            rec.requests.append(("POST", url.path, body))
            if url.path == f"{API}/experiments":
                if not body.get("display_name"):
                    self._fail("experiment display_name missing")
                    return
                exp = {"experiment_id": str(uuid.uuid4()), **body}
                rec.experiments[exp["experiment_id"]] = exp
                self._reply(200, exp)
            elif url.path in (f"{API}/runs", f"{API}/recurringruns"):
                problem = _check_spec(body)
                if body.get("experiment_id") not in rec.experiments:
                    problem = f"unknown experiment_id {body.get('experiment_id')!r}"
                if not body.get("display_name"):
                    problem = "display_name missing"
                if url.path.endswith("recurringruns") and not (
                    (body.get("trigger") or {}).get("cron_schedule", {}).get("cron")
                ):
                    problem = "recurring run without a cron trigger"
                if problem:
                    self._fail(problem)
                    return
                if rec.refuse_runs:
                    self._reply(400, {"error": rec.refuse_runs, "code": 8})
                    return
                key = "run_id" if url.path.endswith("/runs") else "recurring_run_id"
                self._reply(200, {key: str(uuid.uuid4()), **body})
            else:
                self._reply(404, {"error": f"no route {url.path}"})

    return Handler


@pytest.fixture
def kfp_stand_in() -> Iterator[tuple[str, Recorder]]:
    rec = Recorder()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rec))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", rec
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def cfg(tmp_path: Path) -> ProjectConfig:
    return load_config(REPO / "configs" / "churn.yaml", tiny_overrides(tmp_path))


def test_submit_creates_experiment_and_run_with_parameters(
    kfp_stand_in: tuple[str, Recorder], cfg: ProjectConfig
) -> None:
    host, rec = kfp_stand_in
    result = submit(cfg, host, experiment="churn-exp", data_uri="/data/churn.parquet")
    assert rec.errors == []
    posts = [(path, body) for method, path, body in rec.requests if method == "POST"]
    assert [p for p, _ in posts] == [f"{API}/experiments", f"{API}/runs"]
    run = posts[1][1]
    assert run["display_name"] == result.run_name and result.run_name.startswith("churn-training-")
    assert run["experiment_id"] == result.experiment_id
    assert rec.experiments[result.experiment_id]["display_name"] == "churn-exp"
    params = run["runtime_config"]["parameters"]
    assert params["data_uri"] == "/data/churn.parquet"
    assert params["deploy_canary"] is False
    assert config_from_json(params["config_json"]) == cfg
    ir = run["pipeline_spec"].get("pipeline_spec", run["pipeline_spec"])
    assert ir["pipelineInfo"]["name"] == "mainsail-training"
    # Pod labels and the pipeline image travel in the compiled spec.
    platform = json.dumps(run["pipeline_spec"].get("platform_spec", {}))
    assert '"mainsail.io/model": "churn"' in platform
    assert "ghcr.io/mainsail-mlops/mainsail-pipeline:0.1.0" in json.dumps(ir)
    assert result.run_id and result.recurring_run_id is None


def test_submit_cli_set_overrides_reach_the_submitted_run(
    kfp_stand_in: tuple[str, Recorder], tmp_path: Path
) -> None:
    """`mainsail submit --set k=v`: the run's config is the file WITH the overrides (they were
    once validated, then dropped when the runner read the file again)."""
    host, rec = kfp_stand_in
    config = tmp_path / "churn.yaml"
    config.write_text((REPO / "configs" / "churn.yaml").read_text())
    sets = ["tune.num_trials=7", "description=submitted with --set", "evaluate.cv_folds=3"]
    args = ["submit", str(config), "--host", host, "--pipeline", "retraining"]
    result = CliRunner().invoke(app, [*args, *(a for s in sets for a in ("--set", s))])
    assert result.exit_code == 0, result.output
    assert rec.errors == []
    run = next(body for method, path, body in rec.requests if path == f"{API}/runs")
    submitted = config_from_json(run["runtime_config"]["parameters"]["config_json"])
    assert submitted.tune.num_trials == 7 and submitted.evaluate.cv_folds == 3
    assert submitted.description == "submitted with --set"
    assert submitted == load_config(
        config,
        {"tune.num_trials": 7, "description": "submitted with --set", "evaluate.cv_folds": 3},
    )


def test_submit_reads_a_config_file_with_overrides(
    kfp_stand_in: tuple[str, Recorder], tmp_path: Path
) -> None:
    host, rec = kfp_stand_in
    overrides = tiny_overrides(tmp_path)
    submit(REPO / "configs" / "churn.yaml", host, overrides=overrides)
    run = next(body for method, path, body in rec.requests if path == f"{API}/runs")
    submitted = config_from_json(run["runtime_config"]["parameters"]["config_json"])
    assert submitted == load_config(REPO / "configs" / "churn.yaml", overrides)


def test_submit_with_schedule_creates_a_recurring_run(
    kfp_stand_in: tuple[str, Recorder], cfg: ProjectConfig
) -> None:
    host, rec = kfp_stand_in
    result = submit(cfg, host, schedule="0 3 * * *", pipeline="retraining")
    assert rec.errors == []
    body = next(b for m, p, b in rec.requests if p == f"{API}/recurringruns")
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"
    assert body["max_concurrency"] == "1" or body["max_concurrency"] == 1
    assert body["mode"] == "ENABLE"
    assert "deploy_canary" not in body["runtime_config"]["parameters"]
    assert result.recurring_run_id and result.run_id is None
    # The experiment is created once and then found by name.
    submit(cfg, host, schedule="0 3 * * *", pipeline="retraining")
    creates = [p for m, p, _ in rec.requests if m == "POST" and p == f"{API}/experiments"]
    assert len(creates) == 1


def test_submit_without_a_server_says_so(cfg: ProjectConfig) -> None:
    host = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(KfpUnreachableError, match="no Kubeflow Pipelines API server reachable"):
        submit(cfg, host, connect_timeout_s=1.0)


def test_submit_reports_a_refusal_from_the_server(
    kfp_stand_in: tuple[str, Recorder], cfg: ProjectConfig
) -> None:
    host, rec = kfp_stand_in
    rec.refuse_runs = "run quota exceeded in namespace kubeflow"
    with pytest.raises(
        PipelineError, match=r"refused the submission: HTTP 400.*run quota exceeded"
    ):
        submit(cfg, host)


def test_cron_schedules_are_checked() -> None:
    assert kfp_cron("*/15 * * * *") == "0 */15 * * * *"
    assert kfp_cron("0 0 3 * * MON-FRI") == "0 0 3 * * MON-FRI"
    with pytest.raises(PipelineError, match="not a cron expression"):
        kfp_cron("every day")
