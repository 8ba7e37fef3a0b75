"""`up` starts SeaweedFS, both MLServers and the router; `status` sees them; `down` stops
exactly them. Real processes throughout."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from mainsail.config import ProjectConfig
from mainsail.stack.manager import status
from mainsail.stack.process import read_state
from tests.support.stack import REPO, TOKEN, iris_request, write_iris_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_status_reports_every_process_healthy(running_stack: ProjectConfig) -> None:
    rows = {row["name"]: row for row in status(running_stack)}
    assert list(rows) == ["seaweedfs", "mlserver-champion", "mlserver-challenger", "router"]
    assert all(row["health"] == "healthy" for row in rows.values()), rows
    assert rows["router"]["port"] == running_stack.stack.router.port


def test_router_serves_both_versions_with_their_labels(running_stack: ProjectConfig) -> None:
    url = f"http://127.0.0.1:{running_stack.stack.router.port}"
    with httpx.Client(base_url=url, timeout=10) as client:
        versions = {
            client.post("/v2/models/iris/infer", json=iris_request()).headers[
                "x-mainsail-model-version"
            ]
            for _ in range(120)
        }
        state = client.get("/admin/state", headers={"authorization": f"Bearer {TOKEN}"}).json()
        r = client.post("/v2/models/iris/infer", json=iris_request())
    assert versions == {"1", "2"}
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [0]
    assert state["variants"]["champion"]["healthy"] and state["variants"]["challenger"]["healthy"]


def test_second_up_is_refused_while_running(running_stack: ProjectConfig) -> None:
    from mainsail.stack.manager import up
    from mainsail.stack.process import StackError

    with pytest.raises(StackError, match="already running"):
        up(running_stack)
    # Every recorded pid is a live process group leader of ours.
    for proc in read_state(running_stack.stack.data_dir):
        assert psutil.pid_exists(proc.pid) and proc.alive()


def _config_file(cfg: ProjectConfig, tmp_path: Path) -> Path:
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return path


def test_status_command_prints_a_table_and_exit_code(
    running_stack: ProjectConfig, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from mainsail.cli.stack import app

    result = CliRunner().invoke(
        app, ["status", "--config", str(_config_file(running_stack, tmp_path))]
    )
    assert result.exit_code == 0, result.output
    for name in ("seaweedfs", "mlserver-champion", "mlserver-challenger", "router"):
        assert name in result.output
    assert "healthy" in result.output and "unhealthy" not in result.output


def test_deploy_command_dry_run_prints_seldon_yaml(
    running_stack: ProjectConfig, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from mainsail.cli.deploy import app
    from mainsail.registry import open_registry

    cfg = running_stack
    registry = open_registry(cfg)
    registry.ensure_bucket()
    versions = [v.version for v in registry.versions(cfg.name)]
    if len(versions) < 2:
        for i in range(2):
            folder = write_iris_model(tmp_path / f"a{i}", str(i), 1.0)
            (folder / "model-settings.json").unlink()
            (folder / "feature_schema.json").write_text("{}")
            registry.publish(cfg.name, folder)
        versions = [v.version for v in registry.versions(cfg.name)]
    registry.promote(cfg.name, versions[0], alias="champion")
    before = registry.aliases(cfg.name)
    config = str(_config_file(cfg, tmp_path))
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["iris", "--canary", "15", "--backend", "kubernetes", "--dry-run", "--config", config],
    )
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.stdout))
    assert [d["kind"] for d in docs] == ["Model", "Model", "Experiment"]
    assert docs[-1]["spec"]["candidates"][1] == {"name": f"iris-v{versions[-1]}", "weight": 15}
    assert "mirror" not in docs[-1]["spec"]
    assert registry.aliases(cfg.name) == before
    # Without --canary the challenger starts in the shadow (promotion.shadow.enabled): weight 0,
    # every request mirrored to it.
    result = runner.invoke(
        app, ["iris", "--backend", "kubernetes", "--dry-run", "--config", config]
    )
    assert result.exit_code == 0, result.output
    spec = list(yaml.safe_load_all(result.stdout))[-1]["spec"]
    assert spec["candidates"][1] == {"name": f"iris-v{versions[-1]}", "weight": 0}
    assert spec["mirror"] == {"name": f"iris-v{versions[-1]}", "percent": 100}
    result = runner.invoke(app, ["iris", "--shadow", "--canary", "10", "--config", config])
    assert result.exit_code == 2 and "exclude each other" in result.output
    result = runner.invoke(app, ["churn", "--dry-run", "--config", config])
    assert result.exit_code == 2 and "configures model 'iris', not 'churn'" in result.output


def test_tritonclient_speaks_v2_through_the_router(running_stack: ProjectConfig) -> None:
    """An independent V2 client (tritonclient, in the serving env) against the router."""
    code = f"""
import numpy as np
import tritonclient.http as httpclient
client = httpclient.InferenceServerClient("127.0.0.1:{running_stack.stack.router.port}")
assert client.is_server_live()
x = httpclient.InferInput("x", [2, 4], "FP64")
x.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]), binary_data=False)
result = client.infer("iris", [x], headers={{"x-mainsail-session": "triton"}})
print(result.as_numpy("predict").tolist())
"""
    out = subprocess.run(
        [str(REPO / ".venv" / "serving" / "bin" / "python"), "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[[0], [2]]"  # setosa, virginica
