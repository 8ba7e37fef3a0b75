"""Deploying a challenger: locally (MLServer reload + router admin API, then a measured load
run fills the model card) and on Kubernetes (registry alias + Seldon resources).

Real processes (SeaweedFS, MLServer, router) and the real registry. A Kubernetes API server
cannot run here: the Kubernetes backend applies to a recorded fake API
(tests/unit/fake_kube_api.py) through the real kubernetes client.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml

from mainsail.config import ProjectConfig
from mainsail.deploy.kubernetes import DeployError
from mainsail.deploy.local import LocalDeployer
from mainsail.deploy.service import _measure_into_card, deploy
from mainsail.registry import open_registry
from tests.support.kube import FakeKubeAPI
from tests.support.router import ServerThread
from tests.support.stack import TOKEN, iris_request, write_iris_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]
AUTH = {"authorization": f"Bearer {TOKEN}"}


def test_local_deploy_swaps_the_challenger_and_fills_the_card(
    running_stack: ProjectConfig, tmp_path: Path
) -> None:
    cfg = running_stack
    router = f"http://127.0.0.1:{cfg.stack.router.port}"
    v3 = write_iris_model(tmp_path / "v3", "3", 0.01)
    (v3 / "model_card.yaml").write_text(
        yaml.safe_dump({"deployment": {"endpoint": None, "latency_p95": None, "throughput": None}})
    )
    deployer = LocalDeployer(cfg, token=TOKEN)
    try:
        state = deployer.deploy(v3, canary=50)["variants"]
        assert state["challenger"]["version"] == "3"
        assert (state["champion"]["weight"], state["challenger"]["weight"]) == (50, 50)
        direct = httpx.post(
            f"http://127.0.0.1:{cfg.stack.challenger.http}/v2/models/iris/infer",
            json=iris_request(),
        ).json()
        assert direct["model_version"] == "3"
        with httpx.Client(base_url=router, timeout=10) as client:
            versions = {
                client.post("/v2/models/iris/infer", json=iris_request()).headers[
                    "x-mainsail-model-version"
                ]
                for _ in range(60)
            }
        assert versions == {"1", "3"}

        card = _measure_into_card(cfg, v3, 3, 1.0, iris_request())
        assert card is not None
        filled = yaml.safe_load(card.read_text())["deployment"]
        assert filled["endpoint"] == f"{router}/v2/models/iris/infer"
        assert filled["latency_p95"] > 0 and filled["throughput"] > 0
        assert filled["measured"]["errors"] == 0
    finally:
        v2 = Path(cfg.stack.challenger.model_dir or "")
        deployer.load_model("challenger", v2)
        deployer.set_variant("challenger", "2")
        deployer.set_canary(10)


def test_local_deploy_needs_the_token_and_a_reachable_router(running_stack: ProjectConfig) -> None:
    with pytest.raises(DeployError, match="router refused PUT /admin/weights: 401"):
        LocalDeployer(running_stack, token="wrong").set_canary(20)
    with pytest.raises(DeployError, match="between 0 and 100"):
        LocalDeployer(running_stack, token=TOKEN).set_canary(120)


def test_kubernetes_deploy_moves_the_alias_after_applying(
    running_stack: ProjectConfig, tmp_path: Path
) -> None:
    from kubernetes import client

    cfg = running_stack
    registry = open_registry(cfg)
    registry.ensure_bucket()
    for i, c in enumerate((1.0, 0.1, 0.05)):
        folder = write_iris_model(tmp_path / f"art{i}", str(i), c)
        (folder / "model-settings.json").unlink()  # the registry writes its own
        (folder / "feature_schema.json").write_text(json.dumps({"features": []}))
        registry.publish(cfg.name, folder)
    versions = [v.version for v in registry.versions(cfg.name)]
    champion, challenger, newest = versions[-3:]
    registry.promote(cfg.name, champion, alias="champion")

    dry = deploy(cfg, challenger, 20, backend="kubernetes", dry_run=True, registry=registry)
    objects = list(yaml.safe_load_all(dry.yaml or ""))
    assert objects[-1]["spec"]["candidates"][1]["weight"] == 20
    assert objects[1]["spec"]["storageUri"] == registry.version_uri(cfg.name, challenger)
    assert "challenger" not in registry.aliases(cfg.name)  # a dry run changes nothing

    fake = FakeKubeAPI()
    server = ServerThread(fake).start()
    try:
        api = client.ApiClient(client.Configuration(host=server.url))
        result = deploy(
            cfg, challenger, 20, backend="kubernetes", registry=registry, api_client=api
        )
        api.close()
    finally:
        server.stop()
    assert registry.aliases(cfg.name)["challenger"] == challenger
    assert result.actions[-1] == f"alias challenger -> v{challenger}"
    experiment = fake.objects[("experiments", "mainsail", "iris-canary")]
    assert experiment["spec"]["default"] == f"iris-v{champion}"

    # A failed apply leaves the alias where it was.
    fake_forbidden = FakeKubeAPI(forbidden_namespaces=("mainsail",))
    server = ServerThread(fake_forbidden).start()
    try:
        api = client.ApiClient(client.Configuration(host=server.url))
        with pytest.raises(DeployError, match="403"):
            deploy(cfg, newest, 20, backend="kubernetes", registry=registry, api_client=api)
        api.close()
    finally:
        server.stop()
    with pytest.raises(DeployError, match="both version"):
        deploy(cfg, champion, 20, backend="kubernetes", registry=registry)
    assert registry.aliases(cfg.name)["challenger"] == challenger


def test_stack_fetches_a_variant_from_the_registry_when_no_folder_is_set(
    running_stack: ProjectConfig, tmp_path: Path
) -> None:
    from mainsail.stack.process import StackError
    from mainsail.stack.providers import StackContext, registry_model_dir

    cfg = running_stack.model_copy(deep=True)
    cfg.registry.cache_dir = tmp_path / "cache"
    ctx = StackContext(config=cfg, data_dir=tmp_path / "stack")
    registry = open_registry(cfg)
    registry.ensure_bucket()
    if "champion" not in registry.aliases(cfg.name):
        folder = write_iris_model(tmp_path / "art", "0", 1.0)
        (folder / "model-settings.json").unlink()
        (folder / "feature_schema.json").write_text("{}")
        registry.promote(cfg.name, registry.publish(cfg.name, folder).version, alias="champion")
    aliases = registry.aliases(cfg.name)
    folder = registry_model_dir(ctx, "champion")
    settings = json.loads((folder / "model-settings.json").read_text())
    assert settings["parameters"]["version"] == str(aliases["champion"])
    expected = aliases.get("challenger", aliases["champion"])
    settings = json.loads(
        (registry_model_dir(ctx, "challenger") / "model-settings.json").read_text()
    )
    assert settings["parameters"]["version"] == str(expected)

    cfg.name = "nobody"
    with pytest.raises(StackError, match="registry has no 'champion' version of 'nobody'"):
        registry_model_dir(ctx, "champion")


def test_the_stacks_mlserver_repository_api_needs_the_stacks_token(
    running_stack: ProjectConfig,
) -> None:
    """MLServer's load/unload answer only the stack's token holders (`mainsail deploy`); its
    secrets and state file are readable by their owner only."""
    import httpx

    from mainsail.stack.providers import StackContext, stack_token

    cfg = running_stack
    port = cfg.stack.champion.http
    url = f"http://{cfg.stack.host}:{port}/v2/repository/index"
    assert httpx.post(url, json={}, timeout=10).status_code == 401
    wrong = httpx.post(url, json={}, headers={"authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401
    ctx = StackContext(config=cfg, data_dir=cfg.stack.data_dir.resolve())
    token = stack_token(ctx, "repository")
    ok = httpx.post(url, json={}, headers={"authorization": f"Bearer {token}"}, timeout=10)
    assert ok.status_code == 200, ok.text
    data = cfg.stack.data_dir.resolve()
    for path in [data / "state.json", *(data / "secrets").iterdir()]:
        if path.name.endswith(".key") and "public" in path.name:
            continue
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
