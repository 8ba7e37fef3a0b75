"""Manifest digests and folder verification: what the runtime checks before unpickling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mainsail.core.files import file_digest
from mainsail.registry.errors import ArtifactError, IntegrityError
from mainsail.registry.manifest import (
    MANIFEST_NAME,
    Manifest,
    safe_relpath,
    scan_artifact,
    seal_folder,
    verify_folder,
)

SCHEMA = {
    "features": [{"name": "x", "kind": "numeric", "dtype": "float64"}],
    "target": "y",
    "problem_type": "regression",
}


def _artifact(folder: Path) -> Path:
    folder.mkdir()
    (folder / "model.joblib").write_bytes(b"pretend pickle bytes")
    (folder / "feature_schema.json").write_text(json.dumps(SCHEMA))
    (folder / "plots").mkdir()
    (folder / "plots" / "roc.svg").write_text("<svg/>")
    return folder


def test_scan_digests_every_file_including_subfolders(tmp_path: Path) -> None:
    folder = _artifact(tmp_path / "a")
    entries = scan_artifact(folder)
    assert sorted(entries) == ["feature_schema.json", "model.joblib", "plots/roc.svg"]
    digest, size = file_digest(folder / "model.joblib")
    assert entries["model.joblib"].sha256 == digest
    assert entries["model.joblib"].size == size == len(b"pretend pickle bytes")


def test_scan_names_the_missing_required_file(tmp_path: Path) -> None:
    folder = _artifact(tmp_path / "a")
    (folder / "feature_schema.json").unlink()
    with pytest.raises(ArtifactError, match=r"lacks feature_schema\.json"):
        scan_artifact(folder)


def test_scan_refuses_symlinks(tmp_path: Path) -> None:
    folder = _artifact(tmp_path / "a")
    (tmp_path / "outside.txt").write_text("secret")
    (folder / "link.txt").symlink_to(tmp_path / "outside.txt")
    with pytest.raises(ArtifactError, match=r"link\.txt is a symlink"):
        scan_artifact(folder)


def test_sealed_folder_verifies(tmp_path: Path) -> None:
    folder = _artifact(tmp_path / "a")
    seal_folder(folder, "m", 3)
    manifest = verify_folder(folder)
    assert (manifest.model, manifest.version, manifest.problem_type) == ("m", 3, "regression")


def test_tampered_file_is_refused_with_its_name(tmp_path: Path) -> None:
    folder = _artifact(tmp_path / "a")
    seal_folder(folder, "m", 1)
    # Same size, different bytes: only the digest can tell.
    (folder / "model.joblib").write_bytes(b"PRETEND pickle bytes")
    with pytest.raises(IntegrityError, match=r"m v1: file model\.joblib has sha256 .* tampered"):
        verify_folder(folder)


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    folder = _artifact(tmp_path / "a")
    seal_folder(folder, "m", 1)
    (folder / "plots" / "roc.svg").write_text("<sv")
    with pytest.raises(IntegrityError, match=r"plots/roc\.svg has 3 bytes, the manifest says 6"):
        verify_folder(folder)


def test_missing_manifest_or_file_is_refused(tmp_path: Path) -> None:
    folder = _artifact(tmp_path / "a")
    with pytest.raises(IntegrityError, match=r"no manifest\.json"):
        verify_folder(folder)
    seal_folder(folder, "m", 1)
    (folder / "plots" / "roc.svg").unlink()
    with pytest.raises(IntegrityError, match=r"plots/roc\.svg is missing"):
        verify_folder(folder)


def test_model_file_not_covered_by_manifest_is_refused(tmp_path: Path) -> None:
    folder = _artifact(tmp_path / "a")
    manifest = seal_folder(folder, "m", 1)
    files = {k: v for k, v in manifest.files.items() if k != "model.joblib"}
    forged = manifest.model_copy(update={"files": files})
    (folder / MANIFEST_NAME).write_bytes(forged.to_bytes())
    with pytest.raises(IntegrityError, match=r"model\.joblib is not listed in the manifest"):
        verify_folder(folder)


@pytest.mark.parametrize("name", ["../evil", "/etc/passwd", "a/../../b", "", "a\\b"])
def test_manifest_paths_cannot_escape_the_folder(name: str) -> None:
    with pytest.raises(IntegrityError, match="escapes the version folder"):
        safe_relpath(name)


def test_manifest_with_traversal_path_is_refused(tmp_path: Path) -> None:
    folder = _artifact(tmp_path / "a")
    manifest = seal_folder(folder, "m", 1)
    files = dict(manifest.files)
    files["../outside"] = files["model.joblib"]
    (folder / MANIFEST_NAME).write_bytes(manifest.model_copy(update={"files": files}).to_bytes())
    with pytest.raises(IntegrityError, match="escapes"):
        verify_folder(folder)


def test_garbage_manifest_is_an_integrity_error(tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match="not a valid manifest"):
        Manifest.from_bytes(b"{not json", "somewhere")
