"""kind-config.yaml, the kind scripts and mk/k8s.mk agree with the chart and naming.py.

The scripts need a container engine and cannot run here; they are parsed (`bash -n`) and their
settings compared, which is all that can be checked without one.
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from mainsail.core import naming

from . import checks

pytestmark = pytest.mark.k8s

KIND = checks.ROOT / "scripts" / "kind"


@pytest.fixture(scope="module")
def kind_config() -> checks.Obj:
    return yaml.safe_load((checks.ROOT / "kind-config.yaml").read_text())


def ray(objs: list[checks.Obj]) -> checks.Obj:
    return next(o for o in objs if o["kind"] == "RayCluster")


def test_kind_config_has_the_pools_the_chart_schedules_on(
    kind_config: checks.Obj, scenario_objects: dict[str, list[checks.Obj]]
) -> None:
    assert checks.kind_config_problems(kind_config, ray(scenario_objects["gpu-pool"])) == []
    ports = {m["containerPort"] for m in kind_config["nodes"][0]["extraPortMappings"]}
    assert ports == {30080, 30300, 30880}


def test_kind_config_without_gpu_taint_or_pool_is_caught(
    kind_config: checks.Obj, default_objects: list[checks.Obj]
) -> None:
    untainted = copy.deepcopy(kind_config)
    untainted["nodes"][2].pop("kubeadmConfigPatches")
    assert any(
        "no taint" in p for p in checks.kind_config_problems(untainted, ray(default_objects))
    )
    no_gpu = copy.deepcopy(kind_config)
    no_gpu["nodes"] = no_gpu["nodes"][:2]
    assert any("pool gpu" in p for p in checks.kind_config_problems(no_gpu, ray(default_objects)))
    intolerant = copy.deepcopy(ray(default_objects))
    intolerant["spec"]["workerGroupSpecs"][1]["template"]["spec"]["tolerations"] = []
    assert any("tolerate" in p for p in checks.kind_config_problems(kind_config, intolerant))


@pytest.mark.parametrize("script", sorted(p.name for p in KIND.glob("*.sh")))
def test_kind_script_parses(script: str) -> None:
    path = KIND / script
    proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    if script != "env.sh":
        assert path.stat().st_mode & 0o111, f"{script} is not executable"
        assert "set -euo pipefail" in path.read_text()


def test_bash_syntax_check_catches_a_broken_script(tmp_path: Path) -> None:
    broken = tmp_path / "broken.sh"
    broken.write_text("if true; then\n  echo missing fi\n")
    assert subprocess.run(["bash", "-n", str(broken)], capture_output=True).returncode != 0


def test_kind_scripts_use_naming_defaults() -> None:
    env = (KIND / "env.sh").read_text()
    settings = dict(re.findall(r"^(\w+)=\$\{\w+:-([^}]*)\}", env, flags=re.M))
    assert settings["NAMESPACE"] == naming.DEFAULT_NAMESPACE
    assert settings["REGISTRY"] == naming.IMAGE_REGISTRY
    assert settings["TAG"] == naming.IMAGE_TAG
    smoke = (KIND / "smoke.sh").read_text()
    assert f"127.0.0.1:{naming.DRIFT_PORT}" in smoke
    assert naming.experiment_name("churn") in smoke


def test_make_targets_are_listed_by_make_help() -> None:
    mk = (checks.ROOT / "mk" / "k8s.mk").read_text()
    targets = dict(re.findall(r"^([a-z0-9-]+):.*## (.+)$", mk, flags=re.M))
    assert {"kind-up", "kind-down", "kind-e2e", "render", "images"} <= set(targets)
