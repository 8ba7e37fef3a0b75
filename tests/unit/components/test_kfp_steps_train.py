"""The training steps (tune, train-candidates, evaluate) that the kfp components wrap, without kfp.

Local Ray only here (no KubeRay cluster configured); tests/integration/pipelines/
test_ray_cluster_jobs.py runs the same step through the Ray Jobs API.
"""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import pytest
import yaml

from mainsail.config import ProjectConfig, config_to_json
from mainsail.pipeline.steps import (
    evaluate_step,
    preprocess_step,
    split_step,
    train_candidates_step,
    tune_step,
    validate_step,
)


@pytest.fixture
def prepared(tiny_cfg: ProjectConfig, tmp_path: Path) -> Path:
    cj = config_to_json(tiny_cfg)
    validate_step(cj, str(tiny_cfg.data.path), str(tmp_path / "ds"), str(tmp_path / "v.html"))
    split_step(cj, str(tmp_path / "ds"), str(tmp_path / "splits"))
    preprocess_step(cj, str(tmp_path / "ds"), str(tmp_path / "splits"), str(tmp_path / "prep"))
    return tmp_path / "prep"


def test_tune_train_evaluate_steps_hand_over_through_files(
    tiny_cfg: ProjectConfig, prepared: Path, tmp_path: Path
) -> None:
    cj = config_to_json(tiny_cfg)
    tuned = tune_step(cj, str(prepared), str(tmp_path / "tuned"))
    assert tuned["tuned"] == 1 and 0.5 < tuned["linear_best_score"] <= 1.0
    log = (tmp_path / "tuned" / "experiment_log.jsonl").read_text().splitlines()
    assert len(log) == 2  # one line per trial
    best = json.loads((tmp_path / "tuned" / "tuned.json").read_text())["linear"]["best_params"]

    scores = train_candidates_step(cj, str(prepared), str(tmp_path / "tuned"), str(tmp_path / "c"))
    assert scores["baseline_valid_roc_auc"] == pytest.approx(0.5)
    assert scores["linear_valid_roc_auc"] > 0.55
    cands = json.loads((tmp_path / "c" / "candidates.json").read_text())
    assert cands["params"]["linear"] == best  # the tuned hyperparameters were used
    model = joblib.load(tmp_path / "c" / "linear.joblib")
    assert model.family == "linear"

    result = evaluate_step(
        cj,
        str(prepared),
        str(tmp_path / "tuned"),
        str(tmp_path / "c"),
        str(tmp_path / "model"),
        str(tmp_path / "report.html"),
        str(tmp_path / "card.md"),
    )
    model_dir = tmp_path / "model"
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["chosen"] == (result["chosen"] or None)
    assert metrics["params"]["linear"] == best
    assert set(metrics["test"]) == {"baseline", "linear"}
    card = yaml.safe_load((model_dir / "model_card.yaml").read_text())
    assert isinstance(card, dict) and card
    assert "```yaml" in (tmp_path / "card.md").read_text()
    assert (tmp_path / "report.html").read_bytes() == (model_dir / "report.html").read_bytes()
    assert (model_dir / "feature_schema.json").is_file() and (model_dir / "lineage.json").is_file()
    if result["chosen"]:
        assert (model_dir / "model.joblib").is_file() and (
            model_dir / "reference.parquet"
        ).is_file()
    else:
        assert not (model_dir / "model.joblib").exists()


def test_train_candidates_step_reports_missing_tuning_results(
    tiny_cfg: ProjectConfig, prepared: Path, tmp_path: Path
) -> None:
    (tmp_path / "no-tuning").mkdir()
    with pytest.raises(FileNotFoundError, match="tuning results"):
        train_candidates_step(
            config_to_json(tiny_cfg),
            str(prepared),
            str(tmp_path / "no-tuning"),
            str(tmp_path / "c"),
        )
    assert not (tmp_path / "c").exists()


def test_steps_select_and_score_like_the_one_call_training_stage(
    tiny_cfg: ProjectConfig, prepared: Path, tmp_path: Path
) -> None:
    """The split-up steps reproduce mainsail.lifecycle.run.run_training_stage's decisions."""
    from mainsail.lifecycle.data import run_data_stage
    from mainsail.lifecycle.run import run_training_stage

    cj = config_to_json(tiny_cfg)
    tune_step(cj, str(prepared), str(tmp_path / "tu"))
    train_candidates_step(cj, str(prepared), str(tmp_path / "tu"), str(tmp_path / "ca"))
    evaluate_step(
        cj,
        str(prepared),
        str(tmp_path / "tu"),
        str(tmp_path / "ca"),
        str(tmp_path / "m"),
        str(tmp_path / "r.html"),
        str(tmp_path / "c.md"),
    )
    ours = json.loads((tmp_path / "m" / "metrics.json").read_text())
    run_training_stage(tiny_cfg, run_data_stage(tiny_cfg), tmp_path / "one-call")
    theirs = json.loads((tmp_path / "one-call" / "model" / "metrics.json").read_text())
    assert ours["chosen"] == theirs["chosen"]
    assert ours["params"] == theirs["params"]
    assert ours["selection"] == theirs["selection"]
    for family, scores in theirs["test"].items():
        assert ours["test"][family] == pytest.approx(scores, rel=1e-9, abs=1e-12)
    assert ours["cv"] == theirs["cv"]
