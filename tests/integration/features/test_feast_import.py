"""Feast without its import-time typeguard instrumentation (mainsail.features.feast_import)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# Run in a fresh interpreter: this test process may have imported Feast already.
PROBE = """
import json, sys
import mainsail.features.store  # a Feast bridge module: installs the no-op before Feast
from feast.feature_view import FeatureView
import typeguard

def checked_elsewhere() -> bool:
    @typeguard.typechecked
    def f(x: int) -> int:
        return x
    try:
        f("a")
    except typeguard.TypeCheckError:
        return True
    return False

# typeguard's instrumented code imports its memo and checking functions in the function.
names = FeatureView.__init__.__code__.co_names
print(json.dumps({
    "feast_instrumented": "TypeCheckMemo" in names,
    "others_checked": checked_elsewhere(),
}))
"""


def _probe(tmp_path, **env: str) -> dict[str, bool]:
    script = tmp_path / "probe.py"  # typeguard instruments from the source file
    script.write_text(PROBE)
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_feasts_classes_are_not_instrumented_and_other_typeguard_use_is_untouched(
    tmp_path,
) -> None:
    # Half of `import feast`'s seconds, in every process that uses Feast, went to typeguard
    # recompiling Feast's decorated classes from their source.
    assert _probe(tmp_path) == {"feast_instrumented": False, "others_checked": True}


def test_the_environment_variable_keeps_feasts_checks(tmp_path) -> None:
    found = _probe(tmp_path, MAINSAIL_FEAST_TYPECHECKS="1")
    assert found == {"feast_instrumented": True, "others_checked": True}
