"""S3 model registry: versions, aliases (champion/challenger) and verified downloads.

`ModelRegistry` (store.py) talks to any S3 API through the minio client; `manifest.py` holds
the sha256 manifest and folder verification that the serving runtime also uses. `cli.py` is
the `mainsail models` Typer app (pipeline env only; not imported here).
"""

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
    "verify_folder",
]
