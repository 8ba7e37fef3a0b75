"""MLServer repository files for our runtime: what `mlserver start` and the local stack read."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from mainsail.config.registry import RegistryConfig
from mainsail.config.serving import ServingConfig
from mainsail.registry.mlserver import RUNTIME_IMPLEMENTATION, model_settings
from mainsail.serving.mlserver import (
    ServedModel,
    registry_model,
    server_settings,
    write_repository,
)


def test_repository_layout_and_settings(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, http_port=1, grpc_port=2, metrics_port=3)
    assert settings["parallel_workers"] == 0
    assert settings["metrics_dir"] == str(tmp_path / ".metrics")
    write_repository(tmp_path, [ServedModel("m", uri="/art", version="4")], settings)
    assert json.loads((tmp_path / "settings.json").read_text())["http_port"] == 1
    model = json.loads((tmp_path / "m" / "model-settings.json").read_text())
    assert model == {
        "name": "m",
        "implementation": RUNTIME_IMPLEMENTATION,
        "parameters": {"uri": "/art", "version": "4"},
    }


def test_registry_model_carries_config_but_never_credentials() -> None:
    served = registry_model(
        "churn-challenger",
        endpoint="127.0.0.1:9000",
        registry=RegistryConfig(bucket="models", prefix="team/"),
        serving=ServingConfig(drift_url="http://127.0.0.1:8010", max_rows=50),
        ref="challenger",
        model="churn",
    )
    extra = served.settings()["parameters"]["extra"]
    assert extra["registry"]["model"] == "churn" and extra["registry"]["ref"] == "challenger"
    assert extra["registry"]["access_key_env"] == "MAINSAIL_S3_ACCESS_KEY"
    assert extra["drift_url"] == "http://127.0.0.1:8010" and extra["max_rows"] == 50
    assert "feature_server_url" not in extra
    text = json.dumps(served.settings())
    assert "secret" not in text.replace("secret_key_env", "")


def test_version_model_settings_point_at_the_runtime() -> None:
    body = model_settings("churn", 3)
    assert body["implementation"] == RUNTIME_IMPLEMENTATION
    assert body["parameters"] == {
        "uri": ".",
        "version": "3",
        "extra": {"model": "churn", "registry_version": 3},
    }


def test_serving_options_carry_the_online_feature_policy() -> None:
    from mainsail.config.features import FeaturesConfig
    from mainsail.serving.mlserver import serving_options

    features = FeaturesConfig(fallback="impute", enforce_freshness=False)
    stack_url = "http://127.0.0.1:6566"
    options = serving_options(ServingConfig(), features, stack_url)
    # What the stack writes must pass the runtime's strict options model, which lives in the
    # serving env (MLServer is not installed in this one).
    python = Path(__file__).resolve().parents[2] / ".venv" / "serving" / "bin" / "python"
    check = (
        "import json, sys; from mainsail.serving.runtime import RuntimeOptions as R; "
        "o = R.model_validate(json.loads(sys.argv[1])); "
        "print(o.feature_fallback, o.enforce_freshness, o.feature_server_url)"
    )
    out = subprocess.run(
        [str(python), "-c", check, json.dumps(options)], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["impute", "False", stack_url]
    # A feature server named in the serving section wins over the stack's own.
    named = serving_options(ServingConfig(feature_server_url="http://fs:80"), features, stack_url)
    assert named["feature_server_url"] == "http://fs:80"
    assert "feature_server_url" not in serving_options(ServingConfig())
