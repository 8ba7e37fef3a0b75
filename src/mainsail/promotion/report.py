"""The shadow stage's report: a self-contained HTML page with its plot, beside the deployed card.

Written by the promotion controller whenever the shadow gate decides (pass or stop), next to the
deployed model card (`<data_dir>/deployments/<model>-v<version>-shadow-report.html`): the gate's
verdict and reason, the paired numbers with their always-valid intervals, and one figure with
the disagreement rate and its interval at every look (the gate's limit drawn in) and the latency
p50 / p99 of both sides.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

__all__ = ["shadow_figure", "write_shadow_report"]


def shadow_figure(report: dict[str, Any], max_disagreement: float | None = None) -> bytes:
    """The report's figure as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = report.get("history") or []
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    points = [h for h in history if h.get("disagreement") is not None]
    if points:
        x = [h["pairs"] for h in points]
        y = [h["disagreement"] for h in points]
        low = [h["ci_low"] if h["ci_low"] is not None else h["disagreement"] for h in points]
        high = [h["ci_high"] if h["ci_high"] is not None else h["disagreement"] for h in points]
        left.errorbar(
            x,
            y,
            yerr=[
                [max(0.0, v - lo) for v, lo in zip(y, low, strict=True)],
                [max(0.0, hi - v) for v, hi in zip(y, high, strict=True)],
            ],
            marker="o",
            capsize=4,
            color="#3b75af",
            label="disagreement, always-valid 95% interval",
        )
        left.fill_between(x, low, high, color="#3b75af", alpha=0.15)
    if max_disagreement is not None:
        left.axhline(max_disagreement, color="#a11", linestyle="--", label="gate limit")
    left.set_xlabel("paired answers")
    left.set_ylabel("disagreement rate")
    left.set_title("Challenger vs champion, same requests")
    left.legend(loc="best", fontsize=8)
    lat = report.get("latency_s") or {}
    names = ["p50", "p99"]
    for i, (side, colour) in enumerate((("champion", "#777"), ("challenger", "#3b75af"))):
        values = [(lat.get(side) or {}).get(q) or 0.0 for q in names]
        right.bar(
            [j + 0.38 * i for j in range(len(names))],
            [v * 1000 for v in values],
            0.38,
            label=side,
            color=colour,
        )
    right.set_xticks([j + 0.19 for j in range(len(names))], names)
    right.set_ylabel("latency (ms)")
    right.set_title("Latency of paired requests")
    right.legend(loc="best", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _interval(est: dict[str, Any] | None, pct: bool = False) -> str:
    if not est:
        return "–"

    def f(v: Any) -> str:
        if v is None:
            return "–"
        return f"{v:.2%}" if pct else f"{v:.4g}"

    return f"{f(est['estimate'])} [{f(est.get('ci_low'))}, {f(est.get('ci_high'))}] (n={est['n']})"


def write_shadow_report(
    path: Path,
    model: str,
    version: str,
    report: dict[str, Any],
    reason: str,
    max_disagreement: float | None = None,
) -> Path:
    """Write the report (atomically); the figure is a data: URI, so it opens with no network."""
    png = base64.b64encode(shadow_figure(report, max_disagreement)).decode()
    lat = report.get("latency_s") or {}
    diff = report.get("latency_diff_s") or {}
    err = report.get("error_rate") or {}

    def ms(v: Any) -> str:
        return "–" if v is None else f"{v * 1000:.2f} ms"

    rows = [
        ("gate", report.get("gate")),
        ("paired answers (rows)", report.get("pairs")),
        ("paired requests", report.get("requests")),
        ("labelled paired rows", report.get("labelled")),
        ("disagreement rate", _interval(report.get("disagreement"), pct=True)),
        ("prediction delta (challenger - champion)", _interval(report.get("prediction_delta"))),
        ("mean |prediction delta|", report.get("mean_abs_delta")),
        ("loss delta on labelled pairs", _interval(report.get("loss_delta"))),
        ("error rate champion / challenger", f"{err.get('champion')} / {err.get('challenger')}"),
        ("error-rate difference", _interval(report.get("error_delta"), pct=True)),
        (
            "latency p50 champion / challenger / diff",
            f"{ms((lat.get('champion') or {}).get('p50'))} / "
            f"{ms((lat.get('challenger') or {}).get('p50'))} / {ms(diff.get('p50'))}",
        ),
        (
            "latency p99 champion / challenger / diff",
            f"{ms((lat.get('champion') or {}).get('p99'))} / "
            f"{ms((lat.get('challenger') or {}).get('p99'))} / {ms(diff.get('p99'))}",
        ),
        ("unpaired (champion / challenger)", str(report.get("unpaired"))),
    ]
    table = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Shadow report: {html.escape(model)} v{html.escape(version)}</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1000px}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        "table{border-collapse:collapse}</style></head><body>"
        f"<h1>Shadow stage of {html.escape(model)} v{html.escape(version)}</h1>"
        f"<p><b>{html.escape(reason)}</b></p>"
        f"<table>{table}</table>"
        f"<p><img alt='shadow plot' src='data:image/png;base64,{png}'></p>"
        "<p>Intervals are always-valid 95% confidence sequences, intersected over looks: the "
        "gate may look after every batch.</p></body></html>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page)
    tmp.replace(path)
    return path
