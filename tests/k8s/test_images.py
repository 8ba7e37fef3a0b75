"""The three Dockerfiles are built the same careful way: pinned bases, the env's lock installed
with --no-deps, a non-root final user, no `latest`. (No container engine runs here, so the
images themselves are built by `make images` where one exists.)"""

from __future__ import annotations

import re

import pytest

from mainsail.core import naming

from . import checks

pytestmark = pytest.mark.k8s

IMAGES = checks.ROOT / "images"


@pytest.mark.parametrize("env", naming.IMAGE_ENVS)
def test_dockerfile_structure(env: str) -> None:
    text = (IMAGES / env / "Dockerfile").read_text()
    assert checks.dockerfile_violations(text, env) == []
    # Multi-stage: the build tools stay in the first stage.
    assert len(re.findall(r"^FROM ", text, flags=re.M)) >= 2
    assert re.search(r"^USER 10001", text, flags=re.M)
    assert (IMAGES / env / "Dockerfile.dockerignore").exists()


@pytest.mark.parametrize("env", naming.IMAGE_ENVS)
def test_every_lock_a_dockerfile_installs_exists(env: str) -> None:
    assert (checks.ROOT / "requirements" / f"{env}.lock").exists()


def test_chart_and_naming_agree_on_image_names(default_objects: list[checks.Obj]) -> None:
    images = {
        c["image"]
        for o in default_objects
        for ref in checks.pod_specs(o)
        for c in ref.spec.get("containers", [])
    }
    assert {naming.image(e) for e in naming.IMAGE_ENVS} <= images


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        ("FROM python:3.11-slim AS tools", "not pinned"),
        ("FROM python:latest AS tools", "not pinned"),
        ("USER root", "runs as root"),
        ("-r requirements/{env}.lock", "without --no-deps"),
        ("DROP_USER", "no USER"),
        ("WRONG_LOCK", "no `pip install --no-deps -r"),
    ],
)
@pytest.mark.parametrize("env", naming.IMAGE_ENVS)
def test_broken_dockerfile_is_caught(env: str, broken: str, expected: str) -> None:
    text = (IMAGES / env / "Dockerfile").read_text()
    if broken == "DROP_USER":
        bad = re.sub(r"^USER .*$", "", text, flags=re.M)
    elif broken == "WRONG_LOCK":
        bad = text.replace(f"-r requirements/{env}.lock", "-r requirements/other.lock")
    elif broken.startswith("-r"):
        bad = text.replace("--no-deps -r", "-r")
    elif broken.startswith("USER"):
        bad = text + "\nUSER root\n"
    else:
        bad = re.sub(r"^ARG PYTHON_IMAGE=.*$", "", text, flags=re.M).replace(
            "FROM ${PYTHON_IMAGE} AS tools", broken, 1
        )
    assert bad != text
    assert any(expected in p for p in checks.dockerfile_violations(bad, env))


def test_every_folder_the_pipeline_image_copies_exists() -> None:
    text = (IMAGES / "pipeline" / "Dockerfile").read_text()
    sources = re.findall(r"^COPY (?!--from)(\S+) ", text, flags=re.M)
    assert sources
    missing = [s for s in sources if not (checks.ROOT / s).exists()]
    assert missing == []
