"""Every component is a thin wrapper: one call into mainsail.pipeline.steps, typed artifacts, a
README, the pipeline image; GPU placement reaches only the train and tune steps."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
import yaml
from kfp import compiler

from mainsail.config import load_config
from mainsail.config.pipelines import STEPS, GpuPlacement, PipelinesConfig
from mainsail.core import naming
from mainsail.pipeline import steps
from mainsail.pipeline.runner import build_pipeline, load_component

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("step", STEPS)
def test_component_wraps_exactly_one_step_function(step: str) -> None:
    folder = REPO / "components" / step
    assert (folder / "README.md").read_text().startswith(f"# {step}")
    component = load_component(step)
    source = inspect.getsource(component.python_func)
    calls = {
        node.func.id
        for node in ast.walk(ast.parse(source.strip()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    wrapped = {c for c in calls if c.endswith("_step")}
    assert len(wrapped) == 1, f"{step} calls {sorted(wrapped)}"
    assert callable(getattr(steps, wrapped.pop()))
    body = ast.parse(source.strip()).body[0]
    assert isinstance(body, ast.FunctionDef)
    assert len(body.body) <= 5, f"{step}'s body has logic; move it into mainsail.pipeline.steps"
    spec = component.component_spec
    assert spec.implementation.container.image == naming.image("pipeline")
    assert "config_json" in spec.inputs


def test_gpu_placement_reaches_only_train_and_tune(tmp_path: Path) -> None:
    cfg = load_config(REPO / "configs" / "churn.yaml")
    settings = PipelinesConfig(gpu=GpuPlacement(enabled=True, accelerator_count=2))
    package = tmp_path / "training.yaml"
    compiler.Compiler().compile(build_pipeline("training", cfg, settings), str(package))
    ir, platform = list(yaml.safe_load_all(package.read_text()))
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    placed = {}
    for name, executor in ir["deploymentSpec"]["executors"].items():
        step = k8s[name]["podMetadata"]["labels"]["mainsail.io/step"]
        resources = executor["container"]["resources"]
        placed[step] = (
            resources.get("accelerator", {}),
            k8s[name].get("nodeSelector", {}),
            k8s[name].get("tolerations", []),
        )
    for step, (accel, selector, tolerations) in placed.items():
        if step in ("train-candidates", "tune"):
            assert accel["resourceType"] == "nvidia.com/gpu" and accel["resourceCount"] == "2"
            assert selector == {"labels": {"mainsail.io/pool": "gpu"}}
            assert tolerations == [
                {
                    "key": "mainsail.io/pool",
                    "operator": "Equal",
                    "value": "gpu",
                    "effect": "NoSchedule",
                },
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            ]
        else:
            assert not accel and not selector and not tolerations, step


def test_pipelines_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown step"):
        PipelinesConfig(step_resources={"trian": {}})
    with pytest.raises(ValueError, match="explicit tag"):
        PipelinesConfig(image="ghcr.io/mainsail-mlops/mainsail-pipeline:latest")
    with pytest.raises(ValueError, match="Ray Jobs API URL"):
        PipelinesConfig(kuberay={"dashboard_url": "ray://head:10001"})
    assert PipelinesConfig().resources_for("tune").cpu_request == "2"
    assert PipelinesConfig().resources_for("split").cpu_request == "500m"


def test_shared_volume_and_registry_secret_placement(tmp_path: Path) -> None:
    cfg = load_config(REPO / "configs" / "churn.yaml")
    settings = PipelinesConfig(shared_pvc="mainsail-shared", s3_secret="mainsail-s3")
    package = tmp_path / "retraining.yaml"
    compiler.Compiler().compile(build_pipeline("retraining", cfg, settings), str(package))
    _, platform = list(yaml.safe_load_all(package.read_text()))
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    with_secret = set()
    for spec in k8s.values():
        step = spec["podMetadata"]["labels"]["mainsail.io/step"]
        assert spec["pvcMount"][0]["mountPath"] == "/mnt/mainsail", step
        if "secretAsEnv" in spec:
            with_secret.add(step)
            envs = {m["envVar"] for m in spec["secretAsEnv"][0]["keyToEnv"]}
            assert envs == {"MAINSAIL_S3_ACCESS_KEY", "MAINSAIL_S3_SECRET_KEY"}
    # the registry's readers and writers, and the Ray steps (they stage through its S3 store)
    assert with_secret == {
        "train-candidates",
        "tune",
        "compare-champion",
        "register",
        "deploy-canary",
    }


#: Each step function (or the Ray work of a Ray step) and the one lifecycle call it makes.
STAGES = ("mainsail.lifecycle.data", "mainsail.lifecycle.training", "mainsail.lifecycle.evaluation")
LIFECYCLE_CALLS = {
    "validate_step": "load_validated",
    "split_step": "split_rows",
    "preprocess_step": "prepare",
    "tune_work": "tune_candidates",
    "train_candidates_work": "fit_candidates",
    "evaluate_step": "evaluate_candidates",
    "compare_champion_step": "compare_champion",
}


@pytest.mark.parametrize(("function", "call"), sorted(LIFECYCLE_CALLS.items()))
def test_each_step_makes_one_lifecycle_call(function: str, call: str) -> None:
    """Load inputs, one `mainsail.lifecycle` call (what `mainsail run` calls too), save outputs."""
    node = ast.parse(inspect.getsource(getattr(steps, function))).body[0]
    lifecycle = {
        alias.asname or alias.name
        for sub in ast.walk(node)
        if isinstance(sub, ast.ImportFrom) and sub.module in STAGES
        for alias in sub.names
    }
    calls = [
        sub.func.id
        for sub in ast.walk(node)
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id in lifecycle
    ]
    assert calls == [call], f"{function} calls {calls} from mainsail.lifecycle"
