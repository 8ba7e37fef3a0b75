"""register, compare-champion and deploy-canary steps against a real S3 registry (SeaweedFS)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mainsail.config import config_to_json, load_config
from mainsail.pipeline.steps import (
    compare_champion_step,
    deploy_canary_step,
    evaluate_step,
    preprocess_step,
    register_step,
    split_step,
    train_candidates_step,
    tune_step,
    validate_step,
)
from mainsail.registry import ModelRegistry
from mainsail.registry.seaweedfs import SeaweedS3
from tests.support.configs import REPO, tiny_overrides

pytestmark = pytest.mark.integration


def _model_folder(cj: str, data: str, tmp: Path) -> tuple[Path, Path]:
    validate_step(cj, data, str(tmp / "ds"), str(tmp / "v.html"))
    split_step(cj, str(tmp / "ds"), str(tmp / "sp"))
    preprocess_step(cj, str(tmp / "ds"), str(tmp / "sp"), str(tmp / "prep"))
    tune_step(cj, str(tmp / "prep"), str(tmp / "tu"))
    train_candidates_step(cj, str(tmp / "prep"), str(tmp / "tu"), str(tmp / "ca"))
    result = evaluate_step(
        cj,
        str(tmp / "prep"),
        str(tmp / "tu"),
        str(tmp / "ca"),
        str(tmp / "model"),
        str(tmp / "r.html"),
        str(tmp / "c.md"),
    )
    assert result["chosen"] == "linear", result["reason"]
    return tmp / "prep", tmp / "model"


def test_register_compare_deploy(s3: SeaweedS3, tmp_path: Path) -> None:
    cfg = load_config(
        REPO / "configs" / "churn.yaml", tiny_overrides(tmp_path, s3.endpoint.endpoint)
    )
    cj = config_to_json(cfg)
    prepared, model_dir = _model_folder(cj, str(cfg.data.path), tmp_path)
    # The validate step stored the data snapshot; lineage and the card name it, as for `run`.
    lineage = json.loads((model_dir / "lineage.json").read_text())
    snapshot = lineage["data_snapshot"]
    assert snapshot["sha256"] == lineage["data_sha256"]
    card = yaml.safe_load((model_dir / "model_card.yaml").read_text())
    assert card["training_data"]["snapshot"] == snapshot

    # No champion yet: the new model wins by default.
    first = compare_champion_step(cj, str(prepared), str(model_dir))
    assert first["wins"] is True and "no champion" in first["reason"]

    reg = register_step(cj, str(model_dir))
    registry = ModelRegistry(s3.client(), cfg.registry.bucket)
    assert [v.version for v in registry.versions("churn")] == [reg["version"]]
    assert reg["uri"].startswith("s3://mainsail-models/")

    # The same model against itself as champion: no improvement, so it does not win.
    registry.promote("churn", reg["version"], alias="champion")
    again = compare_champion_step(cj, str(prepared), str(model_dir))
    assert again["wins"] is False and again["champion"] == reg["version"]
    assert again["new_roc_auc"] == pytest.approx(again["champion_roc_auc"])

    # A folder without a selected model never wins and needs no registry.
    (model_dir / "model.joblib").unlink()
    assert compare_champion_step(cj, str(prepared), str(model_dir))["wins"] is False

    # deploy-canary (dry run: no MLServer stack here) resolves the version and plans the split.
    plan = deploy_canary_step(cj, reg["version"], 25, backend="local", dry_run=True)
    assert plan["challenger"] == reg["version"] and plan["canary"] == 25
    assert "challenger 25" in " ".join(plan["actions"])
    assert registry.aliases("churn").get("challenger") is None  # a dry run moves no alias


def test_register_step_refuses_a_folder_without_a_model(s3: SeaweedS3, tmp_path: Path) -> None:
    cfg = load_config(
        REPO / "configs" / "churn.yaml", tiny_overrides(tmp_path, s3.endpoint.endpoint)
    )
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "feature_schema.json").write_text("{}")
    with pytest.raises(Exception, match=r"model\.joblib"):
        register_step(config_to_json(cfg), str(tmp_path / "empty"))
