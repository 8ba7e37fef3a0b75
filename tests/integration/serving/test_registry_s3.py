"""The model registry against a real S3 API (SeaweedFS): publish, list, aliases, atomicity,
tamper detection, and the `mainsail models` CLI."""

from __future__ import annotations

import io
import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mainsail.cli.models import app
from mainsail.registry.errors import (
    AliasError,
    IntegrityError,
    PublishError,
    VersionNotFoundError,
)
from mainsail.registry.manifest import MANIFEST_NAME, verify_folder
from mainsail.registry.seaweedfs import SeaweedS3
from mainsail.registry.signing import SIGNATURE_NAME
from mainsail.registry.store import ModelRegistry

pytestmark = pytest.mark.integration

_names = itertools.count()


def _model() -> str:
    return f"reg-{next(_names)}"


def _put(registry: ModelRegistry, key: str, data: bytes) -> None:
    registry.client.put_object(registry.bucket, key, io.BytesIO(data), len(data))


def _keys(registry: ModelRegistry, prefix: str) -> list[str]:
    objs = registry.client.list_objects(registry.bucket, prefix=prefix, recursive=True)
    return [o.object_name for o in objs if o.object_name]


def test_publish_lists_versions_with_manifest_and_model_settings(
    registry: ModelRegistry, churn_artifact: Path, tmp_path: Path
) -> None:
    model = _model()
    first = registry.publish(model, churn_artifact)
    second = registry.publish(model, churn_artifact)
    assert (first.version, second.version) == (1, 2)
    assert [v.version for v in registry.versions(model)] == [1, 2]
    assert model in registry.models()
    assert "roc_auc" in first.metrics

    manifest, _ = registry.manifest(model, 2)
    expected = {
        "model.joblib",
        "feature_schema.json",
        "model_card.yaml",
        "metrics.json",
        "report.html",
        "reference.parquet",
        "calibration.parquet",
        "lineage.json",
        "plots/roc.svg",
        "model-settings.json",
    }
    assert set(manifest.files) == expected
    # Nothing staged is left behind, and the version folder holds exactly the manifest's files.
    assert _keys(registry, f"{model}/staging/") == []
    stored = {k.split("/versions/2/", 1)[1] for k in _keys(registry, f"{model}/versions/2/")}
    assert stored == expected | {MANIFEST_NAME, SIGNATURE_NAME}

    local = registry.download(model, 2, tmp_path / "cache")
    settings = json.loads((local.path / "model-settings.json").read_text())
    assert settings["implementation"] == "mainsail.serving.runtime.MainsailRuntime"
    assert settings["parameters"]["version"] == "2"
    assert verify_folder(local.path).version == 2
    assert (local.path / "model.joblib").read_bytes() == (
        churn_artifact / "model.joblib"
    ).read_bytes()


def test_aliases_promote_and_rollback_with_history(
    registry: ModelRegistry, churn_artifact: Path
) -> None:
    model = _model()
    for _ in range(3):
        registry.publish(model, churn_artifact)
    assert registry.promote(model, 1) == 1
    assert registry.promote(model, "latest") == 3
    assert registry.promote(model, 2, "challenger") == 2
    assert registry.aliases(model) == {"champion": 3, "challenger": 2}
    assert registry.resolve(model, "champion")[0] == 3
    listed = {v.version: v.aliases for v in registry.versions(model)}
    assert listed == {1: (), 2: ("challenger",), 3: ("champion",)}

    assert registry.promote(model, "challenger", "champion") == 2
    assert registry.rollback(model) == 3
    assert registry.rollback(model) == 1
    with pytest.raises(AliasError, match="no earlier version to roll back to"):
        registry.rollback(model)
    actions = [(e["alias"], e["action"], e["from"], e["to"]) for e in registry.history(model)]
    assert actions == [
        ("champion", "promote", None, 1),
        ("champion", "promote", 1, 3),
        ("challenger", "promote", None, 2),
        ("champion", "promote", 3, 2),
        ("champion", "rollback", 2, 3),
        ("champion", "rollback", 3, 1),
    ]


def test_unset_alias_removes_it_and_its_rollback_history(
    registry: ModelRegistry, churn_artifact: Path
) -> None:
    model = _model()
    for _ in range(3):
        registry.publish(model, churn_artifact)
    registry.promote(model, 1)
    registry.promote(model, 2, "challenger")
    registry.promote(model, 3, "challenger")
    assert registry.unset_alias(model, "challenger") == 3
    assert registry.aliases(model) == {"champion": 1}
    assert {v.version: v.aliases for v in registry.versions(model)}[3] == ()
    with pytest.raises(VersionNotFoundError, match="has no alias 'challenger'"):
        registry.resolve(model, "challenger")
    with pytest.raises(AliasError, match=r"alias 'challenger' is not set \(set: champion\)"):
        registry.unset_alias(model, "challenger")
    with pytest.raises(AliasError, match="unknown alias 'gold'"):
        registry.unset_alias(model, "gold")
    assert registry.history(model)[-1] | {"at": None} == {
        "at": None,
        "alias": "challenger",
        "action": "unset",
        "from": 3,
        "to": None,
    }
    # Promoted again, it starts afresh: no rollback to v2, which it held before the removal.
    registry.promote(model, 1, "challenger")
    with pytest.raises(AliasError, match="no earlier version to roll back to"):
        registry.rollback(model, "challenger")


def test_unknown_version_alias_and_alias_name_are_clear_errors(
    registry: ModelRegistry, churn_artifact: Path
) -> None:
    model = _model()
    registry.publish(model, churn_artifact)
    with pytest.raises(VersionNotFoundError, match=r"has no version 7 \(versions: 1\)"):
        registry.manifest(model, 7)
    with pytest.raises(VersionNotFoundError, match="has no alias 'champion'"):
        registry.resolve(model, "champion")
    with pytest.raises(AliasError, match="unknown alias 'gold'"):
        registry.promote(model, 1, "gold")


def test_failed_publish_midway_leaves_no_version(
    registry: ModelRegistry, churn_artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _model()
    registry.publish(model, churn_artifact)
    real_copy = registry.client.copy_object
    calls = {"n": 0}

    def failing_copy(*args: Any, **kwargs: Any) -> Any:
        # Fault injection into the real client: the third server-side copy fails.
        calls["n"] += 1
        if calls["n"] == 3:
            raise ConnectionError("network dropped")
        return real_copy(*args, **kwargs)

    monkeypatch.setattr(registry.client, "copy_object", failing_copy)
    with pytest.raises(PublishError, match=f"publish of {model} v2 failed: .*network dropped"):
        registry.publish(model, churn_artifact)
    monkeypatch.undo()

    assert [v.version for v in registry.versions(model)] == [1]
    assert _keys(registry, f"{model}/versions/2/") == []
    assert _keys(registry, f"{model}/staging/") == []
    with pytest.raises(VersionNotFoundError):
        registry.resolve(model, 2) and registry.manifest(model, 2)
    # The next publish works and never reuses a number that was handed out.
    assert registry.publish(model, churn_artifact).version >= 2


def test_reader_never_sees_a_partial_version(
    registry: ModelRegistry, churn_artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _model()
    seen: list[list[int]] = []
    real_copy = registry.client.copy_object

    def observing_copy(*args: Any, **kwargs: Any) -> Any:
        result = real_copy(*args, **kwargs)
        seen.append([v.version for v in registry.versions(model)])
        return result

    monkeypatch.setattr(registry.client, "copy_object", observing_copy)
    registry.publish(model, churn_artifact)
    monkeypatch.undo()
    manifest, _ = registry.manifest(model, 1)
    assert len(seen) == len(manifest.files)  # every file was copied while a reader was looking
    assert all(s == [] for s in seen)
    assert [v.version for v in registry.versions(model)] == [1]


def test_corruption_while_staged_fails_the_publish(
    registry: ModelRegistry, churn_artifact: Path
) -> None:
    model = _model()

    def corrupt(staging: str) -> None:
        _put(registry, staging + "model.joblib", b"not the model")

    with pytest.raises(PublishError, match=r"model\.joblib has 13 bytes"):
        registry.publish(model, churn_artifact, _after_stage=corrupt)
    assert registry.versions(model) == []


def test_tampered_object_is_refused_on_download_and_nothing_is_left(
    registry: ModelRegistry, churn_artifact: Path, tmp_path: Path
) -> None:
    model = _model()
    registry.publish(model, churn_artifact)
    original = (churn_artifact / "model.joblib").read_bytes()
    forged = bytearray(original)
    forged[len(forged) // 2] ^= 0xFF  # same size: only the digest can catch it
    _put(registry, f"{model}/versions/1/model.joblib", bytes(forged))
    cache = tmp_path / "cache"
    with pytest.raises(IntegrityError, match=rf"{model} v1: file model\.joblib has sha256"):
        registry.download(model, 1, cache)
    assert not (cache / model / "1").exists()
    assert list((cache / model).iterdir()) == []


def test_replaced_manifest_is_caught_through_the_alias(
    registry: ModelRegistry, churn_artifact: Path, tmp_path: Path
) -> None:
    model = _model()
    registry.publish(model, churn_artifact)
    registry.promote(model, 1)
    manifest, _ = registry.manifest(model, 1)
    # An attacker swaps the model AND rewrites the manifest to match.
    evil = b"evil pickle"
    files = dict(manifest.files)
    files["model.joblib"] = files["model.joblib"].model_copy(
        update={"sha256": __import__("hashlib").sha256(evil).hexdigest(), "size": len(evil)}
    )
    _put(registry, f"{model}/versions/1/model.joblib", evil)
    _put(
        registry,
        f"{model}/versions/1/{MANIFEST_NAME}",
        manifest.model_copy(update={"files": files}).to_bytes(),
    )
    # The signature catches it first; an unsigned registry still has the alias's digest.
    with pytest.raises(IntegrityError, match="signature does not verify"):
        registry.download(model, "champion", tmp_path / "cache")
    unsigned = ModelRegistry(registry.client, registry.bucket, registry.prefix)
    with pytest.raises(IntegrityError, match="recorded when alias 'champion' was set"):
        unsigned.download(model, "champion", tmp_path / "cache")


def test_download_reuses_an_intact_copy_and_replaces_a_tampered_one(
    registry: ModelRegistry, churn_artifact: Path, tmp_path: Path
) -> None:
    model = _model()
    registry.publish(model, churn_artifact)
    cache = tmp_path / "cache"
    first = registry.download(model, "latest", cache)
    (first.path / "report.html").write_text("defaced")
    second = registry.download(model, "latest", cache)
    assert (second.path / "report.html").read_bytes() == (
        churn_artifact / "report.html"
    ).read_bytes()


def test_publish_rejects_a_bad_folder_before_writing(
    registry: ModelRegistry, churn_artifact: Path, tmp_path: Path
) -> None:
    model = _model()
    folder = tmp_path / "incomplete"
    shutil.copytree(churn_artifact, folder)
    (folder / "model.joblib").unlink()
    with pytest.raises(Exception, match=r"lacks model\.joblib"):
        registry.publish(model, folder)
    assert _keys(registry, f"{model}/") == []


def test_data_survives_a_seaweedfs_restart(tmp_path: Path) -> None:
    s3 = SeaweedS3(tmp_path / "s3", buckets=["bkt"], access_key="k" * 8, secret_key="s" * 20)
    try:
        s3.start()
        _put(ModelRegistry(s3.client(), "bkt"), "x/y", b"payload")
        s3.stop()
        assert not s3.running
        s3.start()
        assert s3.client().get_object("bkt", "x/y").read() == b"payload"
    finally:
        s3.stop()


def test_cli_publish_list_show_promote_rollback(
    seaweed: SeaweedS3, churn_artifact: Path, tmp_path: Path, repo_root: Path
) -> None:
    model = _model()
    ep = seaweed.endpoint
    env = {
        "MAINSAIL_S3_ACCESS_KEY": ep.access_key,
        "MAINSAIL_S3_SECRET_KEY": ep.secret_key,
        "MAINSAIL_S3_ENDPOINT": ep.endpoint,
    }
    config = str(repo_root / "configs" / "churn.yaml")
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(app, [*args, "--config", config], env=env)
        assert result.exit_code == 0, result.output
        return result.output

    assert f"published {model} v1 as champion" in run(
        "publish", model, str(churn_artifact), "--alias", "champion"
    )
    assert f"published {model} v2" in run("publish", model, str(churn_artifact))
    assert f"{model}: champion -> v2" in run("promote", model, "2")
    listed = json.loads(run("list", model, "--json"))
    assert [(v["version"], v["aliases"]) for v in listed] == [[1, []], [2, ["champion"]]] or [
        (v["version"], tuple(v["aliases"])) for v in listed
    ] == [(1, ()), (2, ("champion",))]
    shown = json.loads(run("show", model, "champion"))
    assert shown["version"] == 2 and "model.joblib" in shown["files"]
    assert shown["uri"] == f"s3://mainsail-models/{model}/versions/2/"
    assert "rolled back to v1" in run("rollback", model)
    assert model in run("list")
    assert f"{model}: champion removed (it pointed at v1)" in run(
        "unset-alias", model, "--alias", "champion"
    )
    assert all(not v["aliases"] for v in json.loads(run("list", model, "--json")))
    again = runner.invoke(app, ["unset-alias", model, "--config", config], env=env)
    assert again.exit_code == 1 and "alias 'challenger' is not set" in again.output

    bad = runner.invoke(app, ["show", model, "9", "--config", config], env=env)
    assert bad.exit_code == 1
    assert "has no version 9" in bad.output
    nokeys = runner.invoke(
        app,
        ["list", "--config", config],
        env={
            "MAINSAIL_S3_ENDPOINT": ep.endpoint,
            "MAINSAIL_S3_ACCESS_KEY": "",
            "MAINSAIL_S3_SECRET_KEY": "",
        },
    )
    assert nokeys.exit_code == 1
    assert "MAINSAIL_S3_ACCESS_KEY" in nokeys.output


def test_store_failures_are_one_line_errors_in_every_command(
    seaweed: SeaweedS3, churn_artifact: Path, repo_root: Path, tmp_path: Path
) -> None:
    """S3 down, or the bucket missing: one line, exit 1, no traceback, in a few seconds."""
    import socket
    import time

    from mainsail.cli.deploy import app as deploy_app

    ep = seaweed.endpoint
    keys = {"MAINSAIL_S3_ACCESS_KEY": ep.access_key, "MAINSAIL_S3_SECRET_KEY": ep.secret_key}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{sock.getsockname()[1]}"  # nothing listens here
    import yaml

    config = tmp_path / "project.yaml"
    data = yaml.safe_load((repo_root / "configs" / "churn.yaml").read_text())
    data.setdefault("registry", {})["bucket"] = "no-such-bucket-here"
    config.write_text(yaml.safe_dump(data))
    runner = CliRunner()
    cases = [
        (app, ["list", "--config", str(config), "--endpoint", dead], "unreachable"),
        (
            app,
            ["publish", "churn", str(churn_artifact), "--config", str(config), "--endpoint", dead],
            "unreachable",
        ),
        (app, ["list", "--config", str(config), "--endpoint", ep.endpoint], "does not exist"),
        (
            app,
            ["show", "churn", "--config", str(config), "--endpoint", ep.endpoint],
            "does not exist",
        ),
        (app, ["gc", "--config", str(config), "--endpoint", ep.endpoint], "does not exist"),
        (
            deploy_app,  # `mainsail deploy`
            [
                "churn",
                "--version",
                "1",
                "--config",
                str(config),
                "--dry-run",
                "--backend",
                "kubernetes",
            ],
            "unreachable",
        ),
    ]
    for cli, args, message in cases:
        started = time.monotonic()
        env = {**keys, "MAINSAIL_S3_ENDPOINT": dead if cli is deploy_app else ""}
        result = runner.invoke(cli, args, env=env)
        elapsed = time.monotonic() - started
        assert result.exit_code == 1, (args, result.output, result.exception)
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 3
        assert elapsed < 8, (args, elapsed)


def test_models_gc_removes_what_a_dead_publish_left(
    seaweed: SeaweedS3, registry: ModelRegistry, repo_root: Path
) -> None:
    model = _model()
    for name in ("model.joblib", "feature_schema.json"):
        _put(registry, f"{model}/staging/deadbeef/{name}", b"half an upload")
    env = {
        "MAINSAIL_S3_ACCESS_KEY": seaweed.endpoint.access_key,
        "MAINSAIL_S3_SECRET_KEY": seaweed.endpoint.secret_key,
        "MAINSAIL_S3_ENDPOINT": seaweed.endpoint.endpoint,
    }
    config = str(repo_root / "configs" / "churn.yaml")
    fresh = CliRunner().invoke(app, ["gc", model, "--config", config], env=env)
    assert fresh.exit_code == 0 and "0 staging prefix(es) removed" in fresh.output
    result = CliRunner().invoke(
        app, ["gc", model, "--older-than", "0", "--config", config], env=env
    )
    assert result.exit_code == 0, result.output
    assert f"removed {model}/staging/deadbeef/" in result.output
    assert _keys(registry, f"{model}/staging/") == []


def test_seaweedfs_start_failure_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    from mainsail.registry.seaweedfs import SeaweedError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        s3 = SeaweedS3(tmp_path / "s3", port=port, startup_timeout=30)
        # The cause is named before the log's tail, wherever weed logged it: other goroutines
        # keep logging after the fatal line, which once pushed it out of the tail.
        with pytest.raises(SeaweedError, match=r"during start-up: F\d{4} .*address already in use"):
            s3.start()
        assert not s3.running


def test_the_stack_on_an_empty_registry_says_what_to_do(
    seaweed: SeaweedS3, repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first `mainsail up` on an empty store: one clear StackError, not NoSuchBucket."""
    from mainsail.config import load_config
    from mainsail.stack.process import StackError
    from mainsail.stack.providers import StackContext, registry_model_dir

    ep = seaweed.endpoint
    monkeypatch.setenv("MAINSAIL_S3_ACCESS_KEY", ep.access_key)
    monkeypatch.setenv("MAINSAIL_S3_SECRET_KEY", ep.secret_key)
    cfg = load_config(repo_root / "configs" / "churn.yaml")
    registry = cfg.registry.model_copy(update={"endpoint": ep.endpoint, "bucket": "empty-store"})
    stack = cfg.stack.model_copy(update={"data_dir": tmp_path / "stack"})
    cfg = cfg.model_copy(update={"registry": registry, "stack": stack})
    with pytest.raises(StackError) as err:
        registry_model_dir(StackContext(config=cfg, data_dir=tmp_path / "stack"), "champion")
    message = str(err.value)
    assert "'empty-store' does not exist" in message and "publish and promote" in message
