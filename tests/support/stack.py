"""Helpers of the local-stack tests: real SeaweedFS, real MLServer (stock sklearn runtime) for
champion and challenger, and the real router, all started by `mainsail.stack.manager.up`."""

from __future__ import annotations

import json
from pathlib import Path

from mainsail.config import ProjectConfig, parse_config
from mainsail.core.ports import free_port
from tests.support.configs import REPO

TOKEN = "stack-test-token"


def write_iris_model(folder: Path, version: str, c: float) -> Path:
    """A logistic regression on iris, saved as an MLServer sklearn model folder."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(C=c, max_iter=500, random_state=0).fit(x, y)
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, folder / "model.joblib")
    settings = {
        "name": "iris",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": version},
    }
    (folder / "model-settings.json").write_text(json.dumps(settings))
    return folder


def stack_config(tmp: Path, **stack: object) -> ProjectConfig:
    """A project config whose stack uses free ports and folders under `tmp`."""
    champion = write_iris_model(tmp / "models" / "v1", "1", 1.0)
    challenger = write_iris_model(tmp / "models" / "v2", "2", 0.05)
    raw = {
        "name": "iris",
        "data": {"path": "unused.parquet", "target": "species"},
        "stack": {
            "data_dir": str(tmp / "stack"),
            # The serving part; the drift and monitoring parts are tested by their own suites.
            "providers": ["seaweedfs", "mlserver", "router"],
            "startup_timeout_s": 120,
            # weed lingers ~15 s after SIGTERM once it has run a while; tests do not wait for it.
            "stop_timeout_s": 5,
            "s3_port": free_port(),
            "champion": {
                "http": free_port(),
                "grpc": free_port(),
                "metrics": free_port(),
                "model_dir": str(champion),
            },
            "challenger": {
                "http": free_port(),
                "grpc": free_port(),
                "metrics": free_port(),
                "model_dir": str(challenger),
            },
            # MLServer's CLI behind Mainsail's guard, in the serving venv (what `up` runs).
            "mlserver_command": [
                str(REPO / ".venv" / "serving" / "bin" / "python"),
                "-m",
                "mainsail.serving.guard",
            ],
            "router": {
                "port": free_port(),
                "weights": {"champion": 90, "challenger": 10},
                "health_interval_s": 0.25,
                # Generous: the test machine is shared; a refused connection still takes a
                # variant out at once (passive check).
                "health_timeout_s": 2.0,
                "unhealthy_after": 2,
            },
            **stack,
        },
    }
    return parse_config(raw, "<test>", base_dir=tmp)


def iris_request(rows: int = 1) -> dict[str, object]:
    return {
        "inputs": [
            {
                "name": "x",
                "shape": [rows, 4],
                "datatype": "FP64",
                "data": [[5.1, 3.5, 1.4, 0.2]] * rows,
            }
        ]
    }
