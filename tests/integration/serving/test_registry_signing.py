"""Signed manifests against SeaweedFS: a model rewritten together with its manifest is refused.

The attack: someone who can write to the bucket replaces `model.joblib` and rewrites
`manifest.json` with the new file's sha256 and size (and the alias's recorded digest), so every
digest check passes. Only the signature, made with a key the bucket never sees, catches it:
on `mainsail deploy` (deploy service), on a download by version or alias, and when MLServer
loads the version (the runtime, holding only the public key).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import httpx
import pytest

from mainsail.config import load_config
from mainsail.deploy.service import deploy
from mainsail.registry.errors import IntegrityError
from mainsail.registry.manifest import MANIFEST_NAME, FileEntry, Manifest, seal_folder
from mainsail.registry.signing import Signer, Verifier, generate_keypair
from mainsail.registry.store import ModelRegistry
from mainsail.serving.mlserver import MLServerProcess, ServedModel
from tests.integration.serving.conftest import BUCKET

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


def _forge(registry: ModelRegistry, model: str, version: int, payload: bytes) -> None:
    """Rewrite model.joblib and manifest.json (and the aliases' digests) consistently."""
    client = registry.client
    prefix = f"{model}/versions/{version}/"
    client.put_object(BUCKET, prefix + "model.joblib", io.BytesIO(payload), len(payload))
    manifest, _ = registry.manifest(model, version)
    files = dict(manifest.files)
    files["model.joblib"] = FileEntry(sha256=hashlib.sha256(payload).hexdigest(), size=len(payload))
    forged = Manifest.model_validate({**manifest.model_dump(), "files": files}).to_bytes()
    client.put_object(BUCKET, prefix + MANIFEST_NAME, io.BytesIO(forged), len(forged))
    raw = client.get_object(BUCKET, f"{model}/aliases.json").read()
    aliases = json.loads(raw)
    for entry in aliases["aliases"].values():
        if entry["version"] == version:
            entry["manifest_sha256"] = hashlib.sha256(forged).hexdigest()
    data = json.dumps(aliases).encode()
    client.put_object(BUCKET, f"{model}/aliases.json", io.BytesIO(data), len(data))


@pytest.fixture(scope="module")
def forged(registry: ModelRegistry, churn_artifact: Path) -> int:
    """A signed version of `churn-forged`, then rewritten (model + manifest + alias digest)."""
    info = registry.publish("churn-forged", churn_artifact)
    registry.promote("churn-forged", info.version, "challenger")
    assert registry.verify_signature("churn-forged", info.version)[2] is not None
    evil = (churn_artifact / "model.joblib").read_bytes() + b"\0" * 7  # any other pickle
    _forge(registry, "churn-forged", info.version, evil)
    return info.version


def test_without_signatures_the_forgery_passes_every_digest_check(
    registry: ModelRegistry, forged: int, tmp_path: Path
) -> None:
    """What the signature is for: the digests alone accept the rewritten version."""
    unsigned = ModelRegistry(registry.client, BUCKET)
    local = unsigned.download("churn-forged", forged, tmp_path)
    assert (local.path / "model.joblib").read_bytes().endswith(b"\0" * 7)


@pytest.mark.parametrize("ref", ["version", "challenger"])
def test_a_rewritten_model_and_manifest_are_refused_on_download(
    registry: ModelRegistry, forged: int, tmp_path: Path, ref: str
) -> None:
    with pytest.raises(IntegrityError, match="signature does not verify"):
        registry.download("churn-forged", forged if ref == "version" else ref, tmp_path)
    assert not any(tmp_path.rglob("model.joblib"))  # nothing left to unpickle


def test_a_rewritten_model_and_manifest_are_refused_on_deploy(
    registry: ModelRegistry, forged: int
) -> None:
    cfg = load_config(REPO / "configs" / "churn.yaml").model_copy(update={"name": "churn-forged"})
    with pytest.raises(IntegrityError, match="signature does not verify"):
        deploy(cfg, forged, 10, backend="kubernetes", dry_run=True, registry=registry)


def test_a_registry_without_the_right_public_key_refuses_to_load(
    registry: ModelRegistry, churn_artifact: Path, tmp_path: Path
) -> None:
    version = registry.publish("churn-keys", churn_artifact).version
    assert registry.download("churn-keys", version, tmp_path / "ok").path.is_dir()
    blind = ModelRegistry(registry.client, BUCKET, require_signature=True)
    with pytest.raises(IntegrityError, match="no registry public key"):
        blind.download("churn-keys", version, tmp_path / "blind")
    other = ModelRegistry(
        registry.client, BUCKET, verifier=Verifier.from_text(generate_keypair()[1])
    )
    with pytest.raises(IntegrityError, match="signature does not verify"):
        other.download("churn-keys", version, tmp_path / "other")


def _load(mlserver: MLServerProcess, name: str, settings: ServedModel) -> httpx.Response:
    folder = mlserver.folder / name
    folder.mkdir(exist_ok=True)
    (folder / "model-settings.json").write_text(json.dumps(settings.settings()))
    return httpx.post(f"{mlserver.url}/v2/repository/models/{name}/load", timeout=60)


def test_mlserver_refuses_to_load_the_forged_version_from_the_registry(
    mlserver: MLServerProcess, seaweed: object, forged: int
) -> None:
    endpoint = seaweed.endpoint.endpoint  # type: ignore[attr-defined]
    extra = {
        "registry": {
            "endpoint": endpoint,
            "bucket": BUCKET,
            "model": "churn-forged",
            "ref": str(forged),
            "cache_dir": str(mlserver.folder / "cache"),
        }
    }
    response = _load(mlserver, "forged-remote", ServedModel("forged-remote", extra=extra))
    assert 400 <= response.status_code < 500, response.text
    assert "signature does not verify" in response.text
    assert httpx.get(f"{mlserver.url}/v2/models/forged-remote/ready").status_code != 200
    assert mlserver.alive()


def test_mlserver_refuses_a_local_folder_rewritten_with_its_manifest(
    mlserver: MLServerProcess, sealed_artifact: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "forged-local"
    shutil.copytree(sealed_artifact, folder)
    signature = (folder / "manifest.sig").read_bytes()
    with (folder / "model.joblib").open("ab") as handle:
        handle.write(b"\0" * 7)
    seal_folder(folder, "churn", 1, signer=Signer(generate_keypair()[0]))  # the attacker's key
    response = _load(mlserver, "forged-local", ServedModel("forged-local", uri=str(folder)))
    assert 400 <= response.status_code < 500 and "signature" in response.text, response.text
    (folder / "manifest.sig").write_bytes(signature)  # the genuine signature, old manifest
    response = _load(mlserver, "forged-local", ServedModel("forged-local", uri=str(folder)))
    assert 400 <= response.status_code < 500 and "signature" in response.text, response.text
    (folder / "manifest.sig").unlink()
    response = _load(mlserver, "forged-local", ServedModel("forged-local", uri=str(folder)))
    assert 400 <= response.status_code < 500 and "not signed" in response.text, response.text
