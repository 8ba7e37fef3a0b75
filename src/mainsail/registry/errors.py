"""Registry errors: each message names the model, the version and the file concerned."""

from __future__ import annotations


class RegistryError(RuntimeError):
    """Base class of every registry failure."""


class VersionNotFoundError(RegistryError, LookupError):
    """The model, version or alias does not exist (or is not complete yet)."""


class IntegrityError(RegistryError):
    """A file does not match the sha256 or size recorded in the manifest: never load it."""


class PublishError(RegistryError):
    """A publish failed; nothing of it is visible to readers."""


class AliasError(RegistryError):
    """An alias cannot be moved as asked (unknown alias, nothing to roll back to)."""


class ArtifactError(RegistryError, ValueError):
    """A local model folder is not a valid artifact (missing or unreadable files)."""
