"""Online features against real Feast with SQLite and with Redis: materialize, lookup,
freshness (TTL) enforcement, unknown keys, metrics, and the fallback policy.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from mainsail.config import ProjectConfig
from mainsail.core.ports import free_port
from mainsail.features import store
from mainsail.features.errors import OnlineStoreUnavailableError
from mainsail.features.metrics import FeatureMetrics
from mainsail.features.online import SdkLookup, spec_for
from tests.support.feast import ACTIVITY, PROFILE, T0, clock_at, make_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _latest(frame: pd.DataFrame, customer: str) -> pd.Series:
    rows = frame[frame["customer_id"] == customer].sort_values("event_timestamp")
    return rows.iloc[-1]


def _sample(value: float | str) -> float | str | None:
    return None if pd.isna(value) else value


def _lookup(
    cfg: ProjectConfig, repo: Path, days_after_t0: float = 0.0, **kwargs: object
) -> tuple[SdkLookup, FeatureMetrics]:
    metrics = FeatureMetrics(CollectorRegistry())
    lookup = SdkLookup.from_config(
        cfg,
        repo,
        metrics=metrics,
        clock=clock_at(T0 + timedelta(days=days_after_t0)),
        **kwargs,  # type: ignore[arg-type]
    )
    return lookup, metrics


def _value(metrics: FeatureMetrics, name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.registry.get_sample_value(name, labels or {}) or 0.0


def test_online_values_are_the_latest_materialized_snapshot(
    online_repo: tuple[ProjectConfig, Path], frame: pd.DataFrame
) -> None:
    cfg, repo = online_repo
    lookup, _ = _lookup(cfg, repo)
    customers = ["FRESH", *frame["customer_id"].drop_duplicates().iloc[:20].tolist()]
    result = lookup.get(customers)
    assert result.entity_ids == customers
    assert result.feature_names == [*PROFILE, *ACTIVITY, "charge_per_month"]
    for customer, row in zip(customers, result.rows, strict=True):
        latest = _latest(frame, customer)
        age = T0 - latest["event_timestamp"].to_pydatetime()
        for name in PROFILE:
            assert row[name] == _sample(latest[name]), (customer, name)
        for name in ACTIVITY:
            want = _sample(latest[name]) if age <= timedelta(days=45) else None
            assert row[name] == want, (customer, name, age)
    fresh = result.rows[0]
    assert fresh["charge_per_month"] == pytest.approx(50.0)
    assert result.missing[0] == []


def test_value_older_than_its_view_ttl_is_served_as_missing_imputed_and_counted(
    online_repo: tuple[ProjectConfig, Path],
) -> None:
    cfg, repo = online_repo
    imputation = {"satisfaction_score": 7.0, "tenure_months": 12}
    lookup, metrics = _lookup(cfg, repo, imputation=imputation)
    result = lookup.get(["FRESH", "OLD"])
    fresh, old = result.rows
    # FRESH is 1 day old: everything served. OLD is 60 days old: activity (TTL 45d) is stale,
    # profile (TTL 400d) is not, and the derived ratio of stale inputs is missing too.
    assert fresh["satisfaction_score"] == 8.0 and fresh["tenure_months"] == 10
    assert old["contract"] is not None and old["plan"] is not None
    assert old["satisfaction_score"] == 7.0 and old["tenure_months"] == 12
    assert old["monthly_charges"] is None and old["charge_per_month"] is None
    assert set(result.missing[1]) == {*ACTIVITY, "charge_per_month"}
    assert result.stale == len(ACTIVITY)
    assert _value(metrics, "mainsail_feature_stale_values_total", {"view": "activity"}) == 4
    assert _value(metrics, "mainsail_feature_stale_values_total", {"view": "profile"}) == 0
    ages = _value(metrics, "mainsail_feature_age_seconds_count", {"view": "activity"})
    assert ages == 2
    age_sum = _value(metrics, "mainsail_feature_age_seconds_sum", {"view": "activity"})
    assert age_sum == pytest.approx(timedelta(days=61).total_seconds())

    # Ten days later FRESH's activity is still within 45 days; 50 days later it is not.
    later, _ = _lookup(cfg, repo, days_after_t0=10)
    assert later.get(["FRESH"]).rows[0]["monthly_charges"] == 50.0
    much_later, _ = _lookup(cfg, repo, days_after_t0=50)
    assert much_later.get(["FRESH"]).rows[0]["monthly_charges"] is None


def test_freshness_enforcement_can_be_switched_off(
    online_repo: tuple[ProjectConfig, Path],
) -> None:
    cfg, repo = online_repo
    relaxed = cfg.model_copy(deep=True)
    relaxed.features.enforce_freshness = False
    lookup, metrics = _lookup(relaxed, repo)
    old = lookup.get(["OLD"]).rows[0]
    assert old["monthly_charges"] == 70.0
    assert _value(metrics, "mainsail_feature_stale_values_total", {"view": "activity"}) == 0


def test_unknown_entity_keys_come_back_missing_and_counted(
    online_repo: tuple[ProjectConfig, Path],
) -> None:
    cfg, repo = online_repo
    lookup, metrics = _lookup(cfg, repo)
    result = lookup.get(["NOBODY", "FRESH", "ALSO-NOBODY"])
    assert result.unknown == ["NOBODY", "ALSO-NOBODY"]
    assert all(v is None for v in result.rows[0].values())
    assert result.missing[0] == result.feature_names
    assert result.rows[1]["monthly_charges"] == 50.0
    assert _value(metrics, "mainsail_feature_unknown_entities_total") == 2
    assert _value(metrics, "mainsail_feature_missing_values_total", {"view": "profile"}) == 10


def test_malformed_entity_ids_are_rejected_by_position(
    sqlite_repo: tuple[ProjectConfig, Path],
) -> None:
    cfg, repo = sqlite_repo
    lookup, _ = _lookup(cfg, repo)
    with pytest.raises(ValueError, match=r"entity id #1 \(customer_id\) must be string, got int"):
        lookup.get(["FRESH", 5])
    with pytest.raises(ValueError, match="not one string"):
        lookup.get("FRESH")
    assert lookup.get([]).rows == []


def test_large_batches_are_split_and_keep_order(sqlite_repo: tuple[ProjectConfig, Path]) -> None:
    cfg, repo = sqlite_repo
    lookup, _ = _lookup(cfg, repo)
    ids = [f"X{i}" for i in range(1500)] + ["FRESH"]
    result = lookup.get(ids)
    assert result.entity_ids == ids and len(result.rows) == len(ids)
    assert result.rows[-1]["monthly_charges"] == 50.0
    assert len(result.unknown) == 1500


def test_incremental_materialization_loads_only_new_rows(
    online_repo: tuple[ProjectConfig, Path], frame: pd.DataFrame, tmp_path: Path
) -> None:
    cfg, _ = online_repo
    cfg = make_config(cfg.features.online_store)
    repo = tmp_path / "repo"
    store.apply(cfg, repo, frame)
    try:
        store.materialize(cfg, repo, end=T0 - timedelta(days=30))
        lookup, _ = _lookup(cfg, repo)
        # FRESH's only snapshot (T0 - 1 day) is after the first run's end.
        assert lookup.get(["FRESH"]).unknown == ["FRESH"]
        summary = store.materialize(cfg, repo, end=T0)
        assert summary.start is None  # incremental: continues where the last run ended
        assert lookup.get(["FRESH"]).rows[0]["monthly_charges"] == 50.0
        # A new snapshot arrives; the next incremental run picks it up.
        update = frame[frame["customer_id"] == "FRESH"].copy()
        update["event_timestamp"] = pd.Timestamp(T0 + timedelta(hours=1))
        update["monthly_charges"] = 55.5
        store.apply(cfg, repo, pd.concat([frame, update], ignore_index=True))
        store.materialize(cfg, repo, end=T0 + timedelta(hours=2))
        assert lookup.get(["FRESH"]).rows[0]["monthly_charges"] == 55.5
    finally:
        store.open_store(cfg, repo).teardown()


def test_redis_down_at_serving_time_follows_the_fallback_policy(
    redis_repo: tuple[ProjectConfig, Path],
) -> None:
    from feast import FeatureStore, RepoConfig

    cfg, repo = redis_repo
    healthy = store.open_store(cfg, repo)
    # The same repository, with the online store pointing at a port where nothing listens.
    broken_config = RepoConfig(
        project=healthy.config.project,
        registry=str(repo / "data" / "registry.db"),
        provider="local",
        online_store={"type": "redis", "connection_string": f"127.0.0.1:{free_port()},db=13"},
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
        repo_path=str(repo),
    )
    broken = FeatureStore(config=broken_config)
    spec = spec_for(cfg, repo)
    metrics = FeatureMetrics(CollectorRegistry())
    failing = SdkLookup(broken, spec, fallback="fail", metrics=metrics)
    with pytest.raises(OnlineStoreUnavailableError) as info:
        failing.get(["FRESH"])
    assert info.value.status_code == 503
    imputing = SdkLookup(
        broken, spec, fallback="impute", imputation={"tenure_months": 12}, metrics=metrics
    )
    result = imputing.get(["FRESH", "OLD"])
    assert result.fallback and [r["tenure_months"] for r in result.rows] == [12, 12]
    assert result.rows[0]["contract"] is None
    fallback = metrics.registry.get_sample_value(
        "mainsail_feature_fallback_total", {"reason": "online_store_unreachable"}
    )
    assert fallback == 2


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def plain_repo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, frame: pd.DataFrame
) -> Iterator[tuple[ProjectConfig, Path]]:
    """A service without on-demand views: `SdkLookup` reads the store directly."""
    cfg = make_config(request.param, derived=[])
    repo = tmp_path_factory.mktemp(f"plain_{request.param}")
    store.apply(cfg, repo, frame)
    store.materialize(cfg, repo, start=T0 - timedelta(days=800), end=T0)
    yield cfg, repo
    if request.param == "redis":
        store.open_store(cfg, repo).teardown()


def test_direct_store_reads_equal_feasts_get_online_features(
    plain_repo: tuple[ProjectConfig, Path], frame: pd.DataFrame
) -> None:
    cfg, repo = plain_repo
    imputation = {"satisfaction_score": 7.0}
    direct, direct_metrics = _lookup(cfg, repo, imputation=imputation)
    via_feast, feast_metrics = _lookup(cfg, repo, imputation=imputation)
    via_feast._direct = None  # the general path: FeatureStore.get_online_features
    assert direct._direct is not None
    customers = ["FRESH", "OLD", "NOBODY", *frame["customer_id"].drop_duplicates().iloc[:30]]
    a, b = direct.get(customers), via_feast.get(customers)
    assert a.rows == b.rows and a.missing == b.missing
    assert (a.stale, a.unknown) == (b.stale, b.unknown) and a.stale > 0 and a.unknown == ["NOBODY"]
    assert a.rows[1]["satisfaction_score"] == 7.0  # OLD's activity is stale: imputed
    assert a.rows[0]["monthly_charges"] == 50.0
    for name, labels in (
        ("mainsail_feature_stale_values_total", {"view": "activity"}),
        ("mainsail_feature_missing_values_total", {"view": "profile"}),
        ("mainsail_feature_unknown_entities_total", {}),
        ("mainsail_feature_age_seconds_sum", {"view": "activity"}),
    ):
        assert _value(direct_metrics, name, labels) == _value(feast_metrics, name, labels), name
    # A second batch on the same lookup: the plan it reads with must not change between calls.
    assert direct.get(customers).rows == a.rows
