"""bench/results: the README's table is current, and no result file is older than the code it
measures (issue 20).

A result file records the commit it was measured on (bench/common.py). It is stale when a later
commit touched what it measures (bench/table.py's MEASURES: the benchmarked modules and the
benchmark itself). A stale file fails this test, except the ones listed in AWAITING_REMEASURE,
which are expected failures (strict: once re-measured, the entry must go).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import table  # noqa: E402

RESULT_FILES = table.result_files()

# Files whose code changed before they could be re-measured on a quiet machine (figures taken
# on a busy one would measure the neighbours). Empty: every file was measured on its code.
REMEASURE = "re-measure on a quiet machine: `make bench`"
AWAITING_REMEASURE: set[str] = set()


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def _has_git_history() -> bool:
    if shutil.which("git") is None:
        return False
    try:
        return bool(_git("rev-parse", "HEAD"))
    except subprocess.CalledProcessError:
        return False


def test_readme_table_is_current() -> None:
    current = table.README.read_text()
    assert table.splice(current, table.render()) == current, (
        "bench/README.md's table differs from bench/results/*.json: run `make bench-table`"
    )


def test_every_result_file_maps_to_a_benchmark() -> None:
    for path in RESULT_FILES:
        assert table.benchmark_of(path) in table.MEASURES
    for paths in table.MEASURES.values():
        for rel in paths:
            assert (REPO / rel).exists(), f"bench/table.py MEASURES names a missing path {rel}"


def test_every_benchmark_is_in_make_bench() -> None:
    makefile = (REPO / "Makefile").read_text()
    line = next(x for x in makefile.splitlines() if x.startswith("BENCHES :="))
    assert set(line.split(":=")[1].split()) == set(table.MEASURES)
    scripts = {p.stem.removeprefix("bench_") for p in (REPO / "bench").glob("bench_*.py")}
    assert scripts == set(table.MEASURES)


def _stale_reason(path: Path) -> str | None:
    doc = json.loads(path.read_text())
    commit = doc.get("commit")
    if not commit:
        return "records no commit (written before bench/common.py)"
    paths = table.MEASURES[table.benchmark_of(path)]
    last = _git("log", "-1", "--format=%H", "--", *paths)
    if not last:
        return None
    try:
        _git("merge-base", "--is-ancestor", last, commit)
    except subprocess.CalledProcessError:
        return f"measured on {commit[:9]}, but {last[:9]} changed {', '.join(paths)} since"
    return None  # a busy result is allowed: the table flags it


@pytest.mark.skipif(not _has_git_history(), reason="needs git and the repository's history")
@pytest.mark.parametrize("path", RESULT_FILES, ids=[p.name for p in RESULT_FILES])
def test_result_is_not_older_than_the_code_it_measures(
    path: Path, request: pytest.FixtureRequest
) -> None:
    if path.name in AWAITING_REMEASURE:
        request.applymarker(pytest.mark.xfail(reason=REMEASURE, strict=True))
    reason = _stale_reason(path)
    assert reason is None, f"{path.name} is stale: {reason}; {REMEASURE}"


def test_new_format_files_carry_the_header() -> None:
    for path in RESULT_FILES:
        doc = json.loads(path.read_text())
        if not table.is_current_format(doc):
            continue
        for key in ("date", "commit", "machine", "load_average", "busy", "passed", "targets"):
            assert key in doc, f"{path.name} lacks {key}"
        assert {"before", "after"} <= set(doc["load_average"])
        assert {"cpu_model", "cores", "memory_gib"} <= set(doc["machine"])
        assert not doc["quick"], f"{path.name}: quick-mode figures are not official results"


@pytest.mark.skipif(not _has_git_history(), reason="needs git and the repository's history")
def test_staleness_compares_the_recorded_commit(tmp_path: Path) -> None:
    last = _git("log", "-1", "--format=%H", "--", *table.MEASURES["tuning"])
    before = _git("rev-list", "--max-parents=0", "HEAD").splitlines()[0]
    path = tmp_path / "tuning.json"
    path.write_text(json.dumps({"commit": _git("rev-parse", "HEAD"), "targets": []}))
    assert _stale_reason(path) is None
    path.write_text(json.dumps({"commit": last, "targets": []}))
    assert _stale_reason(path) is None
    if before != last:
        path.write_text(json.dumps({"commit": before, "targets": []}))
        assert "changed" in (_stale_reason(path) or "")
    path.write_text(json.dumps({"targets": {}}))
    assert "no commit" in (_stale_reason(path) or "")
