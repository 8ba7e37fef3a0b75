"""MLServer model-settings.json for a registry version.

Each version carries its own model-settings.json, so a folder downloaded from the registry (by
our runtime, or by Seldon Core 2's agent from the Model's storageUri) is an MLServer model
directory as it stands.
"""

from __future__ import annotations

import json
from typing import Any

#: Import path of the mainsail MLServer runtime (mainsail.serving.runtime).
RUNTIME_IMPLEMENTATION = "mainsail.serving.runtime.MainsailRuntime"


def model_settings(
    model: str,
    version: int,
    *,
    uri: str = ".",
    extra: dict[str, Any] | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """The model-settings mapping that serves `model` version `version` with our runtime.

    `uri` is the artifact folder relative to the settings file ("." = the same folder);
    `extra` lands in `parameters.extra`, where the runtime reads its options (see
    `mainsail.serving.runtime.RuntimeOptions`).
    """
    return {
        "name": name or model,
        "implementation": RUNTIME_IMPLEMENTATION,
        "parameters": {
            "uri": uri,
            "version": str(version),
            "extra": {"model": model, "registry_version": version, **(extra or {})},
        },
    }


def model_settings_bytes(model: str, version: int) -> bytes:
    """model-settings.json as stored in a version folder."""
    return (json.dumps(model_settings(model, version), indent=2, sort_keys=True) + "\n").encode()
