"""Signed manifests: Ed25519 signatures that a write to the object store cannot forge.

A version's `manifest.json` lists the sha256 of every file, so a rewritten model file is caught
— unless the manifest is rewritten with it, which anyone who can write to the bucket can do.
The registry therefore signs each manifest at publish with a private key that only publishers
hold (the pipeline's publish step, `mainsail models publish`), and stores the signature beside
it (`manifest.sig`, written before the manifest, so a visible version always has one). Every
load by version or alias (the serving runtime, `mainsail deploy`, the local stack) verifies it
with the public key(s) the servers are given, before anything is unpickled.

Why Ed25519 signatures and not an HMAC: with an HMAC every server that verifies also holds the
key that signs, so one compromised serving pod could sign a model of its choosing; with a key
pair the servers hold only the public key. Why not sigstore's `model-signing` (PyPI): it signs
a folder into a sigstore bundle (DSSE, in-toto) and verifies files on disk, which duplicates the
registry's manifest, pulls sigstore, in-toto and protobuf packages into the serving image, and
needs either keyless signing with an OIDC identity and the public Rekor/Fulcio services (which
neither this machine nor an air-gapped cluster can reach) or the same kind of key pair used
here. The signed payload is the manifest's exact bytes (model, version, every file's digest),
so a signature cannot be moved to another version.

Keys are base64 of the raw 32-byte Ed25519 keys: `mainsail models keygen` makes a pair; the
private one goes in the variable `registry.signing_key_env` (publishers only), the public ones
(comma-separated, several during a key rotation) in `registry.public_keys_env` (every server).
`cryptography` is imported only when a key is used (the drift env has none and needs none).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mainsail.registry.errors import IntegrityError, RegistryError

SIGNATURE_NAME = "manifest.sig"
ALGORITHM = "ed25519"

__all__ = [
    "SIGNATURE_NAME",
    "Signer",
    "Verifier",
    "generate_keypair",
    "key_id",
]


def _raw(b64: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(b64.strip(), validate=True)
    except ValueError:
        raise RegistryError(f"{what} is not base64") from None
    if len(raw) != 32:
        raise RegistryError(f"{what} must be a raw 32-byte Ed25519 key (base64), got {len(raw)}")
    return raw


def key_id(public_raw: bytes) -> str:
    """Short id of a public key (the first 16 hex digits of its sha256)."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def generate_keypair() -> tuple[str, str]:
    """A new (private, public) Ed25519 key pair, each base64 of the raw 32 bytes."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return base64.b64encode(private).decode(), base64.b64encode(public).decode()


@dataclass(frozen=True)
class Signer:
    """Signs manifests with a private key (publishers only)."""

    private_b64: str

    def public_b64(self) -> str:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = Ed25519PrivateKey.from_private_bytes(_raw(self.private_b64, "the signing key"))
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return base64.b64encode(raw).decode()

    def sign(self, manifest: bytes) -> bytes:
        """The `manifest.sig` document for these manifest bytes."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = Ed25519PrivateKey.from_private_bytes(_raw(self.private_b64, "the signing key"))
        doc = {
            "algorithm": ALGORITHM,
            "key_id": key_id(base64.b64decode(self.public_b64())),
            "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
            "signature": base64.b64encode(key.sign(manifest)).decode(),
        }
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


@dataclass(frozen=True)
class Verifier:
    """Checks manifest signatures against trusted public keys (every server)."""

    public_b64: Sequence[str]

    @classmethod
    def from_text(cls, text: str) -> Verifier:
        """From a comma- or whitespace-separated list of base64 public keys."""
        keys = [k for k in text.replace(",", " ").split() if k]
        if not keys:
            raise RegistryError("no public key given")
        for k in keys:
            _raw(k, "a registry public key")
        return cls(tuple(keys))

    def verify(self, manifest: bytes, signature: bytes | None, where: str) -> str:
        """The key id that signed `manifest`; :class:`IntegrityError` when the signature is
        missing, malformed, made by an untrusted key, or not over these bytes."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        if signature is None:
            raise IntegrityError(
                f"{where}: the manifest is not signed ({SIGNATURE_NAME} missing); refusing to "
                "load a model whose origin cannot be verified"
            )
        try:
            doc: Any = json.loads(signature)
            sig = base64.b64decode(doc["signature"], validate=True)
            claimed = str(doc.get("key_id", ""))
        except (ValueError, KeyError, TypeError):
            raise IntegrityError(f"{where}: {SIGNATURE_NAME} is malformed") from None
        for b64 in self.public_b64:
            raw = _raw(b64, "a registry public key")
            if claimed and claimed != key_id(raw):
                continue
            try:
                Ed25519PublicKey.from_public_bytes(raw).verify(sig, manifest)
            except InvalidSignature:
                break
            return key_id(raw)
        raise IntegrityError(
            f"{where}: the manifest's signature does not verify with the trusted public key(s) "
            f"(signed by key {claimed or '?'}): the manifest or the model was rewritten"
        )
