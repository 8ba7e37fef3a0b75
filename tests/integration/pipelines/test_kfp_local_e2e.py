"""The very pipelines the cluster runs, end to end here with kfp.local's SubprocessRunner.

Each step is a subprocess of this venv's Python running the component's code; the registry is
a real S3 (SeaweedFS). Then the caching contract: a second run with unchanged inputs executes
nothing, and the retraining pipeline reuses the data and training steps and only re-asks
the champion comparison (never cached), which the same model cannot win, so nothing is
registered or deployed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mainsail.pipeline.runner import PipelineError, run_local
from mainsail.registry import ModelRegistry
from mainsail.registry.seaweedfs import SeaweedS3
from tests.support.configs import REPO, tiny_overrides

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.e2e]

TRAINING_STEPS = [
    "evaluate",
    "preprocess",
    "register",
    "split",
    "train-candidates",
    "tune",
    "validate",
]


def test_training_then_cached_rerun_then_retraining(s3: SeaweedS3, tmp_path: Path) -> None:
    config = tmp_path / "churn.yaml"
    config.write_text((REPO / "configs" / "churn.yaml").read_text())
    overrides = tiny_overrides(tmp_path, s3.endpoint.endpoint)
    registry = ModelRegistry(s3.client(), "mainsail-models")

    first = run_local(config, "training", overrides=overrides)
    assert first.executed == TRAINING_STEPS  # deploy-canary is off by default
    run_dir = first.run_dir
    assert run_dir is not None and run_dir.parent == tmp_path / "runs" / "kfp-local"
    model_dir = run_dir / "evaluate" / "model"
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["chosen"] == "linear"
    assert (model_dir / "model.joblib").is_file()
    assert "<html" in (run_dir / "evaluate" / "report").read_text().lower()
    assert (run_dir / "evaluate" / "card").read_text().startswith("# Model card")
    assert "<html" in (run_dir / "validate" / "report").read_text().lower()
    assert first.step_output("register") == {"Output": 1}
    assert first.step_output("deploy-canary") == {}
    assert [v.version for v in registry.versions("churn")] == [1]

    second = run_local(config, "training", overrides=overrides)
    assert second.executed == []  # every step came from kfp.local's cache
    assert [v.version for v in registry.versions("churn")] == [1]  # nothing published twice

    registry.promote("churn", 1, alias="champion")
    retrain = run_local(config, "retraining", overrides=overrides)
    assert retrain.executed == ["compare-champion"]
    assert retrain.run_dir is not None
    verdict = json.loads((retrain.run_dir / "compare-champion" / "metrics").read_text())
    assert verdict["wins"] is False and verdict["champion"] == 1
    assert [v.version for v in registry.versions("churn")] == [1]
    assert "challenger" not in registry.aliases("churn")


def test_a_failing_step_fails_the_run_and_names_it(tmp_path: Path) -> None:
    """Bad data: validate fails (no registry needed), nothing downstream runs."""
    import pandas as pd

    bad = tmp_path / "bad.csv"
    pd.DataFrame({"customer_id": [1, 2, 3], "tenure_months": [1, 2, 3]}).to_csv(bad, index=False)
    config = tmp_path / "churn.yaml"
    config.write_text((REPO / "configs" / "churn.yaml").read_text())
    overrides = {**tiny_overrides(tmp_path), "data.path": str(bad), "data.synthetic": None}
    log = tmp_path / "steps.log"
    with pytest.raises(PipelineError, match="validate") as err:
        run_local(config, "training", overrides=overrides, log_file=log)
    assert str(log) in str(err.value)
    assert "churned" in log.read_text()  # the step's DataError names the missing target
    runs = list((tmp_path / "runs" / "kfp-local").glob("mainsail-training-*"))
    assert [p.name for p in runs[0].iterdir()] == ["validate"]
