"""Run a snippet with orjson and without it: the serving path's encoders (telemetry lines, the
drift feed's rows) use orjson where the env has it and json's C encoder otherwise, and must
write the same values either way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from tests.support.configs import REPO

_WITHOUT = """
import sys
if sys.argv[1:] == ["without"]:
    sys.modules["orjson"] = None  # an env without it: the import fails
"""


def with_and_without_orjson(code: str) -> dict[str, Any]:
    """{"with": ..., "without": ...}: the JSON that `code` prints last, run in a fresh
    interpreter with orjson importable and with its import failing."""
    runs = {}
    for mode in ("with", "without"):
        out = subprocess.run(
            [sys.executable, "-c", _WITHOUT + code, mode],
            env={**os.environ, "PYTHONPATH": str(REPO / "src")},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        runs[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    return runs
