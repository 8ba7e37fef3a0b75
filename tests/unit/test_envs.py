"""The three runtime environments: locked, consistent where models cross, and importable.

A model pickled in the pipeline env is unpickled in the serving env, so the libraries inside the
pickle must be the very same versions in both; only data crosses into the drift env.
"""

from __future__ import annotations

import json
import pkgutil
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LOCKS = {env: REPO / "requirements" / f"{env}.lock" for env in ("pipeline", "serving", "drift")}
MODEL_PACKAGES = ("numpy", "pandas", "pyarrow", "scikit-learn", "scipy", "joblib", "lightgbm")
# torch lives in the pipeline env only: the served MLP is a numpy forward pass and the drift MMD
# is numpy, so no serving pod carries PyPI's CUDA build of torch (several GB).
TORCH_FREE = ("serving", "drift")

# Which parts of the library each env must import. Subpackages not listed for an env depend on
# libraries that env does not have (feast, ray, kfp live only in the pipeline env). Every name
# here must be a module of src/mainsail (checked below): a renamed module fails the test instead
# of silently matching nothing.
ENV_MODULES: dict[str, tuple[str, ...]] = {
    "pipeline": ("mainsail",),
    "serving": (
        "mainsail.config",
        "mainsail.core",
        "mainsail.data.schema",
        "mainsail.serving.runtime",
        "mainsail.serving.validation",
        "mainsail.registry",
        "mainsail.drift.client",
        "mainsail.features.http",
        "mainsail.features.freshness",
        "mainsail.features.metrics",
        "mainsail.train.model",
        "mainsail.train.mlp_model",
        "mainsail.train.lgbm_model",
    ),
    "drift": (
        "mainsail.config",
        "mainsail.core",
        "mainsail.data.schema",
        "mainsail.drift",
        "mainsail.performance",
    ),
}
# Modules of the pipeline env that need a package only another env has (mlserver).
NOT_IN_PIPELINE = ("mainsail.serving.runtime",)


def normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them (`zope.event` is `zope-event`)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(env: str) -> dict[str, str]:
    pins = {}
    for line in LOCKS[env].read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[normalise(name)] = version
    return pins


def library_modules() -> list[str]:
    src = REPO / "src" / "mainsail"
    names = ["mainsail"]
    for info in pkgutil.walk_packages([str(src)], prefix="mainsail."):
        names.append(info.name)
    return sorted(names)


def modules_for(env: str) -> list[str]:
    wanted = ENV_MODULES[env]
    chosen = []
    for name in library_modules():
        if not any(name == w or name.startswith(w + ".") for w in wanted):
            continue
        if env == "pipeline" and any(
            name == n or name.startswith(n + ".") for n in NOT_IN_PIPELINE
        ):
            continue
        if name.endswith("__main__"):
            continue
        chosen.append(name)
    return chosen


def test_every_listed_module_exists() -> None:
    modules = set(library_modules())
    listed = {m for names in ENV_MODULES.values() for m in names} | set(NOT_IN_PIPELINE)
    missing = sorted(listed - modules)
    assert not missing, f"listed in test_envs.py but not modules of src/mainsail: {missing}"


def test_model_packages_are_identical_in_pipeline_and_serving_locks() -> None:
    pipeline, serving = read_lock("pipeline"), read_lock("serving")
    for name in MODEL_PACKAGES:
        assert pipeline[name] == serving[name], (
            f"{name}: pipeline {pipeline[name]} != serving {serving[name]}"
        )


@pytest.mark.parametrize("env", TORCH_FREE)
def test_serving_and_drift_envs_carry_no_torch(env: str) -> None:
    lock = read_lock(env)
    heavy = sorted(n for n in lock if n in ("torch", "triton") or n.startswith("nvidia-"))
    assert not heavy, f"{env} lock pulls in {heavy}"


def test_drift_env_differs_only_in_numpy_and_pyarrow() -> None:
    # Only parquet and JSON cross into the drift env; pyarrow 26 does not import with numpy 1.x.
    pipeline, drift = read_lock("pipeline"), read_lock("drift")
    assert drift["numpy"].startswith("1."), "alibi-detect 0.13 needs numpy<2"
    for name in MODEL_PACKAGES:
        if name not in ("numpy", "pyarrow") and name in drift:
            assert drift[name] == pipeline[name], (
                f"{name}: drift {drift[name]} != pipeline {pipeline[name]}"
            )


@pytest.mark.parametrize("env", sorted(LOCKS))
def test_venv_matches_its_lock(env: str) -> None:
    python = REPO / ".venv" / env / "bin" / "python"
    assert python.exists(), f"{python} missing: run `make envs`"
    code = (
        "import importlib.metadata as m, json;"
        "print(json.dumps({d.metadata['Name'].lower().replace('_','-'): d.version"
        " for d in m.distributions()}))"
    )
    installed = {
        normalise(name): version
        for name, version in json.loads(
            subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout
        ).items()
    }
    lock = read_lock(env)
    stamp = (REPO / ".venv" / env / ".mainsail-stamp").read_text()
    if "torch=cpu" in stamp:
        # scripts/bootstrap.sh installed the CPU build of the locked torch and left out the
        # CUDA-only distributions (PyTorch's index answered on this machine).
        lock = {n: v for n, v in lock.items() if not re.match(r"nvidia-|cuda-|triton$", n)}
        lock["torch"] += "+cpu"
    wrong = {n: (v, installed.get(n)) for n, v in lock.items() if installed.get(n) != v}
    assert not wrong, f"{env} venv differs from its lock (lock, installed): {wrong}"


@pytest.mark.parametrize("env", sorted(ENV_MODULES))
def test_library_imports_in_env(env: str) -> None:
    python = REPO / ".venv" / env / "bin" / "python"
    modules = modules_for(env)
    assert modules, f"no modules selected for {env}"
    script = (
        "import importlib, sys, traceback\n"
        "bad = []\n"
        f"for name in {modules!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        bad.append(name + ': ' + traceback.format_exc().splitlines()[-1])\n"
        "print('\\n'.join(bad)); sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (
        f"imports failing in the {env} env:\n{proc.stdout}{proc.stderr[-2000:]}"
    )


@pytest.mark.parametrize("env", sorted(LOCKS))
def test_venv_packages_are_installed_with_their_bytecode(env: str) -> None:
    # Where PYTHONDONTWRITEBYTECODE is set (CI), a package installed without its .pyc files is
    # compiled again by every process that imports it (seconds for feast or mlserver).
    python = REPO / ".venv" / env / "bin" / "python"
    code = (
        "import importlib.util, numpy, pandas, sklearn;"
        "print('\\n'.join(importlib.util.cache_from_source(m.__file__)"
        " for m in (numpy, pandas, sklearn)))"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    missing = [p for p in out.stdout.split() if not Path(p).is_file()]
    assert not missing, f"{env}: no bytecode installed for {missing}: rebuild it (make envs)"
