"""Mainsail's feature server (`python -m mainsail.features.api`, started as a subprocess on a
free port) against the real online stores (SQLite, Redis): the same vectors as the in-process
lookup through the unchanged HTTP client, a token on every lookup, and a 4xx naming the fault
for every malformed request.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from mainsail.config import ProjectConfig
from mainsail.core.ports import free_port
from mainsail.features.http import HttpLookup
from mainsail.features.online import SdkLookup, spec_for
from mainsail.features.server import FeatureServer
from tests.support.feast import ACTIVITY, PROFILE, T0, clock_at

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = secrets.token_urlsafe(16)


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ProjectConfig, Path, FeatureServer]]:
    cfg, repo = request.getfixturevalue(f"{request.param}_repo")
    config = tmp_path_factory.mktemp("api") / "mainsail.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    server = FeatureServer(repo, port=free_port(), engine="mainsail", config=config, token=TOKEN)
    server.start(timeout_s=120)
    yield cfg, repo, server
    server.stop()


def test_the_http_client_gets_from_it_what_the_in_process_lookup_gets(
    api: tuple[ProjectConfig, Path, FeatureServer],
) -> None:
    cfg, repo, server = api
    spec = spec_for(cfg, repo)
    ids = ["FRESH", "OLD", "NOBODY", "C0000003", "C0000010"]
    clock = clock_at(T0)
    with HttpLookup(server.url, spec, clock=clock, token=TOKEN) as http:
        over_http = http.get(ids)
    in_process = SdkLookup.from_config(cfg, repo, clock=clock).get(ids)
    assert over_http.rows == in_process.rows
    assert over_http.missing == in_process.missing
    assert over_http.unknown == ["NOBODY"] == in_process.unknown
    assert over_http.stale == in_process.stale >= 4  # OLD's activity view is past its TTL
    assert over_http.rows[0]["charge_per_month"] == pytest.approx(50.0)


def test_it_answers_in_feasts_format_to_a_feature_service_request(
    api: tuple[ProjectConfig, Path, FeatureServer],
) -> None:
    cfg, repo, server = api
    spec = spec_for(cfg, repo)
    body = {"feature_service": spec.service, "entities": {spec.entity_key: ["FRESH", "NOBODY"]}}
    answer = httpx.post(
        f"{server.url}/get-online-features",
        json=body,
        headers={"authorization": f"Bearer {TOKEN}"},
    ).json()
    names = answer["metadata"]["feature_names"]
    assert names == [spec.entity_key, *(name for _, name in spec.features)]
    entity, *columns = answer["results"]
    assert entity["values"] == ["FRESH", "NOBODY"]
    for column in columns:
        assert column["statuses"][1] == "NOT_FOUND" and column["values"][1] is None
        assert column["event_timestamps"][1] is None
    assert {c["statuses"][0] for c in columns} == {"PRESENT"}
    stamps = dict(zip(names[1:], (c["event_timestamps"][0] for c in columns), strict=True))
    for stored in PROFILE + ACTIVITY:  # the views' features; a derived one has no event time
        assert stamps[stored].endswith("Z"), stamps


def test_every_lookup_needs_its_token_and_health_does_not(
    api: tuple[ProjectConfig, Path, FeatureServer],
) -> None:
    cfg, repo, server = api
    spec = spec_for(cfg, repo)
    body = {"feature_service": spec.service, "entities": {spec.entity_key: ["FRESH"]}}
    url = f"{server.url}/get-online-features"
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}):
        refused = httpx.post(url, json=body, headers=headers)
        assert refused.status_code == 401 and "Bearer" in refused.json()["error"]
        assert "FRESH" not in refused.text
    assert httpx.get(f"{server.url}/health").status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 400, "body: not JSON"),
        (b"[1, 2]", 400, "expected a JSON object"),
        (b'{"entities": {"customer_id": ["FRESH"]}}', 400, "either 'feature_service'"),
        (b'{"feature_service": "other", "entities": {}}', 404, "'other' is not served"),
        (b'{"features": ["profile:nope"], "entities": {}}', 400, "features[0]: 'profile:nope'"),
        (b'{"features": ["profile:plan"], "entities": {"user": [1]}}', 400, "['user']"),
        (b'{"features": ["profile:plan"], "entities": {"customer_id": "x"}}', 400, "a list"),
        (b'{"features": ["profile:plan"], "entities": {"customer_id": [1]}}', 400, "id #0"),
    ],
)
def test_a_malformed_request_gets_a_4xx_naming_the_fault(
    api: tuple[ProjectConfig, Path, FeatureServer], body: bytes, status: int, says: str
) -> None:
    _, _, server = api
    answer = httpx.post(
        f"{server.url}/get-online-features",
        content=body,
        headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/json"},
    )
    assert answer.status_code == status, answer.text
    assert says in answer.json()["error"], answer.text
