"""The config-driven parts without Feast: FeaturesConfig validation, the repository plan, the
generated feature_store.yaml (checked in for the default config), the freshness rules and the
metrics they export. Fast: no store, no server.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from mainsail.config import ConfigError, load_config, parse_config
from mainsail.data.synthetic import COLUMNS
from mainsail.features.errors import FeatureDefinitionError
from mainsail.features.freshness import Assembler, LookupSpec
from mainsail.features.layout import (
    lookup_spec,
    plan_repo,
    redis_connection_string,
    render_feature_store_yaml,
)
from mainsail.features.metrics import FeatureMetrics
from tests.support.feast import make_config

ROOT = Path(__file__).resolve().parents[3]


def test_checked_in_feature_store_yaml_is_the_one_the_default_config_generates() -> None:
    cfg = load_config(ROOT / "configs" / "churn.yaml")
    assert (ROOT / "feature_repo" / "feature_store.yaml").read_text() == (
        render_feature_store_yaml(cfg)
    )


def test_default_config_plans_one_view_of_every_feature_column_and_service_v1() -> None:
    cfg = load_config(ROOT / "configs" / "churn.yaml")
    plan = plan_repo(cfg, list(COLUMNS))
    assert plan.service_name == "churn_v1"
    assert plan.entity_name == "customer"
    assert len(plan.views) == 1 and plan.views[0].ttl == timedelta(days=45)
    expected = [
        c
        for c in COLUMNS
        if c not in {"customer_id", "event_timestamp", "label_timestamp", "churned"}
    ]
    assert list(plan.views[0].features) == expected


def test_redis_store_yaml_uses_the_configured_db() -> None:
    cfg = make_config("redis", project="p1")
    text = render_feature_store_yaml(cfg)
    assert 'connection_string: "127.0.0.1:6379,db=13,socket_connect_timeout=2' in text
    assert redis_connection_string("redis://:s3cret@cache:6380/2") == (
        "cache:6380,db=2,password=s3cret"
    )
    with pytest.raises(FeatureDefinitionError, match="db must be a number"):
        redis_connection_string("redis://cache:6380/x")


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ({"views": [{"name": "v", "features": ["a"], "ttl": "soon"}]}, "expected a duration"),
        ({"views": [{"name": "v", "features": ["a"], "ttl": "0d"}]}, "must be positive"),
        (
            {"views": [{"name": "v", "features": ["a"]}, {"name": "w", "features": ["a"]}]},
            "column 'a' is in view 'v' and in view 'w'",
        ),
        ({"fallback": "retry"}, "features.fallback"),
        ({"onlinestore": "redis"}, "did you mean 'online_store'"),
    ],
)
def test_bad_features_config_names_the_key(features: dict[str, object], message: str) -> None:
    raw = {"name": "x", "data": {"path": "d.csv", "target": "y"}, "features": features}
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_plan_rejects_targets_as_features_and_unknown_ratio_inputs() -> None:
    cfg = make_config(views=[{"name": "v", "features": ["churned"]}], derived=[])
    with pytest.raises(FeatureDefinitionError, match=r"views\[0\] \(v\): column 'churned'"):
        plan_repo(cfg)
    cfg = make_config(derived=[{"name": "r", "numerator": "nope", "denominator": "plan"}])
    with pytest.raises(FeatureDefinitionError, match=r"derived\[0\] \(r\): numerator 'nope'"):
        plan_repo(cfg)
    no_key = parse_config({"name": "x", "data": {"path": "d.csv", "target": "y"}})
    with pytest.raises(FeatureDefinitionError, match=r"data\.entity_key"):
        plan_repo(no_key)


def _spec() -> LookupSpec:
    return lookup_spec(plan_repo(make_config()), "string")


def test_lookup_spec_round_trips_through_json() -> None:
    spec = _spec()
    assert LookupSpec.from_json(spec.to_json()) == spec
    assert spec.derived_inputs == {"charge_per_month": ("activity",)}
    assert spec.ttl_s == {"profile": 400 * 86400.0, "activity": 45 * 86400.0}


def test_assembler_drops_stale_values_imputes_and_exports_metrics() -> None:
    spec = _spec()
    now = 1_000_000_000.0
    day = 86400.0
    names = spec.feature_names
    # Two entities: the first fresh everywhere; the second with activity 50 days old.
    values = {n: [1.0, 2.0] for n in names}
    present = {n: [True, True] for n in names}
    stamps = {n: [now - day, now - day] for n in names}
    for v, f in spec.features:
        if v == "activity":
            stamps[f] = [now - day, now - 50 * day]
    present["plan"] = [True, False]  # one absent value
    metrics = FeatureMetrics(CollectorRegistry())
    assembler = Assembler(
        spec, imputation={"tenure_months": -1.0}, metrics=metrics, clock=lambda: now
    )
    out = assembler.assemble(["a", "b"], values, present, stamps)
    assert out.rows[0] == dict.fromkeys(names, 1.0)
    assert out.rows[1]["tenure_months"] == -1.0
    assert out.rows[1]["monthly_charges"] is None
    assert out.rows[1]["charge_per_month"] is None  # derived from a stale view
    assert out.rows[1]["contract"] == 2.0 and out.rows[1]["plan"] is None
    assert out.stale == 4 and out.unknown == []
    text = generate_latest(metrics.registry).decode()
    assert 'mainsail_feature_stale_values_total{view="activity"} 4.0' in text
    assert 'mainsail_feature_missing_values_total{view="profile"} 1.0' in text
    # Ages 1 day (both) and 50 days (one): cumulative buckets of the activity histogram.
    assert 'mainsail_feature_age_seconds_bucket{le="86400.0",view="activity"} 1.0' in text
    assert 'mainsail_feature_age_seconds_bucket{le="3888000.0",view="activity"} 1.0' in text
    assert 'mainsail_feature_age_seconds_bucket{le="7776000.0",view="activity"} 2.0' in text
    assert 'mainsail_feature_age_seconds_count{view="activity"} 2.0' in text


def test_assembler_without_enforcement_serves_old_values() -> None:
    spec = _spec()
    names = spec.feature_names
    out = Assembler(spec, enforce_freshness=False, clock=lambda: 1e12).assemble(
        ["a"], {n: [3] for n in names}, {n: [True] for n in names}, {n: [0.0] for n in names}
    )
    assert out.rows[0] == dict.fromkeys(names, 3) and out.stale == 0
