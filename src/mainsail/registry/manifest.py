"""The manifest of a model version: the sha256 and size of every file, and verification.

Pure Python (hashlib, pydantic): it loads in every env, so the serving runtime verifies a
folder with the same code that wrote its manifest.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from mainsail.core.files import file_digest
from mainsail.registry.errors import ArtifactError, IntegrityError

if TYPE_CHECKING:
    from mainsail.registry.signing import Verifier

MANIFEST_NAME = "manifest.json"
MODEL_SETTINGS_NAME = "model-settings.json"
MODEL_FILE = "model.joblib"
SCHEMA_FILE = "feature_schema.json"
#: Files every artifact must hold; the rest (card, metrics, report, reference, lineage, plots)
#: are published when present.
REQUIRED_FILES = (MODEL_FILE, SCHEMA_FILE)
#: Files the registry writes itself; a source folder's copies are ignored.
GENERATED_FILES = (MANIFEST_NAME, MODEL_SETTINGS_NAME, "manifest.sig")


class FileEntry(BaseModel):
    """One file of a version."""

    model_config = ConfigDict(extra="forbid")

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """Hex sha256 of the file's bytes."""
    size: int = Field(ge=0)
    """Size in bytes."""


class Manifest(BaseModel):
    """What a version holds; written last, so its presence marks a complete version."""

    model_config = ConfigDict(extra="forbid")

    model: str
    """Model name."""
    version: int = Field(ge=1)
    """Version number (monotonic per model)."""
    created_at: str
    """UTC time of the publish, ISO 8601."""
    files: dict[str, FileEntry]
    """Relative POSIX path -> digest and size, for every file of the version."""
    problem_type: str | None = None
    """`classification` or `regression`, from the feature schema."""
    metrics: dict[str, Any] = Field(default_factory=dict)
    """Headline metrics copied from metrics.json (for `models list`)."""
    lineage: dict[str, Any] = Field(default_factory=dict)
    """Lineage copied from lineage.json (data hash, code version, config digest, seed)."""
    format: int = 1
    """Manifest format version."""

    def to_bytes(self) -> bytes:
        """Canonical JSON bytes (sorted keys): the manifest's own digest is over these."""
        return (json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, raw: bytes, where: str) -> Manifest:
        """Parse a manifest; `where` names it in the error."""
        try:
            return cls.model_validate_json(raw)
        except ValueError as err:
            raise IntegrityError(f"{where}: not a valid manifest: {err}") from None


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def safe_relpath(name: str) -> PurePosixPath:
    """A manifest path that stays inside the version folder (no `..`, no absolute paths)."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\\" in name:
        raise IntegrityError(f"manifest path {name!r} escapes the version folder")
    return path


def scan_artifact(folder: Path) -> dict[str, FileEntry]:
    """Digest every file of a local artifact folder (generated files excluded).

    Raises :class:`ArtifactError` naming the missing file or the symlink.
    """
    if not folder.is_dir():
        raise ArtifactError(f"artifact folder {folder} does not exist or is not a folder")
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise ArtifactError(
            f"artifact folder {folder} lacks {', '.join(missing)} "
            f"(an artifact needs {', '.join(REQUIRED_FILES)})"
        )
    entries: dict[str, FileEntry] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():
            # A link could point anywhere on the publisher's disk; refuse rather than follow.
            raise ArtifactError(f"artifact folder {folder}: {rel} is a symlink; copy the file")
        if not path.is_file() or rel in GENERATED_FILES:
            continue
        digest, size = file_digest(path)
        entries[rel] = FileEntry(sha256=digest, size=size)
    return entries


def verify_folder(
    folder: Path,
    *,
    require: tuple[str, ...] = REQUIRED_FILES,
    verifier: Verifier | None = None,
) -> Manifest:
    """Check every file of a downloaded version against its manifest.json.

    Raises :class:`IntegrityError` naming the first file that is missing, has the wrong size or
    the wrong sha256, and when a `require`d file is not covered by the manifest at all (so a
    model file dropped beside a manifest is never loaded unverified). With a `verifier`, the
    manifest's signature (`manifest.sig` beside it) must verify first.
    """
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        raise IntegrityError(f"{folder}: no {MANIFEST_NAME}; refusing to load an unverified model")
    raw = manifest_path.read_bytes()
    manifest = Manifest.from_bytes(raw, str(manifest_path))
    where = f"{manifest.model} v{manifest.version}"
    if verifier is not None:
        from mainsail.registry.signing import SIGNATURE_NAME

        sig = folder / SIGNATURE_NAME
        verifier.verify(raw, sig.read_bytes() if sig.is_file() else None, f"{where} ({folder})")
    for name in require:
        if name not in manifest.files:
            raise IntegrityError(f"{where}: {name} is not listed in the manifest")
    for name, entry in manifest.files.items():
        path = folder / safe_relpath(name)
        if not path.is_file():
            raise IntegrityError(f"{where}: file {name} is missing from {folder}")
        digest, size = file_digest(path)
        check_entry(where, name, entry, digest, size)
    return manifest


def check_entry(where: str, name: str, entry: FileEntry, digest: str, size: int) -> None:
    """Raise :class:`IntegrityError` when `digest`/`size` differ from the manifest's entry."""
    if size != entry.size:
        raise IntegrityError(
            f"{where}: file {name} has {size} bytes, the manifest says {entry.size}: "
            "it was tampered with or truncated"
        )
    if digest != entry.sha256:
        raise IntegrityError(
            f"{where}: file {name} has sha256 {digest}, the manifest says {entry.sha256}: "
            "it was tampered with"
        )


def seal_folder(
    folder: Path, model: str, version: int, created_at: str = "", signer: Any = None
) -> Manifest:
    """Write manifest.json for a local artifact folder (the registry does this on publish),
    and with a :class:`~mainsail.registry.signing.Signer` its signature (manifest.sig).

    For serving a folder that never went through the registry (tests, benchmarks, a model
    copied by hand): the runtime refuses folders without a manifest, and without a valid
    signature when it is given the registry's public keys.
    """
    entries = scan_artifact(folder)
    settings = folder / MODEL_SETTINGS_NAME
    if settings.is_file():
        digest, size = file_digest(settings)
        entries[MODEL_SETTINGS_NAME] = FileEntry(sha256=digest, size=size)
    schema = json.loads((folder / SCHEMA_FILE).read_text())
    manifest = Manifest(
        model=model,
        version=version,
        created_at=created_at or "1970-01-01T00:00:00+00:00",
        files=entries,
        problem_type=schema.get("problem_type"),
    )
    raw = manifest.to_bytes()
    if signer is not None:
        from mainsail.registry.signing import SIGNATURE_NAME

        (folder / SIGNATURE_NAME).write_bytes(signer.sign(raw))
    (folder / MANIFEST_NAME).write_bytes(raw)
    return manifest
