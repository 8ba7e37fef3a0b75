"""The training stage on two real datasets shipped offline by the ISLP package."""

from __future__ import annotations

import pytest
import yaml

from mainsail.lifecycle.data import run_data_stage
from mainsail.lifecycle.run import run_training_stage
from tests.support.configs import small_config

pytestmark = pytest.mark.slow


def test_islp_default_classification(tmp_path) -> None:
    """Credit-card default (10,000 rows, about 3% positive): class weights, stratified CV."""
    cfg = small_config(
        "islp_default", tmp_path / "default.parquet",
        **{"train.candidates": ["baseline", "linear", "tree"], "tune.candidates": ["linear"]},
    )  # fmt: skip
    data = run_data_stage(cfg)
    res = run_training_stage(cfg, data, tmp_path / "run")
    assert data.problem_type == "classification"
    assert res.chosen in {"linear", "tree"}, res.reason
    assert res.test_metrics[res.chosen]["roc_auc"] > 0.9
    assert res.selection.vs_baseline[res.chosen].cv_p_value < 0.05
    card = yaml.safe_load(res.card_path.read_text())
    assert card["training_data"]["date_range"] is None  # the dataset has no timestamps
    assert any("no event timestamp" in note for note in card["limitations"])
    assert card["class_balance"]["class_weight"] is not None


def test_islp_carseats_regression(tmp_path) -> None:
    """Child car seat sales at 400 stores; the problem type is detected (regression)."""
    cfg = small_config(
        "islp_carseats", tmp_path / "carseats.parquet",
        **{"train.candidates": ["baseline", "linear", "tree", "forest"],
           "tune.candidates": ["linear"]},
    )  # fmt: skip
    data = run_data_stage(cfg)
    res = run_training_stage(cfg, data, tmp_path / "run")
    assert data.problem_type == "regression"
    assert res.chosen is not None, res.reason
    assert res.test_metrics[res.chosen]["r2"] > 0.6
    assert res.test_metrics[res.chosen]["rmse"] < res.test_metrics["baseline"]["rmse"]
    assert {"residuals.png", "predicted_vs_actual.png"} <= {p.name for p in res.plots.values()}
    card = yaml.safe_load(res.card_path.read_text())
    assert card["metrics"]["primary"]["name"] == "rmse"
    assert card["class_balance"]["handling"] == "not applicable (regression)"
