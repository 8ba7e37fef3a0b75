"""`mainsail monitoring demo-drift`: the drift-to-retraining chain, narrated with timestamps.

Starts the sidecar, Prometheus, Alertmanager and the trigger (see :mod:`mainsail.monitor.chain`)
on a churn reference, sends normal traffic, then drifted traffic from the generator's drift
knob, and prints what each part does: the drift metrics, the alert going pending and firing, and
the retraining run the trigger starts.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mainsail.demos.churn import churn_rows, write_churn_reference
from mainsail.drift.client import DriftFeed
from mainsail.monitor.chain import ChainSettings, MonitoringChain
from mainsail.monitor.rules import RETRAIN_ALERT

__all__ = ["run_drift_demo"]

#: The default retraining "run" of the demo: prints what a real run would receive.
ECHO_RUN = (
    "import sys; print('retraining run for model', sys.argv[1], 'version', sys.argv[2], "
    "'with the drifted window', sys.argv[3])"
)


def _value(series: list[dict[str, Any]]) -> float | None:
    return float(series[0]["value"][1]) if series else None


def run_drift_demo(
    *,
    drift: float = 0.6,
    rows: int = 800,
    run_config: Path | None = None,
    workdir: Path | None = None,
    echo: Callable[[str], None] = print,
    timeout_s: float = 120.0,
) -> dict[str, Any]:
    """Run the demo; returns what happened (for tests)."""
    t0 = time.monotonic()

    def say(message: str) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        echo(f"[{stamp} +{time.monotonic() - t0:5.1f}s] {message}")

    temp = None
    if workdir is None:
        temp = tempfile.mkdtemp(prefix="mainsail-drift-demo-")
        workdir = Path(temp)
    if run_config is not None:
        command = [sys.executable, "-m", "mainsail.cli", "run", str(run_config.resolve())]
    else:
        command = [sys.executable, "-c", ECHO_RUN, "{model}", "{version}", "{window}"]
    write_churn_reference(workdir / "refs" / "churn" / "1", rows=5000)
    settings = ChainSettings(
        reference=str(workdir / "refs" / "{model}" / "{version}"), retrain_command=command
    )
    out: dict[str, Any] = {}
    try:
        say(f"starting drift sidecar, Prometheus, Alertmanager and retrain trigger in {workdir}")
        with MonitoringChain(workdir / "chain", settings) as chain:
            say(
                f"sidecar {chain.sidecar.url}, Prometheus {chain.prometheus.url}, "
                f"trigger {chain.trigger_server.url}"
            )
            feed = DriftFeed(chain.sidecar.url)

            def send(drift_level: float, seed: int) -> None:
                batch, preds = churn_rows(rows, drift=drift_level, seed=seed)
                for i in range(0, rows, 100):
                    feed.submit("churn", "1", batch[i : i + 100], preds[i : i + 100])
                    feed.flush(30)
                    time.sleep(0.3)

            say(f"phase 1: {rows} rows of normal traffic (drift=0.0)")
            send(0.0, 11)
            # Wait until Prometheus has scraped the checks of the normal traffic.
            expected = rows // int(str(settings.sidecar["check_every_rows"]))
            deadline = time.monotonic() + timeout_s
            checks = None
            while time.monotonic() < deadline:
                checks = _value(chain.query('mainsail_drift_checks_total{version="1"}'))
                if checks is not None and checks >= expected:
                    break
                time.sleep(0.5)
            min_p = _value(chain.query('min(mainsail_drift_feature_p_value{version="1"})'))
            row = _value(chain.query('mainsail_drift_row_is_drift{version="1"}'))
            shown = "n/a" if min_p is None else f"{min_p:.3g}"
            say(f"  checks so far: {checks}, smallest feature p-value {shown}, row drift {row}")
            out["normal"] = {"row_is_drift": row, "min_p_value": min_p}

            say(f"phase 2: {rows} rows of drifted traffic (drift={drift})")
            send(drift, 12)
            deadline = time.monotonic() + timeout_s
            seen_state = ""
            while time.monotonic() < deadline:
                drifted = chain.query('mainsail_drift_feature_is_drift{version="1"} == 1')
                consecutive = _value(
                    chain.query('mainsail_drift_consecutive_drifted_checks{version="1"}')
                )
                alerts = [
                    a
                    for a in chain.prometheus.alerts()
                    if a["labels"]["alertname"] == RETRAIN_ALERT
                ]
                state = alerts[0]["state"] if alerts else "inactive"
                if state != seen_state:
                    names = sorted(s["metric"]["feature"] for s in drifted)
                    say(
                        f"  drifted features {names}; consecutive drifted checks {consecutive}; "
                        f"alert {RETRAIN_ALERT}: {state}"
                    )
                    seen_state = state
                runs = chain.trigger.runs()
                if runs:
                    run_id, run = next(iter(runs.items()))
                    say(f"retraining run {run_id} started ({run.get('action')}): {run.get('argv')}")
                    say(f"  drifted window saved at {run.get('window')}; log {run.get('log')}")
                    out["run"] = run
                    break
                time.sleep(0.5)
            else:
                say("no retraining run started within the time limit")
            feed.close()
            time.sleep(1)
        say("stopped the demo processes")
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
    return out
