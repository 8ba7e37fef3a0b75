"""kfp components as containers: the training pipeline run by `mainsail run --runner kfp-docker`
(kfp.local's DockerRunner: every step a container of the pipeline image, read-only root, as the
invoking user so it writes the bind-mounted pipeline root) against a real S3 registry
(SeaweedFS), and the same pipeline with the SubprocessRunner: the same metrics, step by step,
and the same model. (One step as uid 10001, as a KFP pod runs it: test_entrypoints.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mainsail.core import naming
from mainsail.pipeline.runner import run_local
from mainsail.registry.seaweedfs import SeaweedS3
from mainsail.registry.store import ModelRegistry
from tests.support.configs import tiny_overrides
from tests.support.containers import REPO
from tests.support.pods import Engine

pytestmark = [pytest.mark.containers, pytest.mark.integration, pytest.mark.slow, pytest.mark.e2e]

STEPS = ["evaluate", "preprocess", "register", "split", "train-candidates", "tune", "validate"]


def _set_args(overrides: dict[str, Any]) -> list[str]:
    args = []
    for key, value in overrides.items():
        text = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True)
        args += ["--set", f"{key}={text.strip()}"]
    return args


def _step_metrics(run_dir: Path) -> dict[str, Any]:
    """Every step's Metrics artifact (the numbers it logged) of a kfp.local run."""
    return {
        step.name: json.loads((step / "metrics").read_text())
        for step in sorted(run_dir.iterdir())
        if (step / "metrics").is_file()
    }


def _digest(registry: ModelRegistry, version: int, name: str) -> str:
    """The sha256 of a file of a registry version, as its manifest records it."""
    manifest, _ = registry.manifest("churn", version)
    return manifest.files[name].sha256


def test_kfp_docker_gives_the_subprocess_runs_metrics_and_model(
    engine: Engine, tmp_path: Path
) -> None:
    with SeaweedS3(tmp_path / "s3") as s3:
        keys = {"MAINSAIL_S3_ACCESS_KEY": s3.access_key, "MAINSAIL_S3_SECRET_KEY": s3.secret_key}
        config = tmp_path / "churn.yaml"
        config.write_text((REPO / "configs" / "churn.yaml").read_text())
        overrides = {
            **tiny_overrides(tmp_path, s3.endpoint.endpoint),
            "features.repo_dir": str(tmp_path / "feature_repo"),
        }
        registry = ModelRegistry(s3.client(), "mainsail-models")
        env = {**os.environ, **keys}

        cli = [str(Path(sys.executable).parent / "mainsail"), "run", str(config)]
        cli += ["--runner", "kfp-docker", *_set_args(overrides)]
        proc = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "pipeline finished" in proc.stdout
        (docker_dir,) = (tmp_path / "runs" / "kfp-docker").glob("mainsail-training-*")
        log = (tmp_path / "runs" / "kfp-docker.log").read_text()
        assert f"Found image '{naming.image('pipeline')}'" in log
        assert sorted(p.name for p in docker_dir.iterdir() if p.is_dir()) == STEPS

        for key, value in keys.items():
            os.environ[key] = value
        try:
            sub = run_local(
                config, "training", overrides=overrides, log_file=tmp_path / "kfp-local.log"
            )
        finally:
            for key in keys:
                os.environ.pop(key, None)
        assert sub.executed == STEPS and sub.run_dir is not None

        # Same numbers from every step, and the same model published twice (the register
        # step's own numbers are the version and its manifest, which holds the publish time).
        docker_metrics, sub_metrics = _step_metrics(docker_dir), _step_metrics(sub.run_dir)
        docker_version = docker_metrics.pop("register")["version"]
        sub_version = sub_metrics.pop("register")["version"]
        assert docker_metrics == sub_metrics
        assert {docker_version, sub_version} == {1, 2}
        for name in ("model.joblib", "metrics.json", "feature_schema.json", "reference.parquet"):
            assert _digest(registry, docker_version, name) == _digest(registry, sub_version, name)

        # The steps ran in the image (its Python, not this one) as the invoking user.
        lineage = json.loads((docker_dir / "evaluate" / "model" / "lineage.json").read_text())
        image_python = engine.docker(
            "run", "--rm", "--network", "none", naming.image("pipeline"), "python3", "-c",
            "import platform; print(platform.python_version())",
        ).stdout.strip()  # fmt: skip
        assert lineage["python"] == image_python
        owner = (docker_dir / "validate" / "dataset").stat()
        assert (owner.st_uid, owner.st_gid) == (os.getuid(), os.getgid())


def test_a_container_that_fails_at_once_is_read_as_failed_every_time(engine: Engine) -> None:
    """kfp's own run_docker_container auto-removes the container and reads one already gone as
    exit 0; the runner Mainsail installs keeps it until the code is read. Twenty containers that
    exit 3 before anyone asks: twenty threes, and none is left behind."""
    from mainsail.pipeline.containers import _run_container_and_read_exit_code, engine_client

    client = engine_client()
    image = naming.image(naming.IMAGE_ENVS[0])
    label = {"io.mainsail.test": "exit-code-race"}  # pods.py labels its containers "=1"
    try:
        codes = [
            _run_container_and_read_exit_code(
                client, image, ["exit 3"], {}, entrypoint=["sh", "-c"], labels=label,
                auto_remove=True,  # what kfp passes; the runner must not honour it
            )
            for _ in range(20)
        ]  # fmt: skip
        left = client.containers.list(
            all=True, filters={"label": "io.mainsail.test=exit-code-race"}
        )
    finally:
        client.close()
    assert codes == [3] * 20
    assert left == []


def test_a_failing_step_container_fails_the_run_and_names_it(
    engine: Engine, tmp_path: Path
) -> None:
    """Bad data: the validate container exits non-zero; kfp-docker stops there and says so
    (kfp.local's DockerRunner reads a container removed before its exit code as a success, so
    this is checked rather than assumed)."""
    import pandas as pd

    from mainsail.pipeline.runner import PipelineError

    bad = tmp_path / "bad.csv"
    pd.DataFrame({"customer_id": [1, 2, 3], "tenure_months": [1, 2, 3]}).to_csv(bad, index=False)
    config = tmp_path / "churn.yaml"
    config.write_text((REPO / "configs" / "churn.yaml").read_text())
    overrides = {
        **tiny_overrides(tmp_path, "127.0.0.1:9"),
        "data.path": str(bad),
        "data.synthetic": None,
        "features.repo_dir": str(tmp_path / "feature_repo"),
    }
    log = tmp_path / "steps.log"
    with pytest.raises(PipelineError, match="validate"):
        run_local(config, "training", overrides=overrides, log_file=log, runner="docker")
    assert "churned" in log.read_text()  # the step's DataError, from inside the container
    (run_dir,) = (tmp_path / "runs" / "kfp-docker").glob("mainsail-training-*")
    assert [p.name for p in run_dir.iterdir()] == ["validate"]
