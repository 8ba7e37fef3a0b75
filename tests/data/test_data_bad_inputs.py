"""The bad-input catalogue (tests/fixtures/bad_inputs/catalogue.yaml): one test per case.

Each case must raise its specific error with a message naming the column, key or path, and must
leave the run folder untouched (not even created).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mainsail.config import ConfigError, load_config
from mainsail.data import errors
from mainsail.lifecycle.data import run_data_stage
from tests.support.configs import BAD_INPUTS, make_config

CATALOGUE: list[dict[str, Any]] = yaml.safe_load((BAD_INPUTS / "catalogue.yaml").read_text())


def _error_class(name: str) -> type[Exception]:
    if name == "ConfigError":
        return ConfigError
    cls = getattr(errors, name)
    assert issubclass(cls, errors.DataError), f"{name} must derive from DataError"
    return cls  # type: ignore[no-any-return]


def test_catalogue_covers_every_case_of_the_issue() -> None:
    ids = {case["id"] for case in CATALOGUE}
    required = {
        "empty_file",
        "missing_target_column",
        "target_with_one_class",
        "all_nan_column",
        "duplicate_entity_and_timestamp",
        "mixed_types_in_a_column",
        "unparseable_timestamps",
        "csv_with_a_ragged_row",
        "config_with_unknown_key",
        "path_does_not_exist",
    }
    assert required <= ids, f"missing cases: {sorted(required - ids)}"


@pytest.mark.parametrize("case", CATALOGUE, ids=[c["id"] for c in CATALOGUE])
def test_bad_input_gives_its_specific_error_and_writes_nothing(
    case: dict[str, Any], tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    expected = _error_class(case["error"])
    with pytest.raises(expected) as caught:
        if "config" in case:
            cfg = load_config(BAD_INPUTS / case["config"])
        else:
            cfg = make_config(
                BAD_INPUTS / case["file"], data=case.get("data", {}), split=case.get("split", {})
            )
        run_data_stage(cfg, run_dir)
    message = str(caught.value)
    assert re.search(case["message"], message), f"unexpected message: {message}"
    # A DataError is also a ValueError, so generic callers can catch it.
    assert isinstance(caught.value, ValueError)
    assert not run_dir.exists(), "a failed data stage must not create or write the run folder"
    # Nothing was generated next to the inputs either (no temporary or partial files).
    assert not list(BAD_INPUTS.glob(".*.tmp"))


@pytest.mark.parametrize(
    "case",
    [c for c in CATALOGUE if c["error"] not in ("ConfigError",) and "file" in c],
    ids=lambda c: c["id"],
)
def test_validation_errors_carry_the_partial_report_when_validation_found_them(
    case: dict[str, Any],
) -> None:
    cfg = make_config(
        BAD_INPUTS / case["file"], data=case.get("data", {}), split=case.get("split", {})
    )
    with pytest.raises(errors.DataError) as caught:
        run_data_stage(cfg, None)
    err = caught.value
    if isinstance(err, errors.DataSourceError):
        assert err.report is None  # the file could not be read: nothing was validated
    else:
        assert err.report is not None and not err.report.passed
        assert err.report.errors()[-1].message == str(err)
        assert err.report.errors()[-1].code == err.code


def test_existing_run_folder_is_left_as_it_was_on_bad_input(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("kept: true\n")
    cfg = make_config(BAD_INPUTS / "one_class.csv")
    with pytest.raises(errors.TargetError):
        run_data_stage(cfg, run_dir)
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml"]


def test_unknown_key_in_a_nested_section_suggests_the_closest_key(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("name: x\ndata: {path: d.csv, target: y}\nsplit: {strategey: group}\nsede: 3\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert "split.strategey: unknown key; did you mean 'strategy'?" in text
    assert "sede: unknown key; did you mean 'seed'?" in text


def test_positive_class_that_is_not_a_class_is_named(tmp_path: Path) -> None:
    cfg = make_config(BAD_INPUTS / "valid.csv", data={"positive_class": "yes"})
    with pytest.raises(errors.TargetError, match=r"data.positive_class 'yes' is not a class"):
        run_data_stage(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_regression_target_with_text_is_rejected_with_its_dtype(tmp_path: Path) -> None:
    cfg = make_config(
        BAD_INPUTS / "valid.csv", data={"target": "contract", "problem_type": "regression"}
    )
    with pytest.raises(
        errors.TargetError, match=r"target column 'contract' has dtype .* needs numbers"
    ):
        run_data_stage(cfg, tmp_path / "run")


def test_missing_event_timestamp_values_are_an_error(tmp_path: Path) -> None:
    lines = (BAD_INPUTS / "valid.csv").read_text().splitlines()
    lines[3] = lines[3].replace("2024-01-07T09:15:00Z", "")
    path = tmp_path / "gaps.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        errors.TimestampError, match=r"'event_timestamp' .* 1 missing value.* row\(s\) 3"
    ):
        run_data_stage(make_config(path), tmp_path / "run")


def test_numbers_in_a_timestamp_column_are_rejected(tmp_path: Path) -> None:
    cfg = make_config(BAD_INPUTS / "valid.csv", data={"event_timestamp": "tenure_months"})
    with pytest.raises(errors.TimestampError, match=r"column 'tenure_months' holds numbers"):
        run_data_stage(cfg, tmp_path / "run")


def test_the_fix_each_message_suggests_works(tmp_path: Path) -> None:
    # "list it under data.drop" really lets an all-missing column through.
    cfg = make_config(BAD_INPUTS / "all_nan_column.csv", data={"drop": ["discount"]})
    result = run_data_stage(cfg, tmp_path / "run")
    assert "discount" not in result.features
    assert {c.name: c.role for c in result.report.columns}["discount"] == "dropped"
    assert (tmp_path / "run" / "validation_report.json").exists()
