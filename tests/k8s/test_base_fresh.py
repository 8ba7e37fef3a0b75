"""manifests/base is the chart rendered with default values, and says so when it is stale."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from . import checks

pytestmark = pytest.mark.k8s

BASE = checks.MANIFESTS / "base" / "mainsail.yaml"


def test_checked_in_base_equals_a_fresh_render(render: Any) -> None:
    diff = render.stale_diff(render.render_text(), BASE.read_text())
    assert diff == [], "manifests/base is stale; run `make render`:\n" + "\n".join(diff[:40])


def test_checked_in_staging_base_equals_a_fresh_render_in_its_namespace(render: Any) -> None:
    fresh = render.render_text(namespace=render.STAGING_NAMESPACE)
    diff = render.stale_diff(fresh, render.STAGING_BASE.read_text(), "manifests/base-staging")
    assert diff == [], "base-staging is stale; run `make render`:\n" + "\n".join(diff[:40])


def test_base_kustomization_builds_the_rendered_file(render: Any) -> None:
    code, stdout, stderr = checks.kustomize(checks.MANIFESTS / "base")
    assert code == 0, stderr
    built = {checks.ident(o) for o in checks.load_yaml_docs(stdout)}
    rendered = {checks.ident(o) for o in render.documents(render.render_chart())}
    assert built == rendered


def test_stale_base_is_detected(render: Any, tmp_path: Path) -> None:
    stale = BASE.read_text().replace("replicas: 1", "replicas: 3", 1)
    diff = render.stale_diff(render.render_text(), stale)
    assert any(line.startswith("-") and "replicas: 3" in line for line in diff)


def test_chart_change_makes_the_base_stale(render: Any) -> None:
    changed = render.render_text({"feast": {"replicas": 2}})
    assert render.stale_diff(changed, BASE.read_text())


def test_render_check_cli_exits_nonzero_on_a_stale_file(
    render: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = tmp_path / "mainsail.yaml"
    stale.write_text(BASE.read_text() + "# edited by hand\n")
    monkeypatch.setattr(render, "BASE", stale)
    assert render.main(["--check"]) == 1
    stale.write_text(BASE.read_text())
    assert render.main(["--check"]) == 0


def test_chart_dashboards_are_the_generated_ones(render: Any) -> None:
    fresh = render.dashboard_files()
    shipped = {p.name: p.read_text() for p in render.DASHBOARDS.glob("*.json")}
    assert sorted(shipped) == sorted(fresh), "run `make render`"
    assert [name for name in fresh if shipped[name] != fresh[name]] == []


def test_render_check_flags_a_dashboard_the_generator_no_longer_makes(
    render: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "dashboards"
    folder.mkdir()
    for name, text in render.dashboard_files().items():
        (folder / name).write_text(text)
    monkeypatch.setattr(render, "DASHBOARDS", folder)
    assert render.main(["--check"]) == 0
    (folder / "old.json").write_text("{}")
    assert render.main(["--check"]) == 1


APPLY_ANNOTATION_LIMIT = 262_144
"""Bytes kubectl's client-side apply can keep in last-applied-configuration."""


def test_every_object_fits_kubectl_apply(default_objects: list[checks.Obj]) -> None:
    sizes = {checks.ident(o): len(json.dumps(o)) for o in default_objects}
    assert {k: v for k, v in sizes.items() if v >= APPLY_ANNOTATION_LIMIT} == {}
    big = {"kind": "ConfigMap", "data": {"x.json": "0" * APPLY_ANNOTATION_LIMIT}}
    assert len(json.dumps(big)) >= APPLY_ANNOTATION_LIMIT
