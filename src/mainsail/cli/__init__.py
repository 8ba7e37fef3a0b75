"""The `mainsail` command line: `main` (the console script) and the Typer `app`.

- `main`: run, submit, check-config, generate, feedback, promote, and the groups below;
- `demo`: `mainsail demo loop | drift`;
- `models` (registry), `deploy`, `stack` (up / status / down), `features`, `trigger`,
  `monitoring`: one module per command group;
- `common`: consoles, errors and `--set` overrides that every command shares.
"""

from __future__ import annotations

from mainsail.cli.main import app, main

__all__ = ["app", "main"]
