"""The checked-in monitoring/ artifacts equal what the generators make, and are valid."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mainsail.monitor.artifacts import render_all, stale_files, write_all
from mainsail.monitor.dashboards import dashboards

ROOT = Path(__file__).resolve().parents[2] / "monitoring"


def test_checked_in_artifacts_are_not_stale() -> None:
    stale = stale_files(ROOT)
    assert stale == [], f"stale: {stale}; regenerate with `mainsail monitoring render`"


def test_staleness_is_detected(tmp_path: Path) -> None:
    write_all(tmp_path)
    assert stale_files(tmp_path) == []
    rules = tmp_path / "prometheus" / "rules.yml"
    rules.write_text(rules.read_text().replace(">= 3", ">= 4"))
    (tmp_path / "dashboards" / "mainsail-drift.json").unlink()
    assert stale_files(tmp_path) == ["prometheus/rules.yml", "dashboards/mainsail-drift.json"]


@pytest.mark.parametrize("tool", ["promtool", "amtool"])
def test_generated_configs_pass_the_official_checkers(tmp_path: Path, tool: str) -> None:
    binary = shutil.which(tool)
    assert binary, f"{tool} is missing: install prometheus and prometheus-alertmanager (Debian)"
    write_all(tmp_path)
    if tool == "promtool":
        args = [binary, "check", "config", str(tmp_path / "prometheus" / "prometheus.yml")]
    else:
        args = [binary, "check-config", str(tmp_path / "alertmanager" / "alertmanager.yml")]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_alertmanager_routes_only_retrain_alerts_to_the_trigger() -> None:
    am = yaml.safe_load(render_all()["alertmanager/alertmanager.yml"])
    route = am["route"]
    assert route["receiver"] == "default"
    (sub,) = route["routes"]
    assert sub["matchers"] == ['action="retrain"']
    hooks = {r["name"]: r.get("webhook_configs") for r in am["receivers"]}
    assert hooks["default"] is None
    assert hooks[sub["receiver"]][0]["url"] == "http://127.0.0.1:8020/alerts"


def test_dashboards_have_unique_panels_with_prometheus_targets() -> None:
    files = render_all()
    uids = set()
    for d in dashboards():
        model = json.loads(files[f"dashboards/{d.uid}.json"])
        assert model["uid"] == d.uid and d.uid not in uids
        uids.add(d.uid)
        ids = [p["id"] for p in model["panels"]]
        assert len(ids) == len(set(ids))
        for panel in model["panels"]:
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
                assert target["expr"].strip()
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
    assert uids == {
        "mainsail-model-overview",
        "mainsail-drift",
        "mainsail-features",
        "mainsail-training-runs",
        "mainsail-experiments",
        "mainsail-model-quality",
    }
