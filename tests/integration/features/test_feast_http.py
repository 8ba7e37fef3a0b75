"""The HTTP path: `feast serve` started as a subprocess on a free port (real gunicorn/uvicorn
feature server), the mainsail HTTP client, and the fallback policy when the server is gone.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from mainsail.config import ProjectConfig
from mainsail.core.ports import free_port
from mainsail.features.errors import FeatureStoreError, OnlineStoreUnavailableError
from mainsail.features.http import HttpLookup
from mainsail.features.metrics import FeatureMetrics
from mainsail.features.online import SdkLookup, open_lookup, spec_for
from mainsail.features.server import FeatureServer
from tests.support.feast import T0, clock_at

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(sqlite_repo: tuple[ProjectConfig, Path]) -> Iterator[FeatureServer]:
    cfg, repo = sqlite_repo
    srv = FeatureServer(repo, port=free_port())
    spec = spec_for(cfg, repo)
    srv.start(
        timeout_s=120,
        warmup={"feature_service": spec.service, "entities": {spec.entity_key: ["FRESH"]}},
    )
    yield srv
    srv.stop()


def test_http_lookup_matches_the_in_process_lookup(
    sqlite_repo: tuple[ProjectConfig, Path], server: FeatureServer
) -> None:
    cfg, repo = sqlite_repo
    spec = spec_for(cfg, repo)
    ids = ["FRESH", "OLD", "NOBODY", "C0000003", "C0000010"]
    clock = clock_at(T0)
    metrics = FeatureMetrics(CollectorRegistry())
    with HttpLookup(server.url, spec, clock=clock, metrics=metrics) as http:
        over_http = http.get(ids)
    in_process = SdkLookup.from_config(cfg, repo, clock=clock).get(ids)
    via_factory = open_lookup(cfg, repo, url=server.url)
    assert isinstance(via_factory, HttpLookup)
    # Real clock: today FRESH's 2025 values are past both TTLs, found but stale.
    today = via_factory.get(["FRESH"])
    assert today.unknown == [] and today.stale == len(today.feature_names) - 1
    assert over_http.rows == in_process.rows
    assert over_http.missing == in_process.missing
    assert over_http.unknown == ["NOBODY"] == in_process.unknown
    assert over_http.stale == in_process.stale >= 4  # OLD's activity view is past its TTL
    assert "monthly_charges" in over_http.missing[1]
    assert over_http.rows[0]["charge_per_month"] == pytest.approx(50.0)
    stale = metrics.registry.get_sample_value(
        "mainsail_feature_stale_values_total", {"view": "activity"}
    )
    assert stale == over_http.stale


def test_feature_server_answers_a_malformed_request_with_4xx_and_the_client_says_so(
    sqlite_repo: tuple[ProjectConfig, Path], server: FeatureServer
) -> None:
    cfg, repo = sqlite_repo
    response = httpx.post(f"{server.url}/get-online-features", json={"entities": "nope"})
    assert 400 <= response.status_code < 500
    spec = spec_for(cfg, repo)
    # The client names the service's features (`view:feature`); a view the server's registry
    # does not hold is refused.
    wrong = type(spec)(
        **{
            **spec.__dict__,
            "features": (("no_such_view", "tenure_months"),),
            "ttl_s": {"no_such_view": 60.0},
            "derived_inputs": {},
        }
    )
    with (
        HttpLookup(server.url, wrong) as http,
        pytest.raises((FeatureStoreError, OnlineStoreUnavailableError)),
    ):
        http.get(["FRESH"])


def test_http_client_module_imports_without_feast(sqlite_repo: tuple[ProjectConfig, Path]) -> None:
    # The serving env cannot install Feast: the client must not pull it in.
    code = (
        "import sys; import mainsail.features.http, mainsail.features.freshness; "
        "import mainsail.features.metrics; "
        "bad = [m for m in ('feast', 'pandas', 'pyarrow') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_server_gone_follows_the_fallback_policy(sqlite_repo: tuple[ProjectConfig, Path]) -> None:
    cfg, repo = sqlite_repo
    spec = spec_for(cfg, repo)
    dead = f"http://127.0.0.1:{free_port()}"
    with (
        HttpLookup(dead, spec, fallback="fail") as http,
        pytest.raises(OnlineStoreUnavailableError, match="unreachable") as info,
    ):
        http.get(["FRESH"])
    assert info.value.status_code == 503
    metrics = FeatureMetrics(CollectorRegistry())
    with HttpLookup(
        dead, spec, fallback="impute", imputation={"plan": "basic"}, metrics=metrics
    ) as http:
        result = http.get(["FRESH"])
    assert result.fallback and result.rows[0]["plan"] == "basic"
    assert result.rows[0]["tenure_months"] is None
    count = metrics.registry.get_sample_value(
        "mainsail_feature_fallback_total", {"reason": "feature_server_unreachable"}
    )
    assert count == 1


def test_stopping_the_server_leaves_no_process_behind(server: FeatureServer) -> None:
    # Runs last in this module: stops the shared server (the fixture's stop is then a no-op).
    assert server.process is not None
    pid = server.process.pid
    server.stop()
    alive = subprocess.run(["pgrep", "-g", str(pid)], capture_output=True, text=True)
    assert alive.stdout.strip() == ""
