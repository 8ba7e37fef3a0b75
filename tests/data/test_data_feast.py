"""The data stage builds its training rows with Feast when the config has a `features` section.

Real Feast (local provider, DuckDB offline store, SQLite online store) in a temporary repository:
the stage writes the data file's rows as the feature sources, applies the repository and joins
the label rows point-in-time; these tests check what reaches the rows that training uses.
"""

from __future__ import annotations

import fcntl
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mainsail.config import (
    ProjectConfig,
    config_from_json,
    config_to_json,
    load_config,
    parse_config,
)
from mainsail.core.files import sha256_file
from mainsail.data.synthetic import generate_churn
from mainsail.features import training as feast_training
from mainsail.features.errors import FeatureDefinitionError, RegistryError
from mainsail.lifecycle.data import run_data_stage
from mainsail.lifecycle.run import run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
KEY, TS = "customer_id", "event_timestamp"
#: Values no generated row has: a later observation carries them.
LATER = {"tenure_months": 9999, "monthly_charges": -777.0, "satisfaction_score": -5.0}


def churn_config(tmp: Path, data: Path, **overrides: Any) -> ProjectConfig:
    """configs/churn.yaml (which has a `features` section) on `data`, repository under `tmp`."""
    return load_config(
        REPO / "configs" / "churn.yaml",
        {
            "data.path": str(data),
            "features.repo_dir": str(tmp / "repo"),
            "runs_dir": str(tmp / "runs"),
            **overrides,
        },
    )


def with_later_observations(labelled: pd.DataFrame) -> pd.DataFrame:
    """`labelled` plus, per customer, one unlabelled observation 10 days after its last row."""
    last = labelled.sort_values(TS).groupby(KEY, observed=True).tail(1)
    later = last.copy()
    later[TS] = later[TS] + pd.Timedelta(days=10)
    later["label_timestamp"] = later[TS] + pd.Timedelta(days=30)
    for column, value in LATER.items():
        later[column] = value
    later["churned"] = pd.NA
    out = pd.concat([labelled, later], ignore_index=True)
    out["churned"] = out["churned"].astype("Int64")
    return out


def test_later_observations_never_reach_the_rows_the_run_trains_on(tmp_path: Path) -> None:
    labelled = generate_churn(1200, seed=5)
    data = tmp_path / "churn.parquet"
    with_later_observations(labelled).to_parquet(data, index=False)
    cfg = churn_config(tmp_path, data)

    result = run(cfg, stages=("data",))

    # The run records which feature service and registry produced its rows.
    lineage = json.loads((result.run_dir / "lineage.json").read_text())["features"]
    registry = tmp_path / "repo" / "data" / "registry.db"
    assert lineage["feature_service"] == "churn_v1"
    assert lineage["registry"] == str(registry)
    assert lineage["registry_sha256"] == sha256_file(registry)
    assert lineage["rows_missing_features"] == 0
    # ...and what serving needs to fetch the same features by entity key.
    assert lineage["lookup_spec"]["service"] == "churn_v1"
    assert lineage["lookup_spec"]["entity_key"] == KEY
    summary = json.loads((result.run_dir / "split_summary.json").read_text())
    assert summary["feast"]["feature_service"] == "churn_v1"
    assert summary["feast"]["label_rows"] == len(labelled)
    assert summary["feast"]["observation_rows"] == len(labelled) + labelled[KEY].nunique()
    assert result.timings["data"] > 0
    # The run's feature schema (ranges of its train rows) shows no later value...
    schema = {
        f["name"]: f
        for f in json.loads((result.run_dir / "feature_schema.json").read_text())["features"]
    }
    assert schema["tenure_months"]["max"] < LATER["tenure_months"]
    assert schema["monthly_charges"]["min"] > LATER["monthly_charges"]
    assert schema["satisfaction_score"]["min"] > LATER["satisfaction_score"]

    # The later observations are in the feature source Feast reads...
    source = pd.read_parquet(tmp_path / "repo" / "data" / "churn_features.parquet")
    assert (source["tenure_months"] == LATER["tenure_months"]).sum() == labelled[KEY].nunique()
    # ...and none of their values reaches a training row (the stage that `run` called, once
    # more here to see its frame); every row has its own values.
    stage = run_data_stage(cfg)
    frame = stage.frame
    assert len(frame) == len(labelled)
    for column, value in LATER.items():
        assert not (frame[column] == value).any(), column
    merged = frame.merge(labelled, on=[KEY, TS], suffixes=("", "_file"), validate="one_to_one")
    for column in ("tenure_months", "monthly_charges", "contract", "satisfaction_score"):
        pd.testing.assert_series_equal(
            merged[column].astype(object),
            merged[f"{column}_file"].astype(object),
            check_names=False,
        )
    assert stage.report.missing_target_rows_dropped == labelled[KEY].nunique()
    assert "feast_training_set" in [i.code for i in stage.report.issues]


def test_feast_rows_equal_the_file_rows_when_each_label_has_its_own_observation(
    tmp_path: Path,
) -> None:
    data = tmp_path / "churn.parquet"
    generate_churn(1000, seed=3).to_parquet(data, index=False)
    table = run_data_stage(churn_config(tmp_path, data, **{"features.training_set": False}))
    feast = run_data_stage(churn_config(tmp_path, data))
    assert table.feast is None and feast.feast is not None
    pd.testing.assert_frame_equal(feast.frame, table.frame)
    for side in ("train", "valid", "test"):
        np.testing.assert_array_equal(getattr(feast.split, side), getattr(table.split, side))
    np.testing.assert_array_equal(
        feast.preprocessor.transform(feast.X("test")),
        table.preprocessor.transform(table.X("test")),
    )
    assert feast.schema == table.schema
    assert "features" in feast.timings and "features" not in table.timings


def test_rows_beyond_a_views_ttl_come_back_missing_and_are_counted(tmp_path: Path) -> None:
    observed = generate_churn(800, seed=9)
    data = tmp_path / "churn.parquet"
    observed.to_parquet(data, index=False)
    cfg = churn_config(tmp_path, data, **{"features.default_ttl": "20d"})
    # Labels 25 days after each observation: beyond the 20-day TTL unless the same customer
    # was observed again within the 20 days before.
    shifted = observed.copy()
    for column in (TS, "label_timestamp"):
        shifted[column] = shifted[column] + pd.Timedelta(days=25)
    from mainsail.data.validate import validate_frame

    labels = validate_frame(shifted, cfg)
    out = feast_training.training_rows(
        cfg, observed, labels, source=str(data), data_sha256="", origin=None
    )
    rows = out.checked.frame
    blank = rows["tenure_months"].isna() & rows["contract"].isna()
    assert blank.sum() > 0
    assert out.lineage["rows_missing_features"] == int(blank.sum())
    assert out.lineage["missing_by_view"] == {"churn_features": int(blank.sum())}
    notes = {i.code: i.message for i in out.checked.report.issues}
    assert "TTL 20d" in notes["feast_missing_features"]
    assert f"{int(blank.sum())} of {len(rows)} training rows" in notes["feast_missing_features"]
    # A row with an observation within the TTL before it keeps that observation's values.
    kept = rows.loc[~blank].iloc[0]
    seen = observed[(observed[KEY] == kept[KEY]) & (observed[TS] <= kept[TS])]
    assert kept["tenure_months"] == seen.sort_values(TS)["tenure_months"].iloc[-1]


def _no_run_folder(cfg: ProjectConfig) -> None:
    runs = Path(cfg.runs_dir)
    assert not runs.exists() or not any(runs.iterdir()), list(runs.iterdir())


def test_features_without_an_entity_key_fail_clearly_and_leave_no_run(tmp_path: Path) -> None:
    data = tmp_path / "churn.parquet"
    generate_churn(300, seed=1).drop(columns=["customer_id"]).to_parquet(data, index=False)
    cfg = churn_config(tmp_path, data, **{"data.entity_key": None, "split.strategy": "stratified"})
    with pytest.raises(FeatureDefinitionError, match=r"data\.entity_key: Feast needs"):
        run(cfg, stages=("data",))
    _no_run_folder(cfg)


def test_corrupt_registry_fails_clearly_and_leaves_no_run(tmp_path: Path) -> None:
    data = tmp_path / "churn.parquet"
    generate_churn(300, seed=1).to_parquet(data, index=False)
    cfg = churn_config(tmp_path, data)
    registry = tmp_path / "repo" / "data" / "registry.db"
    registry.parent.mkdir(parents=True)
    registry.write_bytes(b"\x08\xff\xff not a registry")
    with pytest.raises(RegistryError, match="is corrupt"):
        run(cfg, stages=("data",))
    _no_run_folder(cfg)


def test_registry_locked_by_another_writer_fails_clearly_and_leaves_no_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "churn.parquet"
    generate_churn(300, seed=1).to_parquet(data, index=False)
    cfg = churn_config(tmp_path, data)
    monkeypatch.setattr(feast_training, "LOCK_TIMEOUT_S", 0.3)  # not the two minutes a run waits
    lock = tmp_path / "repo" / "data" / "registry.lock"
    lock.parent.mkdir(parents=True)
    with lock.open("a+") as other:  # a second open file: flock treats it as another writer
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        other.write("4242")
        other.flush()
        with pytest.raises(RegistryError, match=r"locked by another writer \(pid 4242\)"):
            run(cfg, stages=("data",))
    _no_run_folder(cfg)


def test_features_section_decides_and_survives_the_pipeline_json(tmp_path: Path) -> None:
    churn = churn_config(tmp_path, tmp_path / "x.parquet")
    islp = load_config(REPO / "configs" / "islp_default.yaml")
    assert churn.features.training_set is True and islp.features.training_set is False
    assert churn.features.repo_dir == tmp_path / "repo"
    assert load_config(REPO / "configs" / "churn.yaml").features.repo_dir == REPO / "feature_repo"
    off = parse_config(
        {"name": "x", "data": {"path": "d.csv", "target": "y"}, "features": {"training_set": False}}
    )
    assert off.features.training_set is False
    for cfg in (churn, islp, off):
        again = config_from_json(config_to_json(cfg))
        assert again.features.training_set is cfg.features.training_set
