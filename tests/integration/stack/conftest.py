"""Fixtures of the local-stack tests: real SeaweedFS, real MLServer (stock sklearn runtime) for
champion and challenger, and the real router, all started by `mainsail.stack.manager.up`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mainsail.config import ProjectConfig
from tests.support.stack import TOKEN, stack_config


@pytest.fixture(scope="session")
def running_stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ProjectConfig]:
    """The whole local stack, up once for the package's tests, down afterwards."""
    from mainsail.stack.manager import down, up

    mp = pytest.MonkeyPatch()
    mp.setenv("MAINSAIL_ROUTER_TOKEN", TOKEN)
    cfg = stack_config(tmp_path_factory.mktemp("stack"))
    try:
        up(cfg)
        yield cfg
    finally:
        down(cfg)
        mp.undo()
