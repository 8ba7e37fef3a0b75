"""Opening the model registry of a project: the one way every part of Mainsail gets a
:class:`~mainsail.registry.store.ModelRegistry` (CLI, pipeline steps, deployers, the local stack,
the promotion controller, demos, and the serving runtime).

Where it is: an explicit `endpoint`, else `registry.endpoint` (MinIO on a cluster), else the
environment's MAINSAIL_S3_ENDPOINT (what the chart sets on every workload), else, for a project
config, the local stack's SeaweedFS at `stack.host:stack.s3_port`. Keys come from the
environment variables the registry section names; for the local stack, from the file that
`mainsail up` generated when those variables are unset. The same holds for the manifest signing
key pair (`registry.signing_key_env`, `registry.public_keys_env`; see
:mod:`mainsail.registry.signing`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from mainsail.core import naming
from mainsail.registry.store import ALIASES, ModelRegistry

if TYPE_CHECKING:
    from mainsail.config import ProjectConfig
    from mainsail.config.registry import RegistryConfig


def open_registry(
    cfg: ProjectConfig | RegistryConfig,
    *,
    endpoint: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ModelRegistry:
    """The registry of a project config (or of a bare registry section, which must then name
    its endpoint); raises `RegistryError` saying what is missing."""
    from mainsail.config.registry import RegistryConfig

    env = dict(os.environ if environ is None else environ)
    if isinstance(cfg, RegistryConfig):
        return ModelRegistry.from_config(cfg, env, endpoint=endpoint)
    opened = _open_project_registry(cfg, endpoint, env)
    # The environments' own aliases (staging, ...) and the retraining runs' candidate may be set
    # beside champion and challenger.
    extra = (*cfg.environment_aliases(), cfg.registry.candidate_alias)
    opened.extra_aliases = tuple(dict.fromkeys(a for a in extra if a not in ALIASES))
    return opened


def _open_project_registry(
    cfg: ProjectConfig, endpoint: str | None, env: dict[str, str]
) -> ModelRegistry:
    registry = cfg.registry
    if endpoint or registry.endpoint or env.get(naming.ENV_S3_ENDPOINT):
        return ModelRegistry.from_config(registry, env, endpoint=endpoint)
    from mainsail.registry.seaweedfs import local_credentials, local_signing_keys

    access, secret = local_credentials(registry, cfg.stack.data_dir.resolve())
    env.setdefault(registry.access_key_env, access)
    env.setdefault(registry.secret_key_env, secret)
    # The local stack's own key pair: its publishes are signed, its loads verified.
    private, public = local_signing_keys(registry, cfg.stack.data_dir.resolve())
    env.setdefault(registry.signing_key_env, private)
    env.setdefault(registry.public_keys_env, public)
    return ModelRegistry.from_config(
        registry, env, endpoint=f"{cfg.stack.host}:{cfg.stack.s3_port}"
    )
