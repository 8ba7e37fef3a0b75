"""`mainsail run` and the pipeline run one lifecycle: the same metrics and the same model.

The default config (configs/churn.yaml) with small settings goes once through `mainsail run`
(the CLI: every stage in one process) and once through the training pipeline on kfp.local's
SubprocessRunner (one subprocess per step, results handed over through files). Both sequence
the lifecycle with `mainsail.lifecycle`, so the selection, every metric, every CV fold and the
pickled model must agree to the byte; a step that decided differently (another split, other
hyperparameters, a refit preprocessor, another win rule) changes the model's sha256.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mainsail.cli import app
from mainsail.core.files import sha256_file
from mainsail.pipeline.runner import run_local
from mainsail.registry.seaweedfs import SeaweedS3
from tests.support.configs import REPO, tiny_overrides

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.e2e]


def _set_options(overrides: dict[str, object]) -> list[str]:
    # JSON is YAML's flow syntax: the CLI parses each value back to what the mapping holds.
    return [
        arg for key, value in overrides.items() for arg in ("--set", f"{key}={json.dumps(value)}")
    ]


def test_mainsail_run_and_the_kfp_steps_give_the_same_metrics_and_model(
    s3: SeaweedS3, tmp_path: Path
) -> None:
    config = tmp_path / "churn.yaml"
    config.write_text((REPO / "configs" / "churn.yaml").read_text())
    overrides = tiny_overrides(tmp_path, s3.endpoint.endpoint)

    result = CliRunner().invoke(app, ["run", str(config), *_set_options(overrides)])
    assert result.exit_code == 0, result.output
    (local,) = (tmp_path / "runs").glob("churn-*")
    local_model = local / "model"

    pipeline = run_local(config, "training", overrides=overrides, caching=False)
    assert pipeline.run_dir is not None and "evaluate" in pipeline.executed
    kfp_model = pipeline.run_dir / "evaluate" / "model"

    ours = json.loads((local_model / "metrics.json").read_text())
    theirs = json.loads((kfp_model / "metrics.json").read_text())
    assert ours["chosen"] == "linear"  # a model was selected, so there is one to compare
    assert ours == theirs
    assert sha256_file(local_model / "model.joblib") == sha256_file(kfp_model / "model.joblib")
    assert pipeline.step_output("register") == {"Output": 1}  # and the pipeline published it
    # Both stored (once: the same bytes) and reference the same training-data snapshot.
    snapshots = [
        json.loads((m / "lineage.json").read_text())["data_snapshot"]["sha256"]
        for m in (local_model, kfp_model)
    ]
    assert snapshots[0] == snapshots[1] == ours_sha(local)


def ours_sha(run_dir: Path) -> str:
    """The data file's sha256 as the run's lineage records it (parquet is kept verbatim)."""
    return str(json.loads((run_dir / "lineage.json").read_text())["data_sha256"])
