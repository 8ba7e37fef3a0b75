"""The canary router: the local stand-in for Seldon Core 2's Experiment.

Weighted champion/challenger split with sticky assignment, optional mirroring, per-variant
Prometheus metrics (names in :mod:`mainsail.serving.router.metrics`), a token-protected admin
API and health checks; see :mod:`mainsail.serving.router.app`. Runs in the pipeline env on its
own lean HTTP/1.1 server (:mod:`mainsail.serving.router.server`; ``--server uvicorn`` serves the
same ASGI app with uvicorn): ``python -m mainsail.serving.router --settings router.json``.

Importing this package loads nothing heavy; :func:`create_router` imports Starlette.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mainsail.serving.router.app import Router, RouterSettings

__all__ = ["create_router", "load_settings"]


def create_router(settings: RouterSettings, token: str | None = None) -> Router:
    """A router ASGI app for `settings` (see :func:`mainsail.serving.router.app.create_router`)."""
    from mainsail.serving.router.app import create_router as _create

    return _create(settings, token)


def load_settings(raw: dict[str, Any]) -> RouterSettings:
    """Validate a router settings mapping (as written by the local stack)."""
    from mainsail.serving.router.app import RouterSettings

    return RouterSettings.model_validate(raw)
