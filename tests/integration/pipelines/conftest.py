"""Fixtures of the pipeline tests: a tiny churn project and a real S3 (SeaweedFS) registry."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from mainsail.registry.seaweedfs import SeaweedS3


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A SeaweedFS S3 server; its keys are exported the way the registry reads them, with a
    registry signing key (the pipeline's publishing steps sign, and trust their own key when
    they load the champion)."""
    from mainsail.registry.signing import generate_keypair

    names = ("MAINSAIL_S3_ACCESS_KEY", "MAINSAIL_S3_SECRET_KEY", "MAINSAIL_REGISTRY_SIGNING_KEY")
    with SeaweedS3(tmp_path_factory.mktemp("s3")) as server:
        saved = {k: os.environ.get(k) for k in names}
        os.environ["MAINSAIL_S3_ACCESS_KEY"] = server.access_key
        os.environ["MAINSAIL_S3_SECRET_KEY"] = server.secret_key
        os.environ["MAINSAIL_REGISTRY_SIGNING_KEY"] = generate_keypair()[0]
        try:
            yield server
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
