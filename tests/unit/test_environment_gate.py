"""The environments section and the checks of a promotion gate, without a registry: what a
config may say about environments, and each check's verdict and reason on given cards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mainsail.config import ConfigError, parse_config
from mainsail.data.snapshot import diff_summaries, summarize
from mainsail.promotion.environments import (
    check_card,
    check_champion,
    check_load,
    check_rollout,
)

BASE = {"name": "m", "data": {"path": "x.parquet", "target": "y"}}


def _card(
    metric: str = "roc_auc", test: float = 0.8, low: float = 0.78, high: float = 0.82
) -> dict[str, Any]:
    return {
        "version": "r1",
        "metrics": {
            "primary": {"name": metric, "test": test, "test_ci": {"low": low, "high": high}}
        },
        "budget": {"latency_p95_ms": 50.0, "throughput_rps": 100.0},
    }


def test_default_config_has_staging_and_production_with_their_own_aliases() -> None:
    cfg = parse_config(BASE, source="<t>")
    staging, production = cfg.environments["staging"], cfg.environments["production"]
    assert (staging.champion_alias, production.champion_alias) == ("staging", "champion")
    assert staging.namespace == "mainsail-staging" and production.namespace == "mainsail"
    assert production.gate.rollout == "shadow_or_canary" and staging.gate.rollout == "none"


def test_environment_view_has_its_own_aliases_stack_folder_store_and_namespace() -> None:
    cfg = parse_config(BASE, source="<t>")
    staging = cfg.for_environment("staging")
    assert (staging.registry.alias("champion"), staging.registry.alias("challenger")) == (
        "staging",
        "staging-challenger",
    )
    assert staging.stack.data_dir == Path(".stack-staging")
    assert staging.stack.kubernetes.namespace == "mainsail-staging"
    assert cfg.for_environment("production").registry.alias("champion") == "champion"
    assert cfg.registry.alias("challenger") == "challenger"  # the config itself is unchanged
    with pytest.raises(ConfigError, match="unknown environment 'stagin'; did you mean 'staging'"):
        cfg.for_environment("stagin")


@pytest.mark.parametrize(
    ("environments", "message"),
    [
        ({"staging": {}}, "environments: production must be defined"),
        (
            {"staging": {}, "production": {}},
            "environments.production: alias 'champion' is already used by environment 'staging'",
        ),
        (
            {"staging": {"champion_alias": "s", "challenger_alias": "s"}, "production": {}},
            "champion_alias and challenger_alias are both 's'",
        ),
        ({"staging": {"gate": {"rollout": "blue-green"}}, "production": {}}, "rollout"),
    ],
)
def test_bad_environments_are_named(environments: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({**BASE, "environments": environments}, source="<t>")


def test_card_gaps_are_named_field_by_field() -> None:
    check = check_card({**_card(), "status": "rejected"})
    assert not check.passed
    assert check.detail.startswith("model card incomplete: status is 'rejected', not 'selected'")
    assert "lineage.model_sha256" in check.detail and "intended_use" in check.detail


def test_champion_check_follows_the_metric_direction() -> None:
    assert check_champion(_card(), None, "champion").passed  # nothing to beat yet
    assert check_champion(_card(low=0.81, high=0.85), _card(test=0.8), "champion").passed
    assert not check_champion(_card(low=0.79), _card(test=0.8), "champion").passed
    # rmse: lower is better, so the CI's upper end must lie below the champion's value.
    better = _card("rmse", test=9.0, low=8.0, high=9.5)
    assert check_champion(better, _card("rmse", test=10.0), "champion").passed
    worse = check_champion(better, _card("rmse", test=9.2), "champion")
    assert not worse.passed and "high end not below the champion's 9.2000" in worse.detail
    other = check_champion(_card(), _card("accuracy"), "champion")
    assert not other.passed and "no roc_auc test value" in other.detail


def test_load_check_compares_staging_figures_with_the_card_budget(tmp_path: Path) -> None:
    deployed = tmp_path / "card.yaml"
    missing = check_load(_card(), deployed, "staging")
    assert not missing.passed and "not measured in staging" in missing.detail
    deployed.write_text(yaml.safe_dump({"deployment": {"latency_p95": 61.0, "throughput": 90.0}}))
    slow = check_load(_card(), deployed, "staging")
    assert slow.detail == (
        "latency p95 61.0 ms in staging exceeds the budget 50.0 ms; "
        "throughput 90.0 requests/s in staging is below the budget 100.0"
    )
    deployed.write_text(yaml.safe_dump({"deployment": {"latency_p95": 20.0, "throughput": 400.0}}))
    assert check_load(_card(), deployed, "staging").passed


def test_rollout_check_reads_shadow_and_canary_passes_of_that_version() -> None:
    log = [
        {"action": "ramp", "evidence": {"challenger_version": "3", "stage": "shadow"}},
        {"action": "rollback", "evidence": {"challenger_version": "4", "stage": "canary 10%"}},
        {"action": "promote", "evidence": {"challenger_version": "5", "stage": "canary 50%"}},
    ]
    assert check_rollout("shadow", log, 3, "staging").passed
    assert not check_rollout("canary", log, 3, "staging").passed
    assert check_rollout("canary", log, 5, "staging").passed
    refused = check_rollout("shadow_or_canary", log, 4, "staging")
    assert refused.detail == "no passed shadow or canary of v4 in staging's decision log"


def test_snapshot_diff_names_schema_row_and_summary_changes() -> None:
    import pandas as pd

    a = summarize(pd.DataFrame({"x": [1.0, 2.0, None], "c": ["a", "b", "b"]}))
    b = summarize(pd.DataFrame({"x": [1, 5], "d": [True, False]}))
    assert a["columns"]["x"]["missing"] == 1 and a["columns"]["c"]["top"] == {"b": 2, "a": 1}
    change = diff_summaries(a, b)
    assert change["rows"] == {"before": 3, "after": 2, "change": -1}
    assert (change["added_columns"], change["removed_columns"]) == (["d"], ["c"])
    assert change["dtype_changes"] == {"x": ["float64", "int64"]}
    assert change["changed_columns"]["x"]["max"] == [2.0, 5.0]
