"""Registry errors: each message names the model, the version and the file concerned."""

from __future__ import annotations

from typing import Any


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


class StoreUnavailableError(RegistryError):
    """The object store cannot be reached, refuses the credentials, or has no such bucket."""


def store_error_message(err: BaseException) -> str | None:
    """One line for a failure of the object store itself (minio's `S3Error`, urllib3's
    connection errors), or None when `err` is something else. The CLI prints it instead of a
    traceback."""
    if isinstance(err, StoreUnavailableError):
        return str(err)
    name = type(err).__name__
    code = getattr(err, "code", None)
    if name == "S3Error":
        bucket = getattr(err, "bucket_name", None) or "?"
        if code == "NoSuchBucket":
            return (
                f"the registry bucket {bucket!r} does not exist: create it "
                "(`mainsail models publish` and `mainsail run --publish` do) or check "
                "registry.bucket"
            )
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return (
                f"the object store refused the registry's credentials ({code}); check the "
                "variables registry.access_key_env / secret_key_env name"
            )
        return f"the object store answered {code}: {getattr(err, 'message', '') or err}"
    module = type(err).__module__ or ""
    if module.startswith("urllib3") or isinstance(err, ConnectionError | TimeoutError):
        return f"the object store is unreachable ({_where(err)}): is it running? ({_reason(err)})"
    return None


def _where(err: Any) -> str:
    pool = getattr(err, "pool", None)
    host, port = getattr(pool, "host", None), getattr(pool, "port", None)
    return f"{host}:{port}" if host else "S3 endpoint"


def _reason(err: Any) -> str:
    reason = getattr(err, "reason", None) or err
    text = str(reason)
    if "Connection refused" in text:
        return "connection refused"
    if "timed out" in text.lower():
        return "timed out"
    return text.split(": ", 1)[-1][:120]
