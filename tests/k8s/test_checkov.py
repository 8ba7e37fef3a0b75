"""checkov (Kubernetes framework) finds nothing unexplained in what we ship, and does find the
problems of a deliberately broken Deployment. One checkov run per session (it is slow)."""

from __future__ import annotations

from typing import Any

import pytest

from . import checks

SHIPPED = ["chart", "overlay-kind", "overlay-production", "overlay-staging", "examples"]

pytestmark = [pytest.mark.k8s, pytest.mark.slow]


@pytest.mark.parametrize("folder", [*SHIPPED, "broken"])
def test_checkov_scanned_every_folder(checkov_reports: dict[str, Any], folder: str) -> None:
    # A folder checkov could not parse would otherwise pass "no failed check" trivially.
    assert len(checkov_reports[folder]["passed"]) >= 5


@pytest.mark.parametrize("folder", SHIPPED)
def test_no_failed_checkov_check(checkov_reports: dict[str, Any], folder: str) -> None:
    failed = checkov_reports[folder]["failed"]
    assert [(f["check_id"], f["resource"], f["check_name"]) for f in failed] == []


def test_every_checkov_suppression_carries_a_reason_in_the_chart(
    checkov_reports: dict[str, Any],
) -> None:
    skipped = [s for r in checkov_reports.values() for s in r["skipped"]]
    assert skipped, "expected the documented suppressions (image digest, pull policy)"
    for entry in skipped:
        reason = (entry.get("check_result") or {}).get("suppress_comment") or ""
        assert len(reason.split()) >= 5, f"{entry['check_id']} on {entry['resource']}: {reason!r}"
    chart_text = "\n".join(p.read_text() for p in (checks.CHART / "templates").iterdir())
    for entry in checkov_reports["chart"]["skipped"]:
        assert f"{entry['check_id']}=" in chart_text


def test_checkov_fails_a_broken_deployment(checkov_reports: dict[str, Any]) -> None:
    failed = {f["check_id"] for f in checkov_reports["broken"]["failed"]}
    # privileged, privilege escalation, no limits/requests, no probes, latest tag, default SA...
    assert {"CKV_K8S_16", "CKV_K8S_20", "CKV_K8S_14"} <= failed, failed
