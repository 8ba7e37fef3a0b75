"""Fixtures of the model tests: one local Ray per session, small configs and data stages.

Row counts, epochs, folds, trials and bootstrap resamples are cut down so the folder runs in a
few minutes on 2 CPUs; the code paths are the ones `mainsail run` takes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mainsail.config import ProjectConfig
from mainsail.data.prepared import DataStageResult
from mainsail.lifecycle.data import run_data_stage
from tests.support.configs import small_config


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """Ray started once for the whole session with 2 CPUs, shut down at the end."""
    import ray

    from mainsail.config.train import RayConfig
    from mainsail.train.ray_runtime import ensure_ray

    ensure_ray(RayConfig(num_cpus=2))
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def churn_cfg(tmp_path_factory: pytest.TempPathFactory) -> ProjectConfig:
    """Default churn config, 3,000 generated rows, MLP included (trained by Ray's TorchTrainer)."""
    path = tmp_path_factory.mktemp("churn-data") / "churn.parquet"
    return small_config("churn", path, **{"data.synthetic.rows": 3000})


@pytest.fixture(scope="session")
def churn_data(churn_cfg: ProjectConfig) -> DataStageResult:
    return run_data_stage(churn_cfg)
