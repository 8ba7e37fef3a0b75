"""Config section: Model registry on S3 (SeaweedFS locally, MinIO in the cluster)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from mainsail.config.base import StrictModel


class RegistryConfig(StrictModel):
    """Model registry on S3 (SeaweedFS locally, MinIO in the cluster)."""

    endpoint: str | None = None
    """S3 API as `host:port` (MinIO in the cluster); null = the local stack's SeaweedFS."""
    secure: bool = False
    """Talk HTTPS to the endpoint."""
    region: str | None = None
    """S3 region, when the store needs one."""
    bucket: str = Field("mainsail-models", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    """Bucket that holds every model's versions and aliases."""
    prefix: str = Field("", pattern=r"^([A-Za-z0-9._-]+/)*$")
    """Key prefix inside the bucket (empty, or ending with `/`), to share a bucket."""
    access_key_env: str = "MAINSAIL_S3_ACCESS_KEY"
    """Environment variable that holds the S3 access key (keys are never written in config)."""
    secret_key_env: str = "MAINSAIL_S3_SECRET_KEY"
    """Environment variable that holds the S3 secret key."""
    signing_key_env: str = "MAINSAIL_REGISTRY_SIGNING_KEY"
    """Environment variable with the Ed25519 private key (base64, `mainsail models keygen`)
    that signs each version's manifest at publish; publishers only, never the servers."""
    public_keys_env: str = "MAINSAIL_REGISTRY_PUBLIC_KEYS"
    """Environment variable with the trusted Ed25519 public key(s) (base64, comma-separated)
    that every load by version or alias checks the manifest's signature against."""
    require_signature: bool = True
    """Refuse to load any version whose signature cannot be checked (no public key configured,
    or no signature). Off only to read a registry published before signing existed."""
    cache_dir: Path = Path(".cache/models")
    """Local folder where downloaded versions are kept (verified again on every load)."""
    history_limit: int = Field(50, ge=2, le=10_000)
    """Alias changes remembered per alias (how far `rollback` can go back)."""
    champion_alias: str = Field("champion", pattern=r"^[a-z][a-z0-9-]{0,39}$")
    """Alias of the version this deployment serves as champion (the stack's champion MLServer,
    the Seldon Experiment's default, what a promotion moves). An environment's view of the
    config (`ProjectConfig.for_environment`) sets its own, e.g. `staging`."""
    challenger_alias: str = Field("challenger", pattern=r"^[a-z][a-z0-9-]{0,39}$")
    """Alias of the version under test (what `mainsail deploy` moves); `staging-challenger` in
    the staging environment's view."""
    candidate_alias: str = Field("candidate", pattern=r"^[a-z][a-z0-9-]{0,39}$")
    """Alias a retraining run puts on the version it publishes (`mainsail run --publish
    --candidate`, the chart's RayJob entrypoint): the next challenger. A promotion controller
    with `promotion.deploy_candidates` deploys it when no experiment runs, then removes it."""

    def alias(self, role: str) -> str:
        """The alias name of a role: `champion` or `challenger`."""
        return self.champion_alias if role == "champion" else self.challenger_alias
