"""`mainsail features ...` end to end through Typer's test runner on a real SQLite repository."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from mainsail.cli.features import app
from tests.support.feast import T0, make_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _write_config(tmp_path: Path, frame: pd.DataFrame) -> Path:
    data = tmp_path / "churn.parquet"
    frame.to_parquet(data)
    cfg = make_config("sqlite")
    raw = cfg.model_dump(mode="json", exclude_defaults=True)
    raw["data"]["path"] = str(data)
    raw["features"]["repo_dir"] = "repo"
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_apply_materialize_get_through_the_cli(tmp_path: Path, frame: pd.DataFrame) -> None:
    config = _write_config(tmp_path, frame)
    runner = CliRunner()
    applied = runner.invoke(app, ["apply", "--config", str(config)])
    assert applied.exit_code == 0, applied.output
    assert "activity" in applied.output and "45d" in applied.output
    assert (tmp_path / "repo" / "data" / "activity.parquet").exists()

    loaded = runner.invoke(
        app, ["materialize", "--config", str(config), "--full", "--end", T0.isoformat()]
    )
    assert loaded.exit_code == 0, loaded.output
    assert "materialized" in loaded.output

    got = runner.invoke(
        app, ["get", "FRESH", "OLD", "NOBODY", "--config", str(config), "--at", T0.isoformat()]
    )
    assert got.exit_code == 0, got.output
    assert "50.0" in got.output  # FRESH's monthly charges
    assert "4 stale values" in got.output and "unknown: NOBODY" in got.output


def test_cli_reports_bad_input_without_a_traceback(tmp_path: Path, frame: pd.DataFrame) -> None:
    config = _write_config(tmp_path, frame)
    runner = CliRunner()
    result = runner.invoke(app, ["materialize", "--config", str(config)])
    assert result.exit_code == 1
    assert "error:" in result.output and "does not exist" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["get", "X", "--config", str(config), "--at", "yesterday"])
    assert result.exit_code == 1 and "--at: expected an ISO date" in result.output
    missing = runner.invoke(app, ["apply", "--config", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 1 and "config file not found" in missing.output


def test_mainsails_feature_server_refuses_to_start_without_a_token(
    tmp_path: Path, frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _write_config(tmp_path, frame)
    runner = CliRunner()
    assert runner.invoke(app, ["apply", "--config", str(config)]).exit_code == 0
    monkeypatch.delenv("MAINSAIL_FEATURES_TOKEN", raising=False)
    refused = runner.invoke(app, ["serve", "--config", str(config), "--engine", "mainsail"])
    assert refused.exit_code != 0
    assert "MAINSAIL_FEATURES_TOKEN" in refused.output and "bearer token" in refused.output
    wrong = runner.invoke(app, ["serve", "--config", str(config), "--engine", "gunicorn"])
    assert wrong.exit_code != 0 and "expected feast or mainsail" in wrong.output
