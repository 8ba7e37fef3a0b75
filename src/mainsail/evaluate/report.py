"""Self-contained HTML report of a training run: tables, comparisons, inlined PNG plots.

Every section is HTML (tables, lists, the validation report's own sections); no raw JSON dump.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mainsail.config import ProjectConfig
from mainsail.data.prepared import DataStageResult
from mainsail.evaluate.compare import Selection, format_p

if TYPE_CHECKING:
    from mainsail.evaluate.results import FinalEvaluation

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:right;vertical-align:top}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.ok{color:#176317;font-weight:bold}.bad{color:#a11;font-weight:bold}img{max-width:480px;margin:6px}
.warnbox{background:#fff4e0;border-left:4px solid #b26b00;padding:6px 12px;margin:1em 0}
dl.card{margin:0 0 0 1em}dl.card dt{font-weight:600;margin-top:4px}dl.card dd{margin-left:1.5em}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:.3rem;color:#fff}
.badge.ok{background:#199473}.badge.fail{background:#ab091e}.badge.warn{background:#b26b00}
.error{color:#ab091e;font-weight:600}.warning{color:#8d6708}.info{color:#486581}
td.num{text-align:right}"""

_P_COLUMNS = {"CV p", "McNemar p"}


def _fmt(v: Any, column: str = "") -> str:
    if column in _P_COLUMNS and isinstance(v, float):
        return html.escape(format_p(v))
    if isinstance(v, bool):
        return "yes" if v else "no"
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
        "<tr>" + "".join(f"<td>{_fmt(r.get(c), c)}</td>" for c in cols) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _tree(value: Any) -> str:
    """A nested mapping / list as HTML definition lists and lists (the card, the split)."""
    if isinstance(value, dict):
        if not value:
            return "–"
        items = "".join(
            f"<dt>{html.escape(str(k))}</dt><dd>{_tree(v)}</dd>" for k, v in value.items()
        )
        return f'<dl class="card">{items}</dl>'
    if isinstance(value, list):
        if not value:
            return "–"
        if all(isinstance(v, dict) for v in value) and len({tuple(v) for v in value}) == 1:
            return _table(list(value))
        return "<ul>" + "".join(f"<li>{_tree(v)}</li>" for v in value) + "</ul>"
    return _fmt(value)


def _split_section(summary: dict[str, Any]) -> str:
    sides = summary.get("sides", {})
    rows = []
    for side, info in sides.items():
        row: dict[str, Any] = {"side": side, "rows": info.get("rows")}
        if "entities" in info:
            row["entities"] = info["entities"]
        if "first" in info:
            row["first"], row["last"] = info["first"], info["last"]
        if "class_share" in info:
            row["class share"] = ", ".join(f"{k}: {v:.1%}" for k, v in info["class_share"].items())
        if "target_mean" in info:
            row["target mean"] = info["target_mean"]
            row["target std"] = info["target_std"]
        rows.append(row)
    facts = {
        k: summary.get(k)
        for k in ("strategy", "seed", "test_size", "valid_size", "gap", "rows_total",
                  "rows_left_out_by_gap", "rows_purged_for_entity_separation", "problem_type")
        if k in summary
    }  # fmt: skip
    parts = [_table(rows), _tree(facts)]
    if summary.get("checks"):
        parts += ["<h3>Leakage checks</h3>", _tree(summary["checks"])]
    if summary.get("imbalance"):
        parts += ["<h3>Class imbalance</h3>", _tree(summary["imbalance"])]
    return "\n".join(parts)


def _final_section(final: FinalEvaluation, metric: str) -> str:
    model = final.extra.get("model", {})
    parts = [
        _tree(
            {
                "family": model.get("family"),
                "fitted on": model.get("fitted_on"),
                "rows": model.get("rows"),
                f"test {metric}": final.metrics.get(metric),
                f"{final.ci.level:.0%} CI": f"{final.ci.low:.4g} .. {final.ci.high:.4g}",
            }
        )
    ]
    cal = final.extra.get("calibration")
    if cal:
        parts += [
            "<h3>Calibration (test rows)</h3>",
            _table(
                [
                    {
                        "": "before calibration",
                        "ECE": cal["ece_before"],
                        "log loss": cal["log_loss_before"],
                    },
                    {
                        "": f"after ({cal['method']})",
                        "ECE": cal["ece_after"],
                        "log loss": cal["log_loss_after"],
                    },
                    {"": "constant baseline", "ECE": None, "log loss": cal["baseline_log_loss"]},
                ]
            ),
        ]
    thr = final.extra.get("threshold")
    if thr:
        parts += ["<h3>Decision threshold (chosen on held-out predictions)</h3>", _tree(thr)]
    per_class = final.extra.get("per_class")
    if per_class:
        parts += ["<h3>Per-class metrics (test rows, served labels)</h3>", _table(per_class)]
    return "\n".join(parts)


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
    final: FinalEvaluation | None = None,
    shift: dict[str, Any] | None = None,
) -> Path:
    """Write the report; every image is a data: URI, so it opens with no network."""
    from mainsail.data.report import render_body, status_badge

    metric = selection.metric
    verdict = (
        f'<p class="ok">Selected: {html.escape(selection.chosen)}</p>'
        if selection.chosen
        else '<p class="bad">No model selected</p>'
    )
    warnings = list(final.warnings) if final is not None else []
    warn_html = "".join(f'<div class="warnbox">{html.escape(w)}</div>' for w in warnings)
    cand_rows = []
    for fam, tm in test_metrics.items():
        row: dict[str, Any] = {"candidate": fam}
        cvm = cv_summary.get(fam, {}).get(metric)
        row[f"CV {metric}"] = (
            f"{cvm['mean']:.4f} ± {cvm['std']:.4f}" if cvm else "not cross-validated"
        )
        if cvm and "recent_mean" in cvm:
            row[f"recent-fold CV {metric}"] = cvm["recent_mean"]
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
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(cfg.name)} – training report</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(cfg.name)} – run {html.escape(str(card['version']))}</h1>",
        f"<p>{html.escape(cfg.description)}</p>",
        verdict,
        f"<p>{html.escape(selection.reason)}</p>",
        warn_html,
    ]
    if final is not None:
        parts += ["<h2>The served model</h2>", _final_section(final, metric)]
    parts += [
        f"<h2>Candidates (primary metric: {html.escape(metric)}; test scores of the "
        "train-only fits)</h2>",
        _table(cand_rows),
    ]
    if final is not None and final.extra.get("cv_vs_test"):
        parts += [
            f"<h2>CV estimate vs test, per candidate ({html.escape(metric)})</h2>",
            "<p>The selection's estimate (recent folds for a time split) with its interval, "
            "against the test score and its bootstrap interval; <em>agree</em> is no when the "
            "intervals do not overlap.</p>",
            _table(final.extra["cv_vs_test"]),
        ]
    if shift:
        parts += [
            "<h2>Shift from train to test</h2>",
            _table([{"side": s, **v} for s, v in shift["target"].items()]),
            "<p>Features that moved most (SMD: standardised mean difference; TVD: total "
            "variation distance of the categories).</p>",
            _table(shift["features"]),
        ]
    parts += [
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
        f"<h2>Data validation {status_badge(data.report)}</h2>",
        render_body(data.report, heading="h3"),
        "<h2>Split</h2>",
        _split_section(data.summary),
        "<h2>Model card</h2>",
        _tree(card),
        "</body></html>",
    ]
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text("\n".join(parts))
    tmp.replace(path)
    return path
