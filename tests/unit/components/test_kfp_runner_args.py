"""Run parameters and the data digest that keys kfp.local's cache."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from mainsail.config import ProjectConfig, config_from_json
from mainsail.pipeline.runner import (
    PipelineError,
    build_pipeline,
    data_digest,
    pipeline_arguments,
    run_name_for,
)


def test_digest_follows_the_file_content(tiny_cfg: ProjectConfig, tmp_path: Path) -> None:
    synthetic = data_digest(tiny_cfg)
    assert synthetic.startswith("synthetic:") and synthetic == data_digest(tiny_cfg)
    path = tmp_path / "d.csv"
    path.write_text("a,b\n1,2\n")
    first = data_digest(tiny_cfg, str(path))
    path.write_text("a,b\n1,3\n")
    assert first.startswith("sha256:") and data_digest(tiny_cfg, str(path)) != first
    assert data_digest(tiny_cfg, "s3://bucket/d.parquet") == "uri:s3://bucket/d.parquet"


def test_arguments_match_the_pipeline_inputs(tiny_cfg: ProjectConfig) -> None:
    for name in ("training", "retraining"):
        args = pipeline_arguments(name, tiny_cfg, "/mnt/data/churn.parquet")
        declared = set(build_pipeline(name, tiny_cfg).component_spec.inputs)
        assert set(args) == declared
        assert config_from_json(args["config_json"]) == tiny_cfg
        assert args["data_uri"] == "/mnt/data/churn.parquet"
    assert pipeline_arguments("training", tiny_cfg, deploy_canary=True)["deploy_canary"] is True


def test_run_names_and_unknown_pipelines(tiny_cfg: ProjectConfig) -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert run_name_for(tiny_cfg, "retraining", when) == "churn-retraining-20260102-030405"
    with pytest.raises(PipelineError, match="unknown pipeline 'nightly'"):
        build_pipeline("nightly", tiny_cfg)  # type: ignore[arg-type]
