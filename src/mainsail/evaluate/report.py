"""Self-contained HTML report of a training run: tables, comparisons, inlined PNG plots."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import pandas as pd

from mainsail.config import ProjectConfig
from mainsail.data.prepared import DataStageResult
from mainsail.evaluate.compare import Selection

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.ok{color:#176317;font-weight:bold}.bad{color:#a11;font-weight:bold}img{max-width:480px;margin:6px}
pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:12px}"""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if v is None:
        return "–"
    return html.escape(str(v))


def _table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    if not rows:
        return "<p>(none)</p>"
    cols = columns or list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(
    path: Path,
    *,
    cfg: ProjectConfig,
    data: DataStageResult,
    card: dict[str, Any],
    selection: Selection,
    test_metrics: dict[str, dict[str, float]],
    cv_summary: dict[str, dict[str, dict[str, float]]],
    tuned: dict[str, Any],
    importance: pd.DataFrame,
    plots: dict[str, Path],
) -> Path:
    """Write the report; every image is a data: URI, so it opens with no network."""
    metric = selection.metric
    verdict = (
        f'<p class="ok">Selected: {html.escape(selection.chosen)}</p>'
        if selection.chosen
        else '<p class="bad">No model selected</p>'
    )
    cand_rows = []
    for fam, tm in test_metrics.items():
        row: dict[str, Any] = {"candidate": fam}
        cvm = cv_summary.get(fam, {}).get(metric)
        row[f"CV {metric}"] = (
            f"{cvm['mean']:.4f} ± {cvm['std']:.4f}" if cvm else "not cross-validated"
        )
        row.update({f"test {k}": v for k, v in tm.items()})
        cand_rows.append(row)
    cmp_rows = [
        {
            "candidate": c,
            "vs": v.reference,
            "CV gain": v.cv_mean_diff,
            "CV p": v.cv_p_value,
            "test gain": v.test_diff,
            "CI low": v.test_ci[0],
            "CI high": v.test_ci[1],
            "McNemar p": v.mcnemar_p_value,
            "significant": "yes" if v.significant else "no",
        }
        for group in (selection.vs_baseline, selection.vs_best)
        for c, v in group.items()
    ]
    tune_rows = [
        {
            "family": f,
            "backend": t.backend,
            "trials": len(t.trials),
            "objective": t.objective,
            "best score": t.best_score,
            "wall s": t.wall_s,
            "best params": json.dumps(t.best_params),
        }
        for f, t in tuned.items()
    ]
    imgs = "".join(
        f'<figure style="display:inline-block"><img alt="{html.escape(name)}" '
        f'src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
        f"<figcaption>{html.escape(name)}</figcaption></figure>"
        for name, p in plots.items()
    )
    validation = getattr(data.report, "model_dump", None)
    validation_json = json.dumps(
        validation(mode="json") if validation else str(data.report), indent=1, default=str
    )
    summary_json = json.dumps(data.summary, indent=1, default=str)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(cfg.name)} – training report</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(cfg.name)} – run {html.escape(str(card['version']))}</h1>",
        f"<p>{html.escape(cfg.description)}</p>",
        verdict,
        f"<p>{html.escape(selection.reason)}</p>",
        f"<h2>Candidates (primary metric: {html.escape(metric)})</h2>",
        _table(cand_rows),
        "<h2>Paired comparisons</h2>",
        "<p>CV: Nadeau-Bengio corrected resampled t-test (one-sided). Test: paired bootstrap "
        "CI of the gain; McNemar on correctness (classification).</p>",
        _table(cmp_rows),
        "<h2>Tuning</h2>",
        _table(tune_rows),
        "<h2>Permutation importance (test)</h2>",
        _table(importance.to_dict(orient="records")),
        "<h2>Plots</h2>",
        imgs,
        "<h2>Data validation</h2>",
        f"<pre>{html.escape(validation_json)}</pre>",
        "<h2>Split</h2>",
        f"<pre>{html.escape(summary_json)}</pre>",
        "<h2>Model card</h2>",
        f"<pre>{html.escape(json.dumps(card, indent=1, default=str))}</pre>",
        "</body></html>",
    ]
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text("\n".join(parts))
    tmp.replace(path)
    return path
