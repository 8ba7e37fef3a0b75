"""Feast imported without its import-time type-check instrumentation.

Feast decorates its API classes with typeguard's ``@typechecked``, which re-reads and recompiles
each decorated class's source when the module is imported: about half of the 5 s that
``import feast`` took on the CI machine (2026-12-06: 5.0 s, 2.5 s without), paid by every
process that uses Feast (`mainsail run`, each pipeline step, the feature server). Typeguard
documents the decorator as a development aid, a no-op under ``python -O``.

Importing this module (the Feast bridge modules do, before any Feast import) makes
``typeguard.typechecked`` return what it decorates when the caller is one of Feast's own
modules; every other use of typeguard is passed to it unchanged. Feast's API then no longer
checks its arguments' types at run time: Mainsail's calls are covered by its tests.
``MAINSAIL_FEAST_TYPECHECKS=1`` keeps Feast's checks (set before the first Feast import).
"""

from __future__ import annotations

import os
import sys
from typing import Any

ENV_KEEP = "MAINSAIL_FEAST_TYPECHECKS"
"""`1`: leave Feast's typeguard instrumentation as it is."""


def _from_feast(depth: int) -> bool:
    try:
        caller = sys._getframe(depth).f_globals.get("__name__", "")
    except (AttributeError, ValueError):  # pragma: no cover - not CPython
        return False
    return bool(caller == "feast" or str(caller).startswith("feast."))


def install() -> bool:
    """Put the Feast-only no-op in front of `typeguard.typechecked` (once, before Feast's
    first import; idempotent). False when it is not installed: Feast already imported,
    typeguard absent, or :data:`ENV_KEEP` set."""
    if os.environ.get(ENV_KEEP) == "1":
        return False
    try:
        import typeguard
    except ImportError:  # pragma: no cover - Feast needs it; the serving env has neither
        return False
    original = typeguard.typechecked
    if getattr(original, "mainsail_feast_off", False):
        return True
    if "feast" in sys.modules:
        return False  # its modules hold the real decorator already

    def typechecked(target: Any = None, **options: Any) -> Any:
        if _from_feast(2):
            return (lambda decorated: decorated) if target is None else target
        return original(target, **options)

    typechecked.mainsail_feast_off = True  # type: ignore[attr-defined]
    typechecked.__doc__ = original.__doc__
    typeguard.typechecked = typechecked
    return True


install()
