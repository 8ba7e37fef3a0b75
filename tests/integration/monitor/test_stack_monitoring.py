"""The stack providers of the sidecar, Prometheus, Alertmanager and the trigger start for real.

`mainsail up` runs each ProcessSpec that the providers return; here the specs are started
directly (the stack manager is tested with the stack), and each must become healthy.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from mainsail.config import load_config
from mainsail.demos.churn import write_churn_reference
from mainsail.registry.seaweedfs import free_port
from mainsail.stack.drift import drift_specs
from mainsail.stack.monitoring import monitoring_specs
from mainsail.stack.process import ProcessSpec
from mainsail.stack.providers import StackContext

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "churn.yaml"


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def test_monitoring_processes_of_the_stack_start_and_answer(tmp_path: Path) -> None:
    write_churn_reference(tmp_path / "refs" / "churn" / "1", rows=500)
    ports = [free_port("127.0.0.1") for _ in range(4)]
    cfg = load_config(
        CONFIG,
        {
            "stack.data_dir": str(tmp_path / "stack"),
            "drift.port": ports[0],
            "drift.reference": str(tmp_path / "refs" / "{model}" / "{version}"),
            "monitor.prometheus_port": ports[1],
            "monitor.alertmanager_port": ports[2],
            "monitor.trigger.port": ports[3],
        },
    )
    ctx = StackContext(cfg, tmp_path / "stack")
    specs: list[ProcessSpec] = drift_specs(ctx) + monitoring_specs(ctx)
    assert [s.name for s in specs] == [
        "drift-sidecar",
        "alertmanager",
        "retrain-trigger",
        "prometheus",
    ]
    folder = tmp_path / "stack" / "monitoring"
    prom = yaml.safe_load((folder / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in prom["scrape_configs"]}
    assert jobs["mainsail-drift"] == [f"127.0.0.1:{ports[0]}"]
    assert jobs["mainsail-router"] == [f"127.0.0.1:{cfg.stack.router.port}"]
    assert len(jobs["mlserver"]) == 2

    procs = []
    try:
        for spec in specs:
            log = (tmp_path / f"{spec.name}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    spec.argv,
                    cwd=spec.cwd,
                    env={**os.environ, **spec.env},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        for spec, proc in zip(specs, procs, strict=True):
            assert spec.health_url
            deadline = time.monotonic() + 90
            while not _healthy(spec.health_url):
                assert proc.poll() is None, (tmp_path / f"{spec.name}.log").read_text()[-2000:]
                assert time.monotonic() < deadline, f"{spec.name} never became healthy"
                time.sleep(0.3)
        # Prometheus loaded the generated rules.
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[1]}/api/v1/rules", timeout=5) as r:
            groups = yaml.safe_load(r.read())["data"]["groups"]
        assert {g["name"] for g in groups} == {
            "mainsail-drift",
            "mainsail-serving",
            "mainsail-features",
            "mainsail-experiments",
            "mainsail-performance",
        }
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
