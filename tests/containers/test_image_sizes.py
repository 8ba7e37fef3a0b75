"""Each image stays within its size budget (images/budgets.json): a dependency that drags in
gigabytes (torch in the serving image, say) fails here, naming the image and its largest
packages."""

from __future__ import annotations

import json

import pytest

from mainsail.core import naming
from tests.support.containers import REPO
from tests.support.pods import Engine

pytestmark = [pytest.mark.containers]

BUDGETS = json.loads((REPO / "images" / "budgets.json").read_text())


@pytest.mark.parametrize("env", naming.IMAGE_ENVS)
def test_image_is_within_its_size_budget(engine: Engine, env: str) -> None:
    image = naming.image(env)
    size_mb = int(engine.docker("image", "inspect", "-f", "{{.Size}}", image).stdout) / 1e6
    budget = BUDGETS[env]
    if size_mb > budget:
        largest = engine.docker(
            "run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c",
            "du -sm /opt/venv/lib/python3*/site-packages/* | sort -rn | head -8",
        ).stdout  # fmt: skip
        pytest.fail(f"{image} is {size_mb:.0f} MB, over its budget of {budget} MB:\n{largest}")
