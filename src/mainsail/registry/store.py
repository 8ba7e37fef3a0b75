"""The model registry on any S3 API (SeaweedFS locally, MinIO in a cluster), via the minio client.

Layout inside the bucket, under `prefix`::

    <model>/versions/<N>/<files...>          the artifact, model-settings.json included
    <model>/versions/<N>/manifest.sig        Ed25519 signature of the manifest (see signing)
    <model>/versions/<N>/manifest.json       written LAST: a version exists iff this exists
    <model>/staging/<token>/<files...>       uploads in progress (never read by readers)
    <model>/aliases.json                     champion/challenger -> version, with history

Publishing uploads under a staging prefix, re-reads and hashes every staged object, copies them
server-side into `versions/<N>/`, checks the copies' sizes, and only then writes the manifest.
A reader lists versions by their manifests, so it never sees a partial version; a failed
publish removes what it wrote and leaves no manifest. Version numbers are 1 + the highest number
ever used under `versions/` (complete or not), so they only grow and never reuse debris.

Downloads stream every file through sha256 and compare with the manifest before the folder is
moved into place; a tampered file raises :class:`IntegrityError` and nothing is left behind.
With a :class:`~mainsail.registry.signing.Verifier` (the public keys of
`registry.public_keys_env`), every download by version or alias first checks the manifest's
signature, so a model rewritten together with its manifest is refused; with
`registry.require_signature` (the default) a registry opened without public keys refuses to
download at all. A publish signs when it has a :class:`~mainsail.registry.signing.Signer`.

Staging: a publish that dies half-way leaves objects under `staging/`; the next publish of the
model removes those older than `STAGING_GRACE_S`, and :meth:`ModelRegistry.gc` removes them on
demand (`mainsail models gc`).

Concurrency: one publisher per model at a time (the pipeline's publish step); alias updates are
read-modify-write of one small object.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mainsail.registry.errors import (
    AliasError,
    ArtifactError,
    IntegrityError,
    PublishError,
    RegistryError,
    VersionNotFoundError,
)
from mainsail.registry.manifest import (
    MANIFEST_NAME,
    MODEL_SETTINGS_NAME,
    SCHEMA_FILE,
    FileEntry,
    Manifest,
    check_entry,
    safe_relpath,
    scan_artifact,
    sha256_bytes,
    verify_folder,
)
from mainsail.registry.mlserver import model_settings_bytes
from mainsail.registry.signing import SIGNATURE_NAME, Signer, Verifier

if TYPE_CHECKING:
    from minio import Minio

    from mainsail.config.registry import RegistryConfig

log = logging.getLogger("mainsail.registry")

ALIASES = ("champion", "challenger")
_MODEL_NAME = r"^[a-z][a-z0-9-]{0,39}$"
STAGING_GRACE_S = 3600.0
"""Staging objects older than this belong to a dead publish (a live one takes seconds)."""


@dataclass(frozen=True)
class VersionInfo:
    """A complete version as listed by the registry."""

    model: str
    version: int
    created_at: str
    aliases: tuple[str, ...]
    metrics: dict[str, Any]
    manifest_sha256: str


@dataclass(frozen=True)
class LocalVersion:
    """A downloaded, verified version."""

    path: Path
    manifest: Manifest


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def s3_address(endpoint: str, secure: bool = False) -> tuple[str, bool]:
    """`host:port` and whether to use HTTPS, from `host:port` or an `http(s)://host:port` URL.

    The chart renders the S3 endpoint as a URL (MAINSAIL_S3_ENDPOINT, what boto3 and Feast
    take); the minio client wants `host:port` and a `secure` flag, and raises on a URL.
    """
    import urllib.parse

    text = endpoint.strip()
    if "://" not in text:
        address, use_https = text.rstrip("/"), secure
    else:
        parsed = urllib.parse.urlsplit(text)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise RegistryError(f"S3 endpoint {endpoint!r} is not an http(s) URL nor host:port")
        if parsed.path.strip("/") or parsed.query:
            raise RegistryError(
                f"S3 endpoint {endpoint!r} has a path; give the server only "
                "(http(s)://host:port), the bucket is set apart"
            )
        address, use_https = parsed.netloc, parsed.scheme == "https"
    if not address or "/" in address:
        raise RegistryError(f"S3 endpoint {endpoint!r} is not host:port nor an http(s) URL")
    return address, use_https


def registry_from_env(cfg: RegistryConfig, environ: Mapping[str, str]) -> RegistryConfig:
    """`cfg` with what the deployment's environment supplies where the config is silent: the
    S3 endpoint (MAINSAIL_S3_ENDPOINT) when `endpoint` is unset, the bucket
    (MAINSAIL_S3_BUCKET) when `bucket` was not given. The chart sets both on every workload."""
    from mainsail.core import naming

    updates: dict[str, Any] = {}
    if not cfg.endpoint and environ.get(naming.ENV_S3_ENDPOINT):
        updates["endpoint"] = environ[naming.ENV_S3_ENDPOINT]
    if "bucket" not in cfg.model_fields_set and environ.get(naming.ENV_S3_BUCKET):
        updates["bucket"] = environ[naming.ENV_S3_BUCKET]
    return cfg.model_copy(update=updates) if updates else cfg


def _check_model_name(model: str) -> str:
    import re

    if not re.match(_MODEL_NAME, model):
        raise RegistryError(
            f"model name {model!r} is invalid: lower-case letters, digits and dashes, "
            "starting with a letter, at most 40 characters"
        )
    return model


class ModelRegistry:
    """Versions, aliases and verified downloads of models in one S3 bucket."""

    def __init__(
        self,
        client: Minio,
        bucket: str,
        prefix: str = "",
        *,
        history_limit: int = 50,
        signer: Signer | None = None,
        verifier: Verifier | None = None,
        require_signature: bool = False,
        extra_aliases: tuple[str, ...] = (),
    ) -> None:
        if prefix and not prefix.endswith("/"):
            raise RegistryError(f"registry prefix {prefix!r} must be empty or end with '/'")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.history_limit = history_limit
        self.signer = signer
        self.verifier = verifier
        #: Refuse every download when there is no verifier (no public key configured).
        self.require_signature = require_signature
        #: Aliases beyond champion/challenger that may be set: the environments' own
        #: (`environments.<name>.champion_alias`, see `mainsail.promotion.environments`).
        self.extra_aliases = extra_aliases

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        cfg: RegistryConfig,
        environ: Mapping[str, str],
        *,
        endpoint: str | None = None,
    ) -> ModelRegistry:
        """A registry for the config; keys come from the variables named in the config.

        `endpoint` overrides `cfg.endpoint` (the local stack passes its SeaweedFS address);
        without either, the environment's MAINSAIL_S3_ENDPOINT (see `registry_from_env`, which
        also takes MAINSAIL_S3_BUCKET). Endpoints are `host:port` or `http(s)://host:port`.
        """
        from minio import Minio

        cfg = registry_from_env(cfg, environ)
        raw = endpoint or cfg.endpoint
        if not raw:
            raise RegistryError(
                "registry.endpoint is not set and no local S3 endpoint was given; "
                "start the local stack (`mainsail up`), set registry.endpoint or "
                "MAINSAIL_S3_ENDPOINT"
            )
        address, secure = s3_address(raw, cfg.secure)
        access, secret = environ.get(cfg.access_key_env), environ.get(cfg.secret_key_env)
        if not access or not secret:
            raise RegistryError(
                f"S3 credentials missing: set {cfg.access_key_env} and {cfg.secret_key_env}"
            )
        client = Minio(
            address,
            access_key=access,
            secret_key=secret,
            secure=secure,
            region=cfg.region,
            http_client=_http_client(),
        )
        signing = environ.get(cfg.signing_key_env, "").strip()
        public = environ.get(cfg.public_keys_env, "").strip()
        signer = Signer(signing) if signing else None
        if not public and signer is not None:
            public = signer.public_b64()  # a publisher trusts its own key
        return cls(
            client,
            cfg.bucket,
            cfg.prefix,
            history_limit=cfg.history_limit,
            signer=signer,
            verifier=Verifier.from_text(public) if public else None,
            require_signature=cfg.require_signature,
        )

    def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist."""
        if not self.client.bucket_exists(self.bucket):
            self.client.make_bucket(self.bucket)

    # -- keys -----------------------------------------------------------------------------

    def _model_root(self, model: str) -> str:
        return f"{self.prefix}{_check_model_name(model)}/"

    def _version_prefix(self, model: str, version: int) -> str:
        return f"{self._model_root(model)}versions/{version}/"

    def _aliases_key(self, model: str) -> str:
        return f"{self._model_root(model)}aliases.json"

    def version_uri(self, model: str, version: int) -> str:
        """`s3://bucket/.../versions/N/`: the storageUri of a Seldon Core 2 Model."""
        return f"s3://{self.bucket}/{self._version_prefix(model, version)}"

    # -- low-level object helpers ---------------------------------------------------------

    def _get_bytes(self, key: str) -> bytes | None:
        from minio.error import S3Error

        try:
            response = self.client.get_object(self.bucket, key)
        except S3Error as err:
            if err.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return None
            raise
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def _put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self.client.put_object(
            self.bucket, key, io.BytesIO(data), len(data), content_type=content_type
        )

    def _remove_prefix(self, prefix: str) -> None:
        from minio.deleteobjects import DeleteObject

        objects = [
            DeleteObject(obj.object_name)
            for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True)
            if obj.object_name
        ]
        if objects:
            errors = list(self.client.remove_objects(self.bucket, objects))
            if errors:
                raise RegistryError(f"could not remove {prefix}: {errors[0]}")

    # -- reading --------------------------------------------------------------------------

    def models(self) -> list[str]:
        """Names of the models that have at least one complete version."""
        names = []
        for obj in self.client.list_objects(self.bucket, prefix=self.prefix):
            name = (obj.object_name or "")[len(self.prefix) :].rstrip("/")
            if obj.is_dir and name and self._committed_versions(name):
                names.append(name)
        return sorted(names)

    def _committed_versions(self, model: str) -> list[int]:
        root = f"{self._model_root(model)}versions/"
        versions = []
        for obj in self.client.list_objects(self.bucket, prefix=root, recursive=True):
            rest = (obj.object_name or "")[len(root) :]
            number, _, tail = rest.partition("/")
            if tail == MANIFEST_NAME and number.isdigit():
                versions.append(int(number))
        return sorted(versions)

    def _highest_used(self, model: str) -> int:
        """Highest version number with any object (complete or debris)."""
        root = f"{self._model_root(model)}versions/"
        used = [0]
        for obj in self.client.list_objects(self.bucket, prefix=root):
            number = (obj.object_name or "")[len(root) :].rstrip("/")
            if number.isdigit():
                used.append(int(number))
        return max(used)

    def versions(self, model: str) -> list[VersionInfo]:
        """Complete versions of `model`, oldest first, with their aliases."""
        aliases = self._read_aliases(model)["aliases"]
        out = []
        for number in self._committed_versions(model):
            raw = self._get_bytes(f"{self._version_prefix(model, number)}{MANIFEST_NAME}")
            if raw is None:  # removed between list and get
                continue
            manifest = Manifest.from_bytes(raw, f"{model} v{number}")
            names = tuple(a for a, ref in sorted(aliases.items()) if ref["version"] == number)
            out.append(
                VersionInfo(
                    model=model,
                    version=number,
                    created_at=manifest.created_at,
                    aliases=names,
                    metrics=manifest.metrics,
                    manifest_sha256=sha256_bytes(raw),
                )
            )
        return out

    def manifest(self, model: str, version: int) -> tuple[Manifest, str]:
        """The manifest of a complete version and the sha256 of its bytes."""
        raw = self._get_bytes(f"{self._version_prefix(model, version)}{MANIFEST_NAME}")
        if raw is None:
            known = self._committed_versions(model)
            raise VersionNotFoundError(
                f"model {model!r} has no version {version} "
                f"(versions: {', '.join(map(str, known)) or 'none'})"
            )
        manifest = Manifest.from_bytes(raw, f"{model} v{version}")
        if manifest.model != model or manifest.version != version:
            raise IntegrityError(
                f"{model} v{version}: the manifest describes {manifest.model} "
                f"v{manifest.version}; refusing it"
            )
        return manifest, sha256_bytes(raw)

    def verify_signature(self, model: str, version: int) -> tuple[Manifest, str, str | None]:
        """The manifest, its sha256 and the id of the key that signed it, after checking the
        signature (:class:`IntegrityError` when it does not verify, or when signatures are
        required and no public key is configured). Without a verifier and without
        `require_signature`, the key id is None (not checked)."""
        raw = self._get_bytes(f"{self._version_prefix(model, version)}{MANIFEST_NAME}")
        if raw is None:
            self.manifest(model, version)  # raises VersionNotFoundError with the versions
            raise VersionNotFoundError(f"model {model!r} has no version {version}")
        manifest, digest = self.manifest(model, version)
        if manifest.to_bytes() != raw:
            raise IntegrityError(f"{model} v{version}: the manifest is not in canonical form")
        where = f"{model} v{version}"
        if self.verifier is None:
            if self.require_signature:
                raise IntegrityError(
                    f"{where}: no registry public key is configured (registry.public_keys_env), "
                    "so the model's signature cannot be checked; refusing to load it"
                )
            return manifest, digest, None
        signature = self._get_bytes(f"{self._version_prefix(model, version)}{SIGNATURE_NAME}")
        return manifest, digest, self.verifier.verify(raw, signature, where)

    def resolve(self, model: str, ref: str | int) -> tuple[int, str | None]:
        """A version number for `ref` (a number, `latest`, or an alias) and, for an alias,
        the manifest sha256 recorded when the alias was set."""
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            return int(ref), None
        if ref == "latest":
            versions = self._committed_versions(model)
            if not versions:
                raise VersionNotFoundError(f"model {model!r} has no versions")
            return versions[-1], None
        aliases = self._read_aliases(model)["aliases"]
        if ref not in aliases:
            raise VersionNotFoundError(
                f"model {model!r} has no alias {ref!r} "
                f"(aliases: {', '.join(sorted(aliases)) or 'none'})"
            )
        entry = aliases[ref]
        return int(entry["version"]), str(entry["manifest_sha256"])

    # -- publish --------------------------------------------------------------------------

    def publish(
        self,
        model: str,
        folder: Path,
        *,
        _after_stage: Callable[[str], None] | None = None,
    ) -> VersionInfo:
        """Publish a local artifact folder as the next version of `model`; atomic.

        `_after_stage` (tests only) is called with the staging prefix after the upload, before
        verification, so a test can tamper with staged objects.
        """
        _check_model_name(model)
        folder = Path(folder)
        entries = scan_artifact(folder)
        schema = _read_json(folder / SCHEMA_FILE, "feature schema")
        metrics = (
            _read_json(folder / "metrics.json", "metrics") if "metrics.json" in entries else {}
        )
        lineage = (
            _read_json(folder / "lineage.json", "lineage") if "lineage.json" in entries else {}
        )

        self.gc(model, older_than_s=STAGING_GRACE_S)
        version = self._highest_used(model) + 1
        settings = model_settings_bytes(model, version)
        entries[MODEL_SETTINGS_NAME] = FileEntry(sha256=sha256_bytes(settings), size=len(settings))

        staging = f"{self._model_root(model)}staging/{secrets.token_hex(8)}/"
        final = self._version_prefix(model, version)
        try:
            for name in entries:
                if name == MODEL_SETTINGS_NAME:
                    self._put_bytes(staging + name, settings, "application/json")
                else:
                    self.client.fput_object(self.bucket, staging + name, str(folder / name))
            if _after_stage is not None:
                _after_stage(staging)
            # Re-read what the store holds: a short write or a corrupted object stops here.
            for name, entry in entries.items():
                digest, size = self._hash_object(staging + name)
                check_entry(f"{model} v{version} (staged)", name, entry, digest, size)
            # Another publisher may have taken this number meanwhile; never overwrite it.
            if self._get_bytes(final + MANIFEST_NAME) is not None:
                raise PublishError(f"{model} v{version} was published concurrently; retry")
            from minio.commonconfig import CopySource

            for name, entry in entries.items():
                self.client.copy_object(
                    self.bucket, final + name, CopySource(self.bucket, staging + name)
                )
                stat = self.client.stat_object(self.bucket, final + name)
                if stat.size != entry.size:
                    raise IntegrityError(
                        f"{model} v{version}: copy of {name} has {stat.size} bytes, "
                        f"expected {entry.size}"
                    )
            manifest = Manifest(
                model=model,
                version=version,
                created_at=_now(),
                files=entries,
                problem_type=schema.get("problem_type"),
                metrics=_headline(metrics),
                lineage=lineage,
            )
            raw = manifest.to_bytes()
            if self.signer is None:
                log.warning(
                    "%s v%d is published unsigned: servers that require signatures will refuse "
                    "it (set the registry's signing key, `mainsail models keygen`)",
                    model,
                    version,
                )
            else:
                # Before the commit point: a visible version always carries its signature.
                self._put_bytes(final + SIGNATURE_NAME, self.signer.sign(raw), "application/json")
            # The commit point: from here on the version is visible, complete and verified.
            self._put_bytes(final + MANIFEST_NAME, raw, "application/json")
        except BaseException as err:
            self._cleanup(staging, final)
            if isinstance(err, RegistryError):
                raise PublishError(f"publish of {model} v{version} failed: {err}") from err
            if isinstance(err, Exception):
                raise PublishError(
                    f"publish of {model} v{version} failed: {type(err).__name__}: {err}"
                ) from err
            raise
        with contextlib.suppress(Exception):
            self._remove_prefix(staging)
        return VersionInfo(
            model, version, manifest.created_at, (), manifest.metrics, sha256_bytes(raw)
        )

    def gc(self, model: str | None = None, *, older_than_s: float = 0.0) -> list[str]:
        """Remove the staging objects of dead publishes (of `model`, or of every model) whose
        newest object is older than `older_than_s`; returns the staging prefixes removed."""
        now = datetime.now(UTC)
        models = [model] if model else self._all_model_roots()
        removed = []
        for name in models:
            root = f"{self._model_root(name)}staging/"
            newest: dict[str, datetime] = {}
            for obj in self.client.list_objects(self.bucket, prefix=root, recursive=True):
                key = obj.object_name or ""
                token = key[len(root) :].split("/", 1)[0]
                stamp = obj.last_modified or now
                if token and (token not in newest or stamp > newest[token]):
                    newest[token] = stamp
            for token, stamp in sorted(newest.items()):
                if (now - stamp).total_seconds() >= older_than_s:
                    self._remove_prefix(f"{root}{token}/")
                    removed.append(f"{root}{token}/")
        return removed

    def _all_model_roots(self) -> list[str]:
        names = []
        for obj in self.client.list_objects(self.bucket, prefix=self.prefix):
            name = (obj.object_name or "")[len(self.prefix) :].rstrip("/")
            if obj.is_dir and re.match(_MODEL_NAME, name):
                names.append(name)
        return sorted(names)

    def _cleanup(self, staging: str, final: str) -> None:
        # Best effort: the missing manifest already hides the version from every reader.
        with contextlib.suppress(Exception):
            self._remove_prefix(staging)
        with contextlib.suppress(Exception):
            # A manifest here belongs to a concurrent publisher that won the number: keep it.
            if self._get_bytes(final + MANIFEST_NAME) is None:
                self._remove_prefix(final)

    def _hash_object(self, key: str) -> tuple[str, int]:
        response = self.client.get_object(self.bucket, key)
        digest = hashlib.sha256()
        size = 0
        try:
            for chunk in response.stream(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        finally:
            response.close()
            response.release_conn()
        return digest.hexdigest(), size

    # -- download -------------------------------------------------------------------------

    def download(self, model: str, ref: str | int, dest_root: Path) -> LocalVersion:
        """Download a version into `dest_root/<model>/<N>/`, verifying every file.

        An existing, intact copy is reused (after re-verifying it). A tampered or truncated
        object raises :class:`IntegrityError`; nothing is left in `dest_root` then.
        """
        version, alias_digest = self.resolve(model, ref)
        manifest, manifest_digest, _ = self.verify_signature(model, version)
        if alias_digest is not None and alias_digest != manifest_digest:
            raise IntegrityError(
                f"{model} v{version}: manifest sha256 {manifest_digest} differs from "
                f"{alias_digest} recorded when alias {ref!r} was set: it was replaced"
            )
        signature = (
            self._get_bytes(f"{self._version_prefix(model, version)}{SIGNATURE_NAME}")
            if self.verifier is not None
            else None
        )
        target = Path(dest_root) / model / str(version)
        if target.is_dir():
            with contextlib.suppress(IntegrityError):
                local = verify_folder(target, verifier=self.verifier)
                if local.to_bytes() == manifest.to_bytes():
                    return LocalVersion(target, local)
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
        try:
            prefix = self._version_prefix(model, version)
            for name, entry in manifest.files.items():
                path = tmp / safe_relpath(name)
                path.parent.mkdir(parents=True, exist_ok=True)
                digest, size = self._fetch(prefix + name, path)
                check_entry(f"{model} v{version}", name, entry, digest, size)
            if signature is not None:  # servers of the folder check it again before loading
                (tmp / SIGNATURE_NAME).write_bytes(signature)
            (tmp / MANIFEST_NAME).write_bytes(manifest.to_bytes())
            tmp.replace(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return LocalVersion(target, manifest)

    def _fetch(self, key: str, path: Path) -> tuple[str, int]:
        from minio.error import S3Error

        try:
            response = self.client.get_object(self.bucket, key)
        except S3Error as err:
            raise IntegrityError(
                f"{key}: listed in the manifest but unreadable: {err.code}"
            ) from None
        digest = hashlib.sha256()
        size = 0
        try:
            with path.open("wb") as handle:
                for chunk in response.stream(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
                    handle.write(chunk)
        finally:
            response.close()
            response.release_conn()
        return digest.hexdigest(), size

    # -- aliases --------------------------------------------------------------------------

    def _read_aliases(self, model: str) -> dict[str, Any]:
        raw = self._get_bytes(self._aliases_key(model))
        if raw is None:
            return {"model": model, "aliases": {}, "history": {}, "events": []}
        try:
            data: dict[str, Any] = json.loads(raw)
        except ValueError as err:
            raise RegistryError(f"{self._aliases_key(model)} is not valid JSON: {err}") from None
        return data

    def _write_aliases(self, model: str, data: dict[str, Any]) -> None:
        data["events"] = data["events"][-self.history_limit * len(ALIASES) :]
        raw = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
        self._put_bytes(self._aliases_key(model), raw, "application/json")

    def aliases(self, model: str) -> dict[str, int]:
        """Alias -> version."""
        return {k: int(v["version"]) for k, v in self._read_aliases(model)["aliases"].items()}

    def history(self, model: str) -> list[dict[str, Any]]:
        """Every alias change, oldest first (`at`, `alias`, `action`, `from`, `to`)."""
        return list(self._read_aliases(model)["events"])

    def _check_alias(self, alias: str) -> None:
        known = (*ALIASES, *self.extra_aliases)
        if alias not in known:
            raise AliasError(f"unknown alias {alias!r}; aliases are {', '.join(known)}")

    def promote(self, model: str, ref: str | int, alias: str = "champion") -> int:
        """Point `alias` at the version `ref` names (a number, `latest` or another alias)."""
        self._check_alias(alias)
        version, _ = self.resolve(model, ref)
        _, digest = self.manifest(model, version)  # only complete versions can be promoted
        data = self._read_aliases(model)
        current = data["aliases"].get(alias)
        if current is not None and int(current["version"]) == version:
            return version
        data["aliases"][alias] = {"version": version, "manifest_sha256": digest, "set_at": _now()}
        stack = data["history"].setdefault(alias, [])
        stack.append(version)
        del stack[: max(0, len(stack) - self.history_limit)]
        data["events"].append(
            {
                "at": _now(),
                "alias": alias,
                "action": "promote",
                "from": None if current is None else int(current["version"]),
                "to": version,
            }
        )
        self._write_aliases(model, data)
        return version

    def rollback(self, model: str, alias: str = "champion") -> int:
        """Point `alias` back at the version it held before its last promotion."""
        data = self._read_aliases(model)
        stack: list[int] = data["history"].get(alias, [])
        if alias not in data["aliases"] or len(stack) < 2:
            raise AliasError(
                f"model {model!r}: alias {alias!r} has no earlier version to roll back to"
            )
        current = stack.pop()
        previous = stack[-1]
        _, digest = self.manifest(model, previous)
        data["aliases"][alias] = {"version": previous, "manifest_sha256": digest, "set_at": _now()}
        data["events"].append(
            {"at": _now(), "alias": alias, "action": "rollback", "from": current, "to": previous}
        )
        self._write_aliases(model, data)
        return previous

    def unset_alias(self, model: str, alias: str) -> int:
        """Remove `alias` (say, the challenger once an A/B test ended); return the version it
        pointed at. Its rollback history goes with it: a later promotion starts afresh, so a
        rollback can never bring back a version from before the removal. The event is kept."""
        self._check_alias(alias)
        data = self._read_aliases(model)
        current = data["aliases"].pop(alias, None)
        if current is None:
            set_ = ", ".join(sorted(data["aliases"])) or "none"
            raise AliasError(f"model {model!r}: alias {alias!r} is not set (set: {set_})")
        data["history"].pop(alias, None)
        data["events"].append(
            {
                "at": _now(),
                "alias": alias,
                "action": "unset",
                "from": int(current["version"]),
                "to": None,
            }
        )
        self._write_aliases(model, data)
        return int(current["version"])

    def show(self, model: str, ref: str | int) -> dict[str, Any]:
        """Manifest and aliases of one version, as a JSON-safe mapping."""
        version, _ = self.resolve(model, ref)
        manifest, digest = self.manifest(model, version)
        aliases = [a for a, v in self.aliases(model).items() if v == version]
        return {
            **manifest.model_dump(mode="json"),
            "manifest_sha256": digest,
            "aliases": sorted(aliases),
            "uri": self.version_uri(model, version),
        }

    def iter_files(self, model: str, version: int) -> Iterator[str]:
        """Object keys of a version (for diagnostics)."""
        for obj in self.client.list_objects(
            self.bucket, prefix=self._version_prefix(model, version), recursive=True
        ):
            if obj.object_name:
                yield obj.object_name


def _http_client() -> Any:
    """urllib3 pool for the minio client: short connect timeout and one retry, so an
    unreachable S3 fails in ~2 s with one clear error instead of ~8 s of retries."""
    import urllib3

    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=2.0, read=60.0),
        retries=urllib3.Retry(total=1, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)),
        maxsize=10,
    )


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ArtifactError(f"{path}: cannot read the {what}: {err}") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: the {what} must be a JSON object")
    return data


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """Scalar metrics only (nested reports stay in metrics.json)."""
    flat = metrics.get("test", metrics) if isinstance(metrics.get("test"), dict) else metrics
    return {k: v for k, v in flat.items() if isinstance(v, int | float | str | bool)}
