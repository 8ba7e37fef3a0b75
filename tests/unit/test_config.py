"""The project config: typed, strict, with helpful errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mainsail.config import ConfigError, ProjectConfig, load_config

MINIMAL = {"name": "demo", "data": {"path": "data.csv", "target": "y"}}


def write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_default_config_loads_and_resolves_paths_against_its_folder(repo_root: Path) -> None:
    cfg = load_config(repo_root / "configs" / "churn.yaml")
    assert cfg.name == "churn"
    assert cfg.data.path == repo_root / "data" / "churn.parquet"
    assert cfg.runs_dir == repo_root / "runs"
    assert cfg.split.strategy == "group"
    assert cfg.primary_metric("classification") == "roc_auc"


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.data.problem_type is None  # detected later by the data stage
    assert cfg.primary_metric("regression") == "rmse"
    assert cfg.data.path == tmp_path / "data.csv"


def test_misspelled_nested_key_names_the_key_and_suggests_the_closest(tmp_path: Path) -> None:
    raw = {"name": "demo", "data": {"path": "d.csv", "target": "y", "entity_kee": "id"}}
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, raw))
    message = str(err.value)
    assert "data.entity_kee: unknown key" in message
    assert "did you mean 'entity_key'?" in message
    assert "project.yaml" in message


def test_misspelled_top_level_key_suggests_the_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tunning: unknown key; did you mean 'tune'\?"):
        load_config(write(tmp_path, {**MINIMAL, "tunning": {"num_trials": 3}}))


def test_unknown_key_without_close_match_has_no_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, {**MINIMAL, "zzzz": 1}))
    assert "zzzz: unknown key" in str(err.value)
    assert "did you mean" not in str(err.value)


def test_missing_required_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.target: required key is missing"):
        load_config(write(tmp_path, {"name": "demo", "data": {"path": "x.csv"}}))


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"metric": "roc_acu"}, "did you mean 'roc_auc'"),
        ({"split": {"strategy": "time"}}, "needs data.event_timestamp"),
        ({"split": {"strategy": "group"}}, "needs data.entity_key"),
        ({"split": {"test_size": 0.45, "valid_size": 0.45}}, "at least 20% to train"),
        ({"seed": "abc"}, "seed"),
        ({"name": "Bad Name"}, "name"),
    ],
)
def test_invalid_values_are_explained(tmp_path: Path, patch: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, {**MINIMAL, **patch}))


def test_metric_must_match_problem_type(tmp_path: Path) -> None:
    raw = {
        "name": "d",
        "metric": "rmse",
        "data": {**MINIMAL["data"], "problem_type": "classification"},
    }
    with pytest.raises(ConfigError, match="regression metric"):
        load_config(write(tmp_path, raw))


def test_missing_file_and_bad_yaml_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_overrides_are_validated_like_file_keys(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    cfg = load_config(path, {"split.test_size": 0.1, "seed": 7})
    assert (cfg.split.test_size, cfg.seed) == (0.1, 7)
    with pytest.raises(
        ConfigError, match=r"split\.tset_size: unknown key; did you mean 'test_size'"
    ):
        load_config(path, {"split.tset_size": 0.1})


def test_digest_changes_with_any_setting() -> None:
    a = ProjectConfig.model_validate(MINIMAL)
    b = ProjectConfig.model_validate({**MINIMAL, "seed": 43})
    assert a.digest() == ProjectConfig.model_validate(MINIMAL).digest()
    assert a.digest() != b.digest()


def test_a_check_across_keys_names_them_without_dumping_the_config(tmp_path: Path) -> None:
    raw = {**MINIMAL, "split": {"strategy": "time"}}  # needs data.event_timestamp
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, raw))
    message = str(err.value)
    assert "split.strategy 'time' needs data.event_timestamp" in message
    assert "got {" not in message and "'data':" not in message


def test_unquoted_yes_is_kept_as_a_boolean_positive_class(tmp_path: Path) -> None:
    """YAML reads `positive_class: yes` as true: the config keeps the boolean (the data stage
    then says to quote it unless the labels are booleans), it does not turn it into 1."""
    path = tmp_path / "c.yaml"
    path.write_text("name: d\ndata:\n  path: d.csv\n  target: y\n  positive_class: yes\n")
    cfg = load_config(path)
    assert cfg.data.positive_class is True
    assert cfg.positive_label() == "True"
    quoted = tmp_path / "q.yaml"
    quoted.write_text('name: d\ndata:\n  path: d.csv\n  target: y\n  positive_class: "yes"\n')
    assert load_config(quoted).positive_label() == "yes"
