"""Feast repository from the project config: apply, point-in-time training sets, bad input.

Real Feast (local provider, DuckDB offline store unless a test names the file store, SQLite
registry and online store).
"""

from __future__ import annotations

import shutil
import threading
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mainsail.config import ProjectConfig
from mainsail.core.ports import free_port
from mainsail.features import store
from mainsail.features.errors import (
    FeatureDefinitionError,
    FeatureSourceError,
    OnlineStoreUnavailableError,
    RegistryError,
)
from tests.support.feast import ACTIVITY, PROFILE, T0, make_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_apply_registers_views_with_ttls_the_on_demand_view_and_the_versioned_service(
    sqlite_repo: tuple[ProjectConfig, Path],
) -> None:
    cfg, repo = sqlite_repo
    fs = store.open_store(cfg, repo)
    views = {fv.name: fv for fv in fs.list_feature_views()}
    assert set(views) == {"profile", "activity"}
    assert views["activity"].ttl == timedelta(days=45)
    assert views["profile"].ttl == timedelta(days=400)
    assert [f.name for f in views["activity"].features] == ACTIVITY
    odfvs = [o.name for o in fs.list_on_demand_feature_views()]
    assert odfvs == [f"{cfg.features.project}_derived"]
    service = fs.get_feature_service(f"{cfg.features.project}_v1")
    assert {p.name for p in service.feature_view_projections} == {
        "profile",
        "activity",
        f"{cfg.features.project}_derived",
    }
    # feature_store.yaml is generated from the config, not hand-written.
    text = (repo / "feature_store.yaml").read_text()
    assert f"project: {cfg.features.project}" in text and "type: sqlite" in text


def test_reapply_with_a_view_removed_deletes_it_from_the_registry(
    tmp_path: Path, frame: pd.DataFrame
) -> None:
    cfg = make_config("sqlite")
    store.apply(cfg, tmp_path, frame)
    smaller = make_config(
        "sqlite",
        project=cfg.features.project,
        views=[{"name": "profile", "features": PROFILE, "ttl": "400d"}],
        derived=[],
    )
    summary = store.apply(smaller, tmp_path, frame)
    assert set(summary.deleted) == {"activity", f"{cfg.features.project}_derived"}
    names = {fv.name for fv in store.open_store(smaller, tmp_path).list_feature_views()}
    assert names == {"profile"}


def _expected_point_in_time(
    features: pd.DataFrame, labels: pd.DataFrame, columns: list[str], ttl: timedelta
) -> pd.DataFrame:
    """Independent reference: latest feature row at or before each label's event time."""
    left = labels.reset_index().sort_values("event_timestamp")
    right = features[["customer_id", "event_timestamp", *columns]].sort_values("event_timestamp")
    right = right.rename(columns={"event_timestamp": "feature_ts"})
    merged = pd.merge_asof(
        left,
        right,
        left_on="event_timestamp",
        right_on="feature_ts",
        by="customer_id",
        direction="backward",
        tolerance=pd.Timedelta(ttl),
    )
    return merged.sort_values("index").set_index("index")


# Both offline stores Feast offers here: DuckDB (the default) and the dask file store.
@pytest.mark.parametrize("offline_store", ["duckdb", "file"])
def test_training_set_is_point_in_time_correct_and_never_uses_later_values(
    offline_store: str, frame: pd.DataFrame, tmp_path: Path
) -> None:
    cfg = make_config("sqlite", offline_store=offline_store)
    # Poison: for every customer, a snapshot AFTER all of its labels became known, carrying
    # sentinel values. A join that looks past a label's time would pick them up.
    future = frame.groupby("customer_id", as_index=False).tail(1).copy()
    future["event_timestamp"] = future["label_timestamp"] + pd.Timedelta(days=1)
    future["monthly_charges"] = -999.0
    future["contract"] = pd.array(["LEAK"] * len(future), dtype="string")
    poisoned = pd.concat([frame, future], ignore_index=True)
    store.apply(cfg, tmp_path, poisoned)

    labels = frame[["customer_id", "event_timestamp", "label_timestamp", "churned"]].sample(
        300, random_state=3
    )
    got = store.training_set(cfg, tmp_path, labels.reset_index(drop=True))

    assert len(got) == len(labels)
    assert list(got.columns[:4]) == ["customer_id", "event_timestamp", "label_timestamp", "churned"]
    assert (got["monthly_charges"] != -999.0).all()
    assert (got["contract"] != "LEAK").all()
    labels = labels.reset_index(drop=True)
    for columns, ttl in ((ACTIVITY, timedelta(days=45)), (PROFILE, timedelta(days=400))):
        want = _expected_point_in_time(poisoned, labels, columns, ttl)
        # Every joined feature row was observed no later than the row's label timestamp.
        matched = want["feature_ts"].notna()
        assert (want.loc[matched, "feature_ts"] <= labels.loc[matched, "label_timestamp"]).all()
        for column in columns:
            a = got[column].astype("object").where(got[column].notna(), None).tolist()
            b = want[column].astype("object").where(want[column].notna(), None).tolist()
            assert a == b, f"column {column} differs from the point-in-time reference"
    ratio = got["total_charges"] / got["tenure_months"]
    np.testing.assert_allclose(
        got["charge_per_month"].astype(float), ratio.astype(float), equal_nan=True
    )


def test_bad_label_rows_are_rejected_by_name(
    sqlite_repo: tuple[ProjectConfig, Path], frame: pd.DataFrame
) -> None:
    cfg, repo = sqlite_repo
    with pytest.raises(FeatureDefinitionError, match="'event_timestamp' is missing"):
        store.training_set(cfg, repo, frame[["customer_id", "churned"]])
    labels = store.training_labels(cfg, frame)
    assert list(labels.columns) == ["customer_id", "event_timestamp", "label_timestamp", "churned"]
    labels.loc[3, "event_timestamp"] = labels.loc[3, "label_timestamp"] + pd.Timedelta(days=1)
    with pytest.raises(FeatureDefinitionError, match="1 rows have 'event_timestamp' after"):
        store.training_set(cfg, repo, labels)


def test_absent_source_file_gives_a_clear_error_at_apply_and_materialize(
    sqlite_repo: tuple[ProjectConfig, Path], tmp_path: Path
) -> None:
    cfg, repo = sqlite_repo
    copy = tmp_path / "repo"
    shutil.copytree(repo, copy)
    (copy / "data" / "activity.parquet").unlink()
    with pytest.raises(FeatureSourceError, match=r"feature view 'activity'.*does not exist"):
        store.apply(cfg, copy)
    with pytest.raises(FeatureSourceError, match=r"feature view 'activity'.*does not exist"):
        store.materialize(cfg, copy, end=T0)


def test_unknown_config_column_is_named_and_nothing_is_written(
    frame: pd.DataFrame, tmp_path: Path
) -> None:
    cfg = make_config("sqlite", views=[{"name": "profile", "features": ["contract", "nope"]}])
    cfg.features.derived = []
    with pytest.raises(FeatureDefinitionError, match=r"profile.*\['nope'\] are not in the dataset"):
        store.apply(cfg, tmp_path, frame)
    assert not (tmp_path / "data").exists() or not list((tmp_path / "data").glob("*.parquet"))


def test_duplicate_entity_timestamp_rows_are_rejected(frame: pd.DataFrame, tmp_path: Path) -> None:
    cfg = make_config("sqlite")
    doubled = pd.concat([frame, frame.iloc[:1]], ignore_index=True)
    with pytest.raises(FeatureDefinitionError, match="repeat an"):
        store.apply(cfg, tmp_path, doubled)


def test_corrupt_registry_gives_a_clear_error(
    sqlite_repo: tuple[ProjectConfig, Path], tmp_path: Path
) -> None:
    cfg, repo = sqlite_repo
    copy = tmp_path / "repo"
    shutil.copytree(repo, copy)
    (copy / "data" / "registry.db").write_bytes(b"\x00\xffnot a protobuf registry\xff" * 10)
    with pytest.raises(RegistryError, match="is corrupt"):
        store.materialize(cfg, copy, end=T0)
    with pytest.raises(RegistryError, match="is corrupt"):
        store.apply(cfg, copy)


def test_locked_registry_gives_a_clear_error(
    sqlite_repo: tuple[ProjectConfig, Path], tmp_path: Path
) -> None:
    cfg, repo = sqlite_repo
    copy = tmp_path / "repo"
    shutil.copytree(repo, copy)
    errors: list[BaseException] = []

    def second_writer() -> None:
        try:
            with store.registry_lock(cfg, copy, timeout_s=0.2):
                pass
        except RegistryError as err:
            errors.append(err)

    with store.registry_lock(cfg, copy):
        with store.registry_lock(cfg, copy, timeout_s=0.2):  # the holder may take it again
            pass
        other = threading.Thread(target=second_writer)
        other.start()
        other.join()
    assert len(errors) == 1 and "is locked by another writer" in str(errors[0])
    with store.registry_lock(cfg, copy, timeout_s=0.2):  # released: free for the next writer
        pass


def test_materialize_before_apply_says_to_apply_first(frame: pd.DataFrame, tmp_path: Path) -> None:
    from mainsail.features.sources import write_sources

    cfg = make_config("sqlite")
    write_sources(frame, cfg, tmp_path)
    with pytest.raises(RegistryError, match="run `mainsail features apply` first"):
        store.materialize(cfg, tmp_path, end=T0)


def test_unreachable_redis_is_a_clear_error_at_start(frame: pd.DataFrame, tmp_path: Path) -> None:
    cfg = make_config("redis", redis_url=f"redis://127.0.0.1:{free_port()}/13")
    cfg.features.redis_connect_timeout_s = 0.5
    with pytest.raises(OnlineStoreUnavailableError, match=r"Redis online store .* is unreachable"):
        store.apply(cfg, tmp_path, frame)
