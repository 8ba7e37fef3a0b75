"""The feature_store.yaml the chart gives the Feast feature server is one Feast itself loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from . import checks

pytestmark = pytest.mark.k8s


def store_yaml(objs: list[checks.Obj]) -> str:
    cm = next(
        o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "mainsail-feast"
    )
    return str(cm["data"]["feature_store.yaml"])


def load(text: str, tmp_path: Path) -> Any:
    from feast.repo_config import load_repo_config

    path = tmp_path / "feature_store.yaml"
    path.write_text(text)
    return load_repo_config(tmp_path, path)


@pytest.mark.parametrize(
    ("scenario", "connection"),
    [
        ("default", "mainsail-redis.mainsail.svc.cluster.local:6379"),
        ("redis-off", "redis.data.svc:6380"),
    ],
)
def test_feast_loads_the_rendered_config(
    scenario: str,
    connection: str,
    scenario_objects: dict[str, list[checks.Obj]],
    tmp_path: Path,
) -> None:
    config = load(store_yaml(scenario_objects[scenario]), tmp_path)
    assert type(config.online_store).__name__ == "RedisOnlineStoreConfig"
    assert config.online_store.connection_string == connection
    assert str(config.registry.path) == "s3://mainsail-models/feast/registry.db"


def test_feast_refuses_a_broken_config(default_objects: list[checks.Obj], tmp_path: Path) -> None:
    broken = store_yaml(default_objects).replace("type: redis", "type: redsi")
    with pytest.raises(Exception, match="redsi"):
        load(broken, tmp_path)
