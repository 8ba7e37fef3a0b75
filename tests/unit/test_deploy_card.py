"""The model card's deployment fields are filled from a measured load run.

The load run is real: closed-loop HTTP requests against a V2 server on loopback.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from mainsail.deploy.load import measure
from mainsail.evaluate.card import CardError, LoadFigures, fill_deployment
from tests.support.router import ServerThread, V2Upstream, infer_body


def _card(path: Path) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "model": {"name": "churn", "version": "3"},
                "deployment": {"endpoint": None, "latency_p95": None, "throughput": None},
                "limitations": ["kept as is"],
            }
        )
    )
    return path


def test_measured_figures_land_in_the_card() -> None:
    upstream = V2Upstream(delay_s=0.004)
    server = ServerThread(upstream).start()
    try:
        url = f"{server.url}/v2/models/churn/infer"
        figures = measure(url, infer_body(), duration_s=1.0, concurrency=4)
    finally:
        server.stop()
    assert figures.errors == 0
    assert figures.requests == len(upstream.received)
    # Each request sleeps 4 ms in the server: latency cannot be lower, throughput cannot exceed
    # 4 clients / 4 ms.
    assert 4.0 <= figures.latency_p50_ms <= figures.latency_p95_ms <= figures.latency_p99_ms
    assert 0 < figures.throughput_rps <= 1000
    assert abs(figures.throughput_rps * figures.duration_s - figures.requests) < 1


def test_fill_deployment_writes_only_the_deployment_section(tmp_path: Path) -> None:
    card = _card(tmp_path / "model_card.yaml")
    figures = LoadFigures("http://h:1/v2/models/churn/infer", 3.0, 7.5, 9.0, 420.0, 840, 0, 2.0, 8)
    out = fill_deployment(card, figures, tmp_path / "out" / "card.yaml", endpoint="http://r/x")
    written = yaml.safe_load(out.read_text())
    assert written["deployment"]["endpoint"] == "http://r/x"
    assert written["deployment"]["latency_p95"] == 7.5
    assert written["deployment"]["throughput"] == 420.0
    assert written["deployment"]["measured"]["url"] == figures.endpoint
    assert written["deployment"]["measured"]["requests"] == 840
    assert written["limitations"] == ["kept as is"]
    assert yaml.safe_load(card.read_text())["deployment"]["endpoint"] is None  # source untouched


def test_unusable_figures_or_cards_are_refused(tmp_path: Path) -> None:
    card = _card(tmp_path / "model_card.yaml")
    good = LoadFigures("http://h/x", 3.0, 7.5, 9.0, 420.0, 840, 0, 2.0, 8)
    with pytest.raises(CardError, match="latency_p95_ms must be a positive number"):
        fill_deployment(card, replace(good, latency_p95_ms=float("nan")))
    with pytest.raises(CardError, match="no successful request"):
        fill_deployment(card, replace(good, requests=5, errors=5))
    (tmp_path / "bad.yaml").write_text("model: {}\n")
    with pytest.raises(CardError, match="no `deployment` section"):
        fill_deployment(tmp_path / "bad.yaml", good)
    assert yaml.safe_load(card.read_text())["deployment"]["latency_p95"] is None
