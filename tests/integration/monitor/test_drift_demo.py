"""`mainsail monitoring demo-drift` runs the whole chain and narrates it with timestamps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mainsail.demos.drift import run_drift_demo

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_shows_normal_traffic_then_drift_alert_and_retraining_run(tmp_path: Path) -> None:
    lines: list[str] = []
    out = run_drift_demo(rows=600, workdir=tmp_path, echo=lines.append, timeout_s=90)
    text = "\n".join(lines)
    assert all(re.match(r"^\[\d\d:\d\d:\d\d \+\s*\d+\.\ds\] ", line) for line in lines), text
    assert out["normal"]["row_is_drift"] == 0.0
    assert "alert MainsailDriftSustained: firing" in text
    assert out["run"]["model"] == "churn" and out["run"]["version"] == "1"
    assert Path(out["run"]["window"]).is_file()
    log = Path(out["run"]["log"]).read_text()
    assert "retraining run for model churn version 1" in log
