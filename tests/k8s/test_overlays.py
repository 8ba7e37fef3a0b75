"""The kustomize overlays build with `kubectl kustomize` and change what they promise."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from . import checks

pytestmark = pytest.mark.k8s


def find(objs: list[checks.Obj], kind: str, name: str) -> checks.Obj | None:
    return next((o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name), None)


NAMESPACES = {"kind": "mainsail", "production": "mainsail", "staging": "mainsail-staging"}


def test_every_overlay_creates_a_pod_security_labelled_namespace(
    overlay_objects: dict[str, list[checks.Obj]],
) -> None:
    for overlay, objs in overlay_objects.items():
        ns = find(objs, "Namespace", NAMESPACES[overlay])
        assert ns is not None
        labels = ns["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/audit"] == "restricted"
        assert labels["pod-security.kubernetes.io/enforce"] in ("baseline", "restricted")
    # The kind cluster's namespace enforces "restricted" (as scripts/kind/install.sh labels it);
    # production keeps "baseline" until Seldon's Server pod meets "restricted" (issue 17).
    kind_ns = find(overlay_objects["kind"], "Namespace", "mainsail")
    assert kind_ns is not None
    assert kind_ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_kind_overlay_shrinks_requests(overlay_objects: dict[str, list[checks.Obj]]) -> None:
    ray = find(overlay_objects["kind"], "RayCluster", "mainsail-ray")
    assert ray is not None
    head = ray["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["resources"]["requests"]["memory"] == "1Gi"


def test_production_overlay_drops_development_secrets_and_scales_up(
    overlay_objects: dict[str, list[checks.Obj]],
) -> None:
    objs = overlay_objects["production"]
    assert not [o for o in objs if o["kind"] == "Secret"]
    feast = find(objs, "Deployment", "mainsail-feast")
    assert feast is not None and feast["spec"]["replicas"] == 2
    assert find(objs, "PodDisruptionBudget", "mainsail-feast") is not None
    server = find(objs, "Server", "mainsail-serving")
    assert server is not None and server["spec"]["replicas"] == 2


@pytest.mark.parametrize("overlay", checks.OVERLAYS)
def test_every_overlay_patch_target_exists(overlay: str) -> None:
    assert checks.unmatched_patch_targets(checks.MANIFESTS / "overlays" / overlay) == []


def test_staging_overlay_is_its_own_namespace_with_its_own_in_cluster_urls(
    overlay_objects: dict[str, list[checks.Obj]],
) -> None:
    objs = overlay_objects["staging"]
    namespaced = [o for o in objs if o["kind"] != "Namespace"]
    assert namespaced and {o["metadata"]["namespace"] for o in namespaced} == {"mainsail-staging"}
    assert not [o for o in objs if o["kind"] == "Secret"]  # from the secret manager, as in prod
    text = str(objs)
    assert ".mainsail-staging.svc" in text and ".mainsail.svc" not in text


def test_misspelt_patch_target_is_caught(tmp_path: Path) -> None:
    # kustomize itself builds this without a word; our check must not.
    shutil.copytree(checks.MANIFESTS, tmp_path / "manifests")
    kustomization = tmp_path / "manifests" / "overlays" / "kind" / "kustomization.yaml"
    kustomization.write_text(
        kustomization.read_text().replace("name: mainsail-minio}", "name: mainsail-minioo}")
    )
    found = checks.unmatched_patch_targets(kustomization.parent)
    assert len(found) == 1 and "mainsail-minioo" in found[0]


def test_overlay_deleting_a_missing_object_fails_to_build(tmp_path: Path) -> None:
    shutil.copytree(checks.MANIFESTS, tmp_path / "manifests")
    kustomization = tmp_path / "manifests" / "overlays" / "production" / "kustomization.yaml"
    kustomization.write_text(
        kustomization.read_text().replace("name: mainsail-s3-rclone", "name: mainsail-s3-rclonee")
    )
    code, _, stderr = checks.kustomize(kustomization.parent)
    assert code != 0 and "mainsail-s3-rclonee" in stderr
