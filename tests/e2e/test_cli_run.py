"""`mainsail run` end to end through the real CLI, on a small copy of the default config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MAINSAIL = Path(sys.executable).parent / "mainsail"


def small_config(tmp_path: Path, **data_overrides: object) -> Path:
    raw = yaml.safe_load((REPO / "configs" / "churn.yaml").read_text())
    raw["data"]["path"] = str(tmp_path / "churn.parquet")
    raw["data"]["synthetic"]["rows"] = 4000
    raw["data"].update(data_overrides)
    raw["runs_dir"] = str(tmp_path / "runs")
    raw["features"]["repo_dir"] = str(tmp_path / "feature_repo")
    raw["tune"]["num_trials"] = 3
    # The MLP and LightGBM have their own tests (tests/model); here the CLI path is what counts.
    raw["train"]["candidates"] = ["baseline", "linear", "tree"]
    raw["tune"]["candidates"] = ["tree"]
    raw["train"]["mlp"]["epochs"] = 3
    raw["evaluate"]["cv_folds"] = 3
    path = tmp_path / "churn.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.e2e
@pytest.mark.slow
def test_mainsail_run_writes_a_complete_run_folder(tmp_path: Path) -> None:
    config = small_config(tmp_path)
    proc = subprocess.run(
        [str(MAINSAIL), "run", str(config)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "run folder:" in proc.stdout
    # Output to a pipe still shows progress: a line per stage and quarter, with the time.
    for stage in ("data", "tune", "train", "cross-validate", "evaluate", "report"):
        assert f"] {stage} 100%" in proc.stdout, stage
    assert "test set (served model): roc_auc" in proc.stdout
    # Ray starts quietly: no token-auth notice, no deprecation warnings.
    assert "Token authentication" not in proc.stdout + proc.stderr
    assert "DeprecationWarning" not in proc.stderr
    runs = [p for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")]
    assert len(runs) == 1
    run_dir = runs[0]
    for name in (
        "validation_report.json",
        "validation_report.html",
        "split_summary.json",
        "preprocessor.joblib",
        "feature_schema.json",
        "lineage.json",
        "config.json",
    ):
        assert (run_dir / name).is_file(), f"{name} missing from {run_dir}"
    lineage = json.loads((run_dir / "lineage.json").read_text())
    assert lineage["seed"] == 42
    assert len(lineage["data_sha256"]) == 64
    assert lineage["config"]["name"] == "churn"
    # The rows came from Feast, and the model folder says how to fetch them when serving.
    assert lineage["features"]["feature_service"] == "churn_v1"
    lookup = json.loads((run_dir / "model" / "feature_lookup.json").read_text())
    assert lookup["service"] == "churn_v1" and lookup["entity_key"] == "customer_id"
    served = {name for _, name in lookup["features"]}
    schema = json.loads((run_dir / "model" / "feature_schema.json").read_text())
    assert {f["name"] for f in schema["features"]} <= served


@pytest.mark.e2e
def test_mainsail_run_on_bad_config_fails_cleanly_and_writes_nothing(tmp_path: Path) -> None:
    config = small_config(tmp_path, targett="churned")
    proc = subprocess.run(
        [str(MAINSAIL), "run", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "data.targett: unknown key; did you mean 'target'?" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.e2e
def test_check_config_opens_the_data(tmp_path: Path) -> None:
    """A target typo passes the config's own checks but not the data's: check-config reads
    the data file and says so, naming the column and the closest one."""
    config = small_config(tmp_path, target="churnd")
    proc = subprocess.run(
        [str(MAINSAIL), "check-config", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stdout
    assert "target column 'churnd' is not in" in proc.stderr
    assert "did you mean 'churned'?" in proc.stderr
    ok = subprocess.run(
        [str(MAINSAIL), "check-config", str(small_config(tmp_path))],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "classification, positive class '1'" in ok.stdout
