"""`mainsail promote-env` against a real S3 registry (SeaweedFS) and real decision logs (the
environments' SQLite feedback stores): a version enters staging with a complete card, moves
staging → production once its gate passes (load measured in staging within the card's budget,
a passed shadow in staging's decision log), and is refused, with the reason named, when a check
fails. Every move and refusal is in the target's decision log."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from mainsail.cli.main import app
from mainsail.config import ProjectConfig, parse_config
from mainsail.deploy.service import deploy
from mainsail.evaluate.card import LoadFigures, fill_deployment
from mainsail.feedback.store import FeedbackStore
from mainsail.promotion.environments import (
    deployed_card,
    environment_store_url,
    promote_environment,
)
from mainsail.registry.seaweedfs import SeaweedS3
from mainsail.registry.store import ModelRegistry

pytestmark = pytest.mark.integration

MODEL = "envgate"

CARD: dict[str, Any] = {
    "model_name": MODEL,
    "version": "run-1",
    "status": "selected",
    "problem_type": "classification",
    "intended_use": "Scores customers of the training population.",
    "limitations": ["validated on held-out rows of the same source only"],
    "features": [{"name": "tenure_months", "kind": "numeric", "dtype": "int64"}],
    "metrics": {
        "primary": {
            "name": "roc_auc",
            "test": 0.80,
            "test_ci": {"low": 0.78, "high": 0.82, "level": 0.95},
        }
    },
    "training_data": {"size": 1200, "source_sha256": "a" * 64},
    "deployment": {"endpoint": None, "latency_p95": None, "throughput": None},
    "budget": {"latency_p95_ms": 50.0, "throughput_rps": 100.0},
    "lineage": {
        "config_sha256": "b" * 64,
        "data_sha256": "a" * 64,
        "model_sha256": "c" * 64,
        "seed": 7,
    },
}


def _config(tmp: Path) -> ProjectConfig:
    return parse_config(
        {
            "name": MODEL,
            "data": {"path": "unused.parquet", "target": "churned"},
            "registry": {"cache_dir": str(tmp / "cache")},
            "environments": {
                "staging": {
                    "champion_alias": "staging",
                    "challenger_alias": "staging-challenger",
                    "namespace": "mainsail-staging",
                    "stack_data_dir": str(tmp / "staging"),
                    "gate": {
                        "beat_champion": False,
                        "load_within_budget": False,
                        "rollout": "none",
                    },
                },
                "production": {"stack_data_dir": str(tmp / "production")},
            },
        },
        source="<test>",
    )


def _publish(registry: ModelRegistry, artifact: Path, tmp: Path, **metrics: float) -> int:
    card = copy.deepcopy(CARD)
    card["metrics"]["primary"]["test"] = metrics.get("test", 0.80)
    card["metrics"]["primary"]["test_ci"].update(
        low=metrics.get("low", 0.78), high=metrics.get("high", 0.82)
    )
    if metrics.get("no_budget"):
        card["budget"]["latency_p95_ms"] = None
    folder = tmp / f"artifact-{len(list(tmp.glob('artifact-*')))}"
    shutil.copytree(artifact, folder)
    (folder / "model_card.yaml").write_text(yaml.safe_dump(card))
    return registry.publish(MODEL, folder).version


def _log(cfg: ProjectConfig, env: str) -> list[dict[str, Any]]:
    store = FeedbackStore(environment_store_url(cfg, env))
    try:
        return store.decisions(MODEL)
    finally:
        store.close()


def test_version_moves_staging_to_production_only_through_a_passing_gate(
    registry: ModelRegistry,
    churn_artifact: Path,
    seaweed: SeaweedS3,
    signing_keys: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = _config(tmp_path)
    v1 = _publish(registry, churn_artifact, tmp_path)

    # Into staging: its gate asks for a complete card only.
    entered = promote_environment(cfg, registry, MODEL, None, "staging", version=v1)
    assert entered.moved and registry.aliases(MODEL)["staging"] == v1

    # staging → production before anything was measured or rolled out in staging: refused.
    refused = promote_environment(cfg, registry, MODEL, "staging", "production")
    assert not refused.moved and "champion" not in registry.aliases(MODEL)
    assert [r.split(":")[0] for r in refused.reasons] == ["load_within_budget", "rollout"]
    assert "not measured in staging" in refused.reasons[0]
    assert "no passed shadow or canary of v1 in staging's decision log" in refused.reasons[1]

    # Staging measures the load (the deployed card) and its shadow gate passes the version.
    source = tmp_path / "card.yaml"
    source.write_text(yaml.safe_dump(CARD))
    figures = LoadFigures("http://staging/infer", 8.0, 21.5, 30.0, 310.0, 3100, 0, 10.0, 4)
    fill_deployment(source, figures, out_path=deployed_card(cfg, "staging", v1))
    staging_log = FeedbackStore(environment_store_url(cfg, "staging"))
    staging_log.append_decision(
        MODEL, "ramp", "shadow passed", {"challenger_version": str(v1), "stage": "shadow"}
    )
    staging_log.close()
    moved = promote_environment(cfg, registry, MODEL, "staging", "production")
    assert moved.moved, moved.reasons
    assert registry.aliases(MODEL)["champion"] == v1
    assert [c.name for c in moved.checks] == [
        "card_complete",
        "beat_champion",
        "load_within_budget",
        "rollout",
    ]

    # v2's CI does not lie above the production champion's 0.80: refused, reason named.
    v2 = _publish(registry, churn_artifact, tmp_path, test=0.81, low=0.79, high=0.83)
    assert promote_environment(cfg, registry, MODEL, None, "staging", version=v2).moved

    # Deploying uses the environment's aliases and namespace (a dry run renders the Seldon
    # resources): staging's champion is v2 and they go to mainsail-staging; production's is v1.
    staged = deploy(cfg.for_environment("staging"), v1, 10, backend="kubernetes", dry_run=True,
                    registry=registry)  # fmt: skip
    assert staged.champion == v2 and "namespace: mainsail-staging" in str(staged.yaml)
    produced = deploy(cfg.for_environment("production"), v2, 10, backend="kubernetes",
                      dry_run=True, registry=registry)  # fmt: skip
    assert produced.champion == v1 and "mainsail-staging" not in str(produced.yaml)
    fill_deployment(source, figures, out_path=deployed_card(cfg, "staging", v2))
    staging_log = FeedbackStore(environment_store_url(cfg, "staging"))
    staging_log.append_decision(MODEL, "promote", "canary won", {"challenger_version": str(v2)})
    staging_log.close()
    worse = promote_environment(cfg, registry, MODEL, "staging", "production")
    assert not worse.moved and registry.aliases(MODEL)["champion"] == v1
    assert worse.reasons == [
        "beat_champion: roc_auc CI [0.7900, 0.8300]: low end not above the champion's 0.8000"
    ]

    # An incomplete card cannot even enter staging; the CLI names the reason and exits 1.
    v3 = _publish(registry, churn_artifact, tmp_path, no_budget=True)
    config = tmp_path / "envgate.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    ep = seaweed.endpoint
    monkeypatch.setenv("MAINSAIL_S3_ACCESS_KEY", ep.access_key)
    monkeypatch.setenv("MAINSAIL_S3_SECRET_KEY", ep.secret_key)
    monkeypatch.setenv("MAINSAIL_REGISTRY_PUBLIC_KEYS", signing_keys[1])
    monkeypatch.delenv("MAINSAIL_REGISTRY_SIGNING_KEY", raising=False)
    _mount()
    args = ["promote-env", MODEL, "--to", "staging", "--version", str(v3), "-c", str(config)]
    result = CliRunner().invoke(app, [*args, "--endpoint", ep.endpoint])
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "refused: envgate v3 staging: card_complete: model card incomplete: " in text
    assert "budget.latency_p95_ms" in text
    assert registry.aliases(MODEL)["staging"] == v2

    # Every move and refusal is in the target's decision log, with its checks.
    production = _log(cfg, "production")
    assert [(d["action"], d["evidence"]["version"]) for d in production] == [
        ("refuse-env", v1),
        ("promote-env", v1),
        ("refuse-env", v2),
    ]
    assert production[2]["reason"].startswith("v2 refused from staging to production: beat_")
    assert [d["action"] for d in _log(cfg, "staging") if d["action"].endswith("-env")] == [
        "promote-env",
        "promote-env",
        "refuse-env",
    ]


def _mount() -> None:
    """The top-level commands that `main()` adds (without running the app)."""
    from mainsail.cli import environments

    if not any(c.name == "promote-env" for c in app.registered_commands):
        environments.register(app)
