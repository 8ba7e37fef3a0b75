"""`mainsail feedback` sends ground truth to a real router, which stores it durably."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from mainsail.feedback.store import FeedbackStore, PredictionRecord
from mainsail.serving.router.app import RouterSettings, create_router
from tests.support.router import ServerThread

MAINSAIL = Path(sys.executable).parent / "mainsail"


def test_feedback_command_posts_labels_and_reports_counts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fb.db'}"
    store = FeedbackStore(url)
    store.record_predictions(
        [PredictionRecord(f"r{i}", "churn", "champion", "1", "1", 0.8, 0.01) for i in range(3)]
    )
    settings = RouterSettings.model_validate(
        {
            "model_name": "churn",
            "variants": [{"role": "champion", "url": "http://127.0.0.1:9", "model": "churn"}],
            "feedback_url": url,
        }
    )
    server = ServerThread(create_router(settings)).start()
    config = tmp_path / "p.yaml"
    config.write_text(yaml.safe_dump({"name": "churn", "data": {"path": "x.csv", "target": "y"}}))
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,label\nr0,1\nr1,0\nnever-served,1\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,label\nr2,1\n")
    try:
        ok = subprocess.run(
            [str(MAINSAIL), "feedback", str(config), str(labels), "--router", server.url],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ok.returncode == 0, ok.stderr
        assert "2 accepted, 1 unknown request ids, 0 already labelled" in ok.stdout
        refused = subprocess.run(
            [str(MAINSAIL), "feedback", str(config), str(bad), "--router", server.url],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert refused.returncode == 2
        assert "missing column(s) ['request_id']" in refused.stderr
    finally:
        server.stop()
    assert store.quality("churn", "champion", "classification")["labelled"] == 2.0
    store.close()
