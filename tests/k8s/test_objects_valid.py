"""Every rendered, overlaid and example object matches its schema: built-in kinds through
kubernetes-validate (strict), custom resources through the upstream CRDs in ../shared/crds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from . import checks
from .conftest import SCENARIOS

pytestmark = pytest.mark.k8s


def problems(objs: list[checks.Obj], crds: checks.CrdSchemas) -> list[str]:
    return [p for obj in objs for p in checks.validate_object(obj, crds)]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_chart_objects_match_their_schemas(
    scenario: str, scenario_objects: dict[str, list[checks.Obj]], crds: checks.CrdSchemas
) -> None:
    objs = scenario_objects[scenario]
    assert objs
    assert problems(objs, crds) == []


@pytest.mark.parametrize("overlay", checks.OVERLAYS)
def test_overlay_objects_match_their_schemas(
    overlay: str, overlay_objects: dict[str, list[checks.Obj]], crds: checks.CrdSchemas
) -> None:
    assert problems(overlay_objects[overlay], crds) == []


def test_example_objects_match_their_schemas(
    example_objects: dict[str, list[checks.Obj]], crds: checks.CrdSchemas
) -> None:
    kinds = {o["kind"] for objs in example_objects.values() for o in objs}
    assert {"Model", "Experiment", "RayJob", "CronJob"} <= kinds
    for objs in example_objects.values():
        assert problems(objs, crds) == []


def test_canary_example_is_a_weighted_experiment_over_two_models(
    example_objects: dict[str, list[checks.Obj]],
) -> None:
    objs = {o["kind"] + "/" + o["metadata"]["name"]: o for o in example_objects["canary"]}
    exp = objs["Experiment/churn-canary"]["spec"]
    names = [c["name"] for c in exp["candidates"]]
    assert sorted(names) == ["churn-v1", "churn-v2"] and exp["default"] == "churn-v1"
    assert sum(c["weight"] for c in exp["candidates"]) == 100
    for name in names:
        assert objs[f"Model/{name}"]["spec"]["server"] == "mainsail-serving"


def _set(path: list[Any], value: Any) -> Callable[[checks.Obj], None]:
    def fn(obj: checks.Obj) -> None:
        node = obj
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return fn


@pytest.mark.parametrize(
    ("kind", "path", "value", "expected"),
    [
        ("Deployment", ["spec", "replicas"], "two", "spec.replicas"),
        ("Deployment", ["spec", "template", "spec", "containerz"], [], "containerz"),
        ("Service", ["spec", "ports", 0, "port"], "http", "spec.ports.0.port"),
        ("NetworkPolicy", ["spec", "policyTypes"], "Ingress", "spec.policyTypes"),
        ("Role", ["rules", 0, "verbs"], "patch", "rules.0.verbs"),
    ],
)
def test_broken_builtin_object_is_rejected(
    default_objects: list[checks.Obj],
    crds: checks.CrdSchemas,
    kind: str,
    path: list[Any],
    value: Any,
    expected: str,
) -> None:
    broken = checks.mutate(default_objects, kind, _set(path, value))
    found = problems(broken, crds)
    assert len(found) == 1 and expected in found[0], found


@pytest.mark.parametrize(
    ("kind", "path", "value", "expected"),
    [
        ("RayCluster", ["spec", "workerGroupSpecs", 0, "replicas"], "two", "replicas"),
        ("RayCluster", ["spec", "headGroupSpec", "rayStartParam"], {}, "rayStartParam"),
        ("Server", ["spec", "podSpec", "containers", 0, "imagee"], "x", "imagee"),
        ("Server", ["spec", "serverConfig"], 3, "serverConfig"),
        ("PrometheusRule", ["spec", "groups", 0, "rules", 0, "forr"], "5m", "forr"),
        ("ServiceMonitor", ["spec", "endpoints", 0, "interval"], 30, "interval"),
        ("PodMonitor", ["spec", "podMetricsEndpoints"], {}, "podMetricsEndpoints"),
    ],
)
def test_custom_resource_that_does_not_match_its_crd_is_rejected(
    default_objects: list[checks.Obj],
    crds: checks.CrdSchemas,
    kind: str,
    path: list[Any],
    value: Any,
    expected: str,
) -> None:
    broken = checks.mutate(default_objects, kind, _set(path, value))
    found = problems(broken, crds)
    assert found and all(expected in p for p in found), found


def test_broken_example_experiment_is_rejected(
    example_objects: dict[str, list[checks.Obj]], crds: checks.CrdSchemas
) -> None:
    broken = checks.mutate(
        example_objects["canary"], "Experiment", _set(["spec", "candidates", 0, "weight"], "90%")
    )
    assert any("candidates.0.weight" in p for p in problems(broken, crds))
    missing = checks.mutate(
        example_objects["canary"], "Model", lambda o: o["spec"].pop("storageUri")
    )
    assert any("storageUri" in p for p in problems(missing, crds))


def test_unknown_custom_kind_is_a_problem_not_a_pass(crds: checks.CrdSchemas) -> None:
    obj = {"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Modle", "metadata": {"name": "x"}}
    assert problems([obj], crds) and "no CRD" in problems([obj], crds)[0]
