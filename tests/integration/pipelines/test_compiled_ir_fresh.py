"""The checked-in IR YAML (pipelines/compiled/) is what the current code compiles to."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
import yaml

from mainsail.config.pipelines import STEPS
from mainsail.pipeline.runner import PIPELINES, compile_all, compiled_dir

pytestmark = pytest.mark.integration


def test_compiled_pipelines_are_fresh(tmp_path: Path) -> None:
    compile_all(tmp_path)
    for name in PIPELINES:
        fresh = (tmp_path / f"{name}.yaml").read_text()
        stored_path = compiled_dir() / f"{name}.yaml"
        stored = stored_path.read_text() if stored_path.exists() else ""
        diff = "".join(
            difflib.unified_diff(
                stored.splitlines(True),
                fresh.splitlines(True),
                str(stored_path),
                "compiled now",
                n=1,
            )
        )
        assert not diff, f"{stored_path} is stale; run `make pipelines`:\n{diff[:3000]}"


def test_compiled_training_pipeline_shape() -> None:
    docs = list(yaml.safe_load_all((compiled_dir() / "training.yaml").read_text()))
    ir, platform = docs[0], docs[1]
    assert ir["pipelineInfo"]["name"] == "mainsail-training"
    assert set(ir["root"]["inputDefinitions"]["parameters"]) == {
        "config_json",
        "data_uri",
        "data_digest",
        "deploy_canary",
        "canary_weight",
    }
    executors = ir["deploymentSpec"]["executors"]
    images = {e["container"]["image"] for e in executors.values()}
    assert images == {"ghcr.io/mainsail-mlops/mainsail-pipeline:0.1.0"}
    for executor in executors.values():
        resources = executor["container"]["resources"]
        assert resources["resourceCpuRequest"] and resources["resourceMemoryRequest"]
    # Every step carries the platform labels; no GPU placement by default.
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert len(k8s) == len(executors)
    for spec in k8s.values():
        assert spec["podMetadata"]["labels"]["mainsail.io/model"] == "churn"
        assert spec["podMetadata"]["labels"]["mainsail.io/step"] in STEPS
        assert "nodeSelector" not in spec and "tolerations" not in spec
