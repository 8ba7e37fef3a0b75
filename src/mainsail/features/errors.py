"""Errors of the feature store bridge; each message names the view, file or server at fault."""

from __future__ import annotations


class FeatureStoreError(RuntimeError):
    """Base class: the feature store cannot do what was asked; the message says why."""


class FeatureDefinitionError(FeatureStoreError, ValueError):
    """The config and the data disagree (unknown column, target used as a feature, bad dtype)."""


class FeatureSourceError(FeatureStoreError):
    """A feature view's parquet source is absent or unreadable."""


class RegistryError(FeatureStoreError):
    """The Feast registry is corrupt, locked by another writer, or was never applied."""


class OnlineStoreUnavailableError(FeatureStoreError):
    """The online store (Redis, SQLite) or the feature server cannot be reached.

    `status_code` is what an HTTP server should answer: 503 Service Unavailable.
    """

    status_code = 503
