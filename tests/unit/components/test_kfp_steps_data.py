"""The data steps (validate, split, preprocess) that the kfp components wrap, called without kfp."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mainsail.config import ConfigError, ProjectConfig, config_from_json, config_to_json
from mainsail.data.errors import DataError
from mainsail.lifecycle.data import run_data_stage
from mainsail.pipeline.handover import load_prepared
from mainsail.pipeline.steps import preprocess_step, split_step, validate_step


def test_config_json_round_trips_exactly(tiny_cfg: ProjectConfig) -> None:
    assert config_from_json(config_to_json(tiny_cfg)) == tiny_cfg


def test_config_json_rejects_a_bad_field_by_name(tiny_json: str) -> None:
    raw = json.loads(tiny_json)
    raw["split"]["test_size"] = 0.9
    with pytest.raises(ConfigError, match=r"split\.test_size"):
        config_from_json(json.dumps(raw))
    with pytest.raises(ConfigError, match="Invalid JSON"):
        config_from_json("{not json")


def _run_data_steps(cfg: ProjectConfig, tmp: Path) -> Path:
    cj = config_to_json(cfg)
    validated = validate_step(cj, str(cfg.data.path), str(tmp / "ds"), str(tmp / "report.html"))
    assert validated["rows"] == 600 and validated["errors"] == 0
    sides = split_step(cj, str(tmp / "ds"), str(tmp / "splits"))
    assert sides["train_rows"] + sides["valid_rows"] + sides["test_rows"] == 600
    prepared = preprocess_step(cj, str(tmp / "ds"), str(tmp / "splits"), str(tmp / "prepared"))
    assert prepared["train_rows"] == sides["train_rows"]
    return tmp / "prepared"


def test_data_steps_rebuild_what_the_one_call_data_stage_builds(
    tiny_cfg: ProjectConfig, tmp_path: Path
) -> None:
    prepared = load_prepared(tiny_cfg, _run_data_steps(tiny_cfg, tmp_path / "steps"))
    assert "<html" in (tmp_path / "steps" / "report.html").read_text().lower()
    direct = run_data_stage(tiny_cfg)
    assert prepared.features == direct.features
    assert prepared.problem_type == direct.problem_type
    assert prepared.data_sha256 == direct.data_sha256
    for side in ("train", "valid", "test"):
        np.testing.assert_array_equal(getattr(prepared.split, side), getattr(direct.split, side))
    assert prepared.class_weight == direct.class_weight
    assert prepared.summary == direct.summary and prepared.imbalance == direct.imbalance
    # The same findings (only the data-source note differs: the first read created the file).
    assert [i.code for i in prepared.report.issues] == [i.code for i in direct.report.issues]
    assert prepared.schema == direct.schema
    pd.testing.assert_frame_equal(prepared.frame, direct.frame)
    # The reloaded preprocessor transforms exactly like the one fitted in one process.
    np.testing.assert_allclose(
        np.asarray(prepared.preprocessor.transform(prepared.X("test"))),
        np.asarray(direct.preprocessor.transform(direct.X("test"))),
    )


def test_validate_step_names_the_missing_target_and_writes_nothing(
    tiny_cfg: ProjectConfig, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}).to_csv(bad, index=False)
    cfg = tiny_cfg.model_copy(deep=True)
    cfg.data.synthetic = None
    with pytest.raises(DataError, match="churned"):
        validate_step(config_to_json(cfg), str(bad), str(tmp_path / "ds"), str(tmp_path / "r.html"))
    assert not (tmp_path / "ds").exists() and not (tmp_path / "r.html").exists()


def test_validate_step_refuses_object_store_uris(tiny_json: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="only file paths"):
        validate_step(
            tiny_json, "s3://bucket/churn.parquet", str(tmp_path / "d"), str(tmp_path / "r")
        )


def test_split_step_reports_a_missing_input_artifact(tiny_json: str, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="validated-data metadata"):
        split_step(tiny_json, str(tmp_path / "empty"), str(tmp_path / "splits"))
