"""Privacy by default in the data stage: emails, phone numbers and card-like numbers are found,
flagged and removed before anything could echo them; declared columns likewise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mainsail.config import ConfigError, ProjectConfig, parse_config
from mainsail.core.privacy import detect_kind, kind_of, redact
from mainsail.data.validate import validate_frame
from tests.support.configs import make_config


def _frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "plan": rng.choice(["basic", "gold"], n),
            "email": [f"user{i}@example.org" for i in range(n)],
            "phone": [f"+44 20 7946 {i:04d}" for i in range(n)],
            "notes": rng.choice(["late payer", "loyal"], n),
            "y": rng.choice(["yes", "no"], n),
        }
    )


def _cfg(tmp_path: Path, **privacy: object) -> ProjectConfig:
    return make_config(
        tmp_path / "d.parquet",
        data={"target": "y", "entity_key": None, "event_timestamp": None},
        split={"strategy": "random"},
        privacy=privacy,
    )


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("jane.doe+churn@mail.example.co.uk", "email"),
        ("4111 1111 1111 1111", "card"),
        ("5500-0000-0000-0004", "card"),
        ("+1 (415) 555-2671", "phone"),
        ("020 7946 0018", "phone"),
        ("4111 1111 1111 1112", None),  # Luhn fails
        ("12345", None),
        ("2026-12-05", None),
        ("3.14159265358979", None),
        ("gold", None),
    ],
)
def test_values_are_classified_by_kind(value: str, kind: str | None) -> None:
    assert kind_of(value) == kind


def test_redaction_hashes_or_drops_every_match_in_free_text() -> None:
    text = "no score for jane@example.org (card 4111111111111111, call +1 415 555 2671); id 42"
    hashed = redact(text, "hash")
    assert "jane@example.org" not in hashed and "4111111111111111" not in hashed
    assert "555 2671" not in hashed and "id 42" in hashed
    assert hashed.count("<email:") == 1 and "<card:" in hashed and "<phone:" in hashed
    assert redact(text, "hash") == hashed  # stable: two lines about one value still match
    assert redact(text, "drop") == "no score for <email> (card <card>, call <phone>); id 42"
    assert redact("nothing personal, 3 rows", "hash") == "nothing personal, 3 rows"


def test_detection_needs_the_configured_share() -> None:
    mixed = ["a@b.io", "c@d.io", "free text", None, 3]
    assert detect_kind(mixed, 0.5) == ("email", pytest.approx(2 / 3))
    assert detect_kind(mixed, 0.9) is None


def test_detected_columns_are_flagged_removed_and_never_shown(tmp_path: Path) -> None:
    checked = validate_frame(_frame(), _cfg(tmp_path))
    report = checked.report
    assert set(report.sensitive) == {"email", "phone"}
    assert report.sensitive["email"].startswith("detected: email addresses in 100%")
    assert "email" not in checked.frame.columns and "phone" not in checked.frame.columns
    assert set(checked.features) == {"x1", "plan", "notes"}
    codes = [i.code for i in report.issues if i.column in ("email", "phone")]
    assert codes == ["sensitive_column", "sensitive_column"]
    profile = {p.name: p for p in report.columns}["email"]
    assert profile.role == "sensitive" and profile.top_values is None and profile.unique == 400
    dumped = json.dumps(report.model_dump(mode="json")) + report.to_html()
    assert "@example.org" not in dumped and "7946" not in dumped


def test_declared_columns_go_even_when_undetectable_and_detection_can_be_off(
    tmp_path: Path,
) -> None:
    checked = validate_frame(_frame(), _cfg(tmp_path, sensitive_columns=["notes"], detect=False))
    assert checked.report.sensitive == {"notes": "declared in privacy.sensitive_columns"}
    assert "email" in checked.frame.columns  # detection off: the user's choice
    assert "late payer" not in json.dumps(checked.report.model_dump(mode="json"))


def test_a_sensitive_key_column_is_refused_by_name(tmp_path: Path) -> None:
    raw = {
        "name": "t",
        "data": {"path": str(tmp_path / "d.parquet"), "target": "y", "entity_key": "email"},
        "privacy": {"sensitive_columns": ["email"]},
    }
    with pytest.raises(ConfigError, match=r"data\.entity_key 'email' is listed in privacy"):
        parse_config(raw, source="<test>")


def test_timestamps_and_numbers_in_log_text_are_left_alone() -> None:
    text = "2026-12-05 10:30:00 served 1200 rows in 0.0123456789 s; version 20261205103000"
    assert redact(text) == text


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_data_snapshot_leaves_the_sensitive_columns_out(tmp_path: Path, suffix: str) -> None:
    """The snapshot that goes to the registry bucket (data snapshots) is the data the run used:
    the flagged columns are not in it, whatever the source format."""
    from mainsail.data.snapshot import read_snapshot, snapshot_bytes

    path = tmp_path / f"d{suffix}"
    frame = _frame()
    frame.to_parquet(path) if suffix == ".parquet" else frame.to_csv(path, index=False)
    sensitive = sorted(validate_frame(frame, _cfg(tmp_path)).report.sensitive)
    data = snapshot_bytes(path, drop=sensitive)
    assert b"@example.org" not in data and b"7946" not in data
    assert list(read_snapshot(data).columns) == ["x1", "plan", "notes", "y"]
