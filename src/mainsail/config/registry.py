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
    cache_dir: Path = Path(".cache/models")
    """Local folder where downloaded versions are kept (verified again on every load)."""
    history_limit: int = Field(50, ge=2, le=10_000)
    """Alias changes remembered per alias (how far `rollback` can go back)."""
