"""The gateway's feedback writer at shut-down: nothing it answered is left unrecorded.

On kind, the gateway's pod replaced right after answering lost the last predictions (10 of 40):
its writer was cancelled in the middle of a write, whose batch was then neither in the store
nor in the queue. Now the writer ends after the write in progress, and what is still queued is
written, again while the store refuses it, before the store is closed.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from mainsail.feedback.store import FeedbackStore
from mainsail.serving.router.feedback import FeedbackRecorder

ANSWER = json.dumps(
    {
        "model_name": "churn",
        "parameters": {"classes": ["0", "1"]},
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["1"]},
            {"name": "probability", "datatype": "FP64", "shape": [1], "data": [0.8]},
        ],
    }
).encode()


def _recorder(tmp_path: Path) -> tuple[FeedbackRecorder, str]:
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    return FeedbackRecorder(url, "churn", "classification", "1", CollectorRegistry()), url


def _stored(url: str) -> int:
    store = FeedbackStore(url)
    try:
        return store.requests_per_variant("churn").get("champion", 0)
    finally:
        store.close()


def test_stop_during_a_slow_write_returns_once_everything_is_recorded(tmp_path: Path) -> None:
    recorder, url = _recorder(tmp_path)
    write = recorder.store.record_predictions
    writing = threading.Event()

    def slow(records: Any) -> int:
        writing.set()
        time.sleep(0.5)
        return write(records)

    recorder.store.record_predictions = slow  # type: ignore[method-assign]

    async def scenario() -> None:
        await recorder.start()
        for i in range(10):
            recorder.observe(f"r{i}", "champion", "1", 200, ANSWER, 0.01)
        await asyncio.to_thread(writing.wait, 5)  # the writer holds the batch, mid-write
        for i in range(10, 15):
            recorder.observe(f"r{i}", "champion", "1", 200, ANSWER, 0.01)
        await recorder.stop()

    asyncio.run(scenario())
    assert _stored(url) == 15


def test_stop_retries_while_the_store_refuses_the_last_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder, url = _recorder(tmp_path)
    write = recorder.store.record_predictions
    refusals = [2]

    def flaky(records: Any) -> int:
        if refusals[0] > 0:
            refusals[0] -= 1
            raise ConnectionError("connection refused")
        return write(records)

    recorder.store.record_predictions = flaky  # type: ignore[method-assign]

    async def scenario() -> None:
        for i in range(5):
            recorder.observe(f"r{i}", "champion", "1", 200, ANSWER, 0.01)
        await recorder.stop(attempts=5, wait_s=0.05)

    asyncio.run(scenario())
    assert _stored(url) == 5
    assert refusals == [0]
