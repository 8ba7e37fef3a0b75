"""Ingest: CSV and parquet by suffix, memory-conscious dtypes, atomic generation on first use."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mainsail.config.data import DataConfig, PackagedData, SyntheticData
from mainsail.data.errors import DataSourceError, MalformedFileError
from mainsail.data.ingest import atomic_path, ensure_data_file, read_table, resolve_format
from mainsail.data.packaged import load_packaged
from mainsail.lifecycle.data import run_data_stage
from tests.support.configs import BAD_INPUTS, make_config


def test_csv_and_parquet_read_the_same_table(tmp_path: Path) -> None:
    from_csv = read_table(BAD_INPUTS / "valid.csv")
    parquet = tmp_path / "valid.parquet"
    pd.read_csv(BAD_INPUTS / "valid.csv").to_parquet(parquet, index=False)
    from_parquet = read_table(parquet)
    assert list(from_csv.columns) == list(from_parquet.columns)
    assert len(from_csv) == 12
    # Text becomes categorical (one copy of each value), numbers stay numbers.
    assert isinstance(from_csv["contract"].dtype, pd.CategoricalDtype)
    assert from_csv["monthly_charges"].dtype.kind == "f"
    for name in ("customer_id", "contract", "tenure_months", "monthly_charges", "churned"):
        assert from_csv[name].astype(str).tolist() == from_parquet[name].astype(str).tolist()


def test_format_comes_from_suffix_unless_configured(tmp_path: Path) -> None:
    assert resolve_format(Path("a.CSV")) == "csv"
    assert resolve_format(Path("a.parquet")) == "parquet"
    odd = tmp_path / "export.dat"
    odd.write_bytes((BAD_INPUTS / "valid.csv").read_bytes())
    assert len(read_table(odd, "csv")) == 12
    result = run_data_stage(make_config(odd, data={"format": "csv"}), None)
    assert len(result.frame) == 12


def test_booleans_and_missing_values_survive_parquet(tmp_path: Path) -> None:
    path = tmp_path / "b.parquet"
    pd.DataFrame(
        {"flag": pd.array([True, None, False], dtype="boolean"), "n": [1, None, 3]}
    ).to_parquet(path, index=False)
    frame = read_table(path)
    assert str(frame["flag"].dtype) == "boolean" and frame["flag"].isna().sum() == 1
    assert frame["n"].isna().sum() == 1


def test_synthetic_file_is_generated_once_atomically_and_deterministically(tmp_path: Path) -> None:
    data = DataConfig(
        path=tmp_path / "gen" / "churn.parquet",
        target="churned",
        synthetic=SyntheticData(rows=500),
    )
    assert ensure_data_file(data, seed=3) is True
    first = data.path.read_bytes()
    assert ensure_data_file(data, seed=3) is False, "an existing file is never regenerated"
    assert data.path.read_bytes() == first
    assert [p.name for p in data.path.parent.iterdir()] == ["churn.parquet"], "no temp files left"
    again = tmp_path / "again.parquet"
    ensure_data_file(data.model_copy(update={"path": again}), seed=3)
    assert pd.read_parquet(again).equals(pd.read_parquet(data.path))


def test_failed_generation_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(frame: pd.DataFrame, path: Path, index: bool = False) -> None:
        Path(path).write_bytes(b"PAR1 half written")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", broken)
    data = DataConfig(
        path=tmp_path / "churn.parquet", target="churned", synthetic=SyntheticData(rows=200)
    )
    with pytest.raises(OSError, match="disk full"):
        ensure_data_file(data, seed=1)
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_renames_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("done")
    assert target.read_text() == "done" and list(tmp_path.iterdir()) == [target]


def test_packaged_islp_dataset_is_written_on_first_use(tmp_path: Path) -> None:
    data = DataConfig(
        path=tmp_path / "default.csv", target="default", packaged=PackagedData(name="Default")
    )
    assert ensure_data_file(data, seed=0) is True
    frame = read_table(data.path)
    assert list(frame.columns) == ["default", "student", "balance", "income"]
    assert len(frame) == 10_000


def test_unknown_packaged_dataset_is_named() -> None:
    with pytest.raises(DataSourceError, match=r"data.packaged.name: ISLP has no dataset 'Nope'"):
        load_packaged(PackagedData(name="Nope"))
    with pytest.raises(DataSourceError, match=r"'NCI60' is not a table"):
        load_packaged(PackagedData(name="NCI60"))


def test_synthetic_and_packaged_together_are_ambiguous(tmp_path: Path) -> None:
    data = DataConfig(
        path=tmp_path / "x.csv",
        target="y",
        synthetic=SyntheticData(),
        packaged=PackagedData(name="Default"),
    )
    with pytest.raises(DataSourceError, match=r"data\.synthetic and data\.packaged are both set"):
        ensure_data_file(data, seed=0)
    assert not data.path.exists()


def test_folder_and_corrupt_parquet_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="is a folder"):
        ensure_data_file(DataConfig(path=tmp_path, target="y"), seed=0)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"this is not parquet")
    with pytest.raises(MalformedFileError, match=r"bad.parquet: not a readable parquet file"):
        read_table(bad)


def test_report_says_whether_the_file_was_generated_or_reused(tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path / "churn.parquet", data={"synthetic": {"rows": 800}}, split={"strategy": "group"}
    )
    first = run_data_stage(cfg, None).report.issues[0]
    second = run_data_stage(cfg, None).report.issues[0]
    assert first.code == second.code == "data_source"
    assert "created by this run from data.synthetic" in first.message
    assert "already existed and was used as is" in second.message
