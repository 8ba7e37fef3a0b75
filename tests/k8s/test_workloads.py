"""Every workload (Deployments, KubeRay pods, the Seldon Server pod, example jobs) meets Pod
Security "restricted", has requests and limits, probes and the app.kubernetes.io labels."""

from __future__ import annotations

import pytest

from . import checks
from .conftest import SCENARIOS

pytestmark = pytest.mark.k8s


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_chart_workloads_meet_the_restricted_profile_and_basics(
    scenario: str, scenario_objects: dict[str, list[checks.Obj]]
) -> None:
    objs = scenario_objects[scenario]
    assert any(True for o in objs for _ in checks.pod_specs(o))
    assert checks.workload_violations(objs) == []


@pytest.mark.parametrize("overlay", checks.OVERLAYS)
def test_overlay_workloads_meet_the_restricted_profile_and_basics(
    overlay: str, overlay_objects: dict[str, list[checks.Obj]]
) -> None:
    assert checks.workload_violations(overlay_objects[overlay]) == []


def test_example_workloads_meet_the_restricted_profile_and_basics(
    example_objects: dict[str, list[checks.Obj]],
) -> None:
    for objs in example_objects.values():
        assert checks.workload_violations(objs) == []


def test_every_pod_spec_kind_is_found(default_objects: list[checks.Obj]) -> None:
    wheres = [r.where for o in default_objects for r in checks.pod_specs(o)]
    assert any(w.startswith("Server/") for w in wheres)
    assert any(w.endswith("head") for w in wheres)
    assert any("worker gpu" in w for w in wheres)
    assert sum(w.startswith("Deployment/") for w in wheres) == 5


def _container(obj: checks.Obj) -> checks.Obj:
    ref = next(checks.pod_specs(obj))
    return ref.spec["containers"][0]


BREAKS = {
    "runAsNonRoot": lambda o: (
        _container(o)["securityContext"].pop("runAsNonRoot"),
        (next(checks.pod_specs(o)).spec.get("securityContext") or {}).pop("runAsNonRoot", None),
    ),
    "allowPrivilegeEscalation": lambda o: _container(o)["securityContext"].update(
        allowPrivilegeEscalation=True
    ),
    "capabilities": lambda o: _container(o)["securityContext"]["capabilities"].update(
        drop=["NET_RAW"]
    ),
    "seccompProfile": lambda o: _container(o)["securityContext"].update(
        seccompProfile={"type": "Unconfined"}
    ),
    "privileged": lambda o: _container(o)["securityContext"].update(privileged=True),
    "readOnlyRootFilesystem": lambda o: _container(o)["securityContext"].update(
        readOnlyRootFilesystem=False
    ),
    "hostNetwork": lambda o: next(checks.pod_specs(o)).spec.update(hostNetwork=True),
    "volume": lambda o: (
        next(checks.pod_specs(o))
        .spec["volumes"]
        .append({"name": "host", "hostPath": {"path": "/"}})
    ),
    "limits.memory": lambda o: _container(o)["resources"]["limits"].pop("memory"),
    "requests.cpu": lambda o: _container(o)["resources"]["requests"].pop("cpu"),
    "livenessProbe": lambda o: _container(o).pop("livenessProbe"),
    "readinessProbe": lambda o: _container(o).pop("readinessProbe"),
    "app.kubernetes.io/component": lambda o: o["metadata"]["labels"].pop(
        "app.kubernetes.io/component"
    ),
}


@pytest.mark.parametrize("kind", ["Deployment", "RayCluster", "Server"])
@pytest.mark.parametrize("what", sorted(BREAKS))
def test_broken_workload_is_caught(default_objects: list[checks.Obj], kind: str, what: str) -> None:
    broken = checks.mutate(default_objects, kind, BREAKS[what])
    found = checks.workload_violations(broken)
    assert found, f"breaking {what} of a {kind} went unnoticed"
    # The seccomp break and hostPath volume words differ from the key; others name it.
    words = {"volume": "hostPath", "seccompProfile": "seccompProfile", "privileged": "privileged"}
    assert any(words.get(what, what.split(".")[-1]) in p for p in found), found


def test_writable_root_needs_an_annotation_with_a_reason(default_objects: list[checks.Obj]) -> None:
    broken = checks.mutate(default_objects, "Deployment", BREAKS["readOnlyRootFilesystem"])
    assert checks.workload_violations(broken)

    def annotate(o: checks.Obj) -> None:
        BREAKS["readOnlyRootFilesystem"](o)
        o["metadata"]["annotations"][checks.WRITABLE_ROOT_ANNOTATION] = "writes its cache to /"

    assert checks.workload_violations(checks.mutate(default_objects, "Deployment", annotate)) == []


def test_pod_template_without_labels_is_caught(default_objects: list[checks.Obj]) -> None:
    broken = checks.mutate(
        default_objects,
        "RayCluster",
        lambda o: o["spec"]["headGroupSpec"]["template"]["metadata"].update(labels={}),
    )
    assert any("pod template: no label" in p for p in checks.workload_violations(broken))


def test_batch_pods_are_exempt_from_probes(example_objects: dict[str, list[checks.Obj]]) -> None:
    cron = next(o for o in example_objects["pipelines"] if o["kind"] == "CronJob")
    assert [r.long_running for r in checks.pod_specs(cron)] == [False]
    job = next(checks.pod_specs(cron))
    job.spec["containers"][0].pop("readinessProbe", None)
    assert checks.probe_violations(job) == []
    job.long_running = True
    assert checks.probe_violations(job)
