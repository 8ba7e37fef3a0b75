"""S3 model registry: versions, aliases (champion/challenger) and verified downloads.

`ModelRegistry` (store.py) talks to any S3 API through the minio client; `open_registry`
(connect.py) is how every part of Mainsail opens the registry of a config; `manifest.py` holds
the sha256 manifest and folder verification that the serving runtime also uses; `seaweedfs.py`
runs the local S3 server (SeaweedFS) that stands in for MinIO here.
"""

from mainsail.registry.connect import open_registry
from mainsail.registry.errors import (
    AliasError,
    ArtifactError,
    IntegrityError,
    PublishError,
    RegistryError,
    VersionNotFoundError,
)
from mainsail.registry.manifest import Manifest, verify_folder
from mainsail.registry.store import ALIASES, LocalVersion, ModelRegistry, VersionInfo

__all__ = [
    "ALIASES",
    "AliasError",
    "ArtifactError",
    "IntegrityError",
    "LocalVersion",
    "Manifest",
    "ModelRegistry",
    "PublishError",
    "RegistryError",
    "VersionInfo",
    "VersionNotFoundError",
    "open_registry",
    "verify_folder",
]
