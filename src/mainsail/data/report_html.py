"""Human-readable validation report: one self-contained HTML page (inline CSS, no scripts).

Every value is escaped; the page loads nothing from the network, so it can be opened from a run
folder, attached to a model version, or served as-is.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mainsail.data.validate import ValidationReport

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#1f2933}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d9e2ec}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border:1px solid #d9e2ec;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f0f4f8}td.num{text-align:right;font-variant-numeric:tabular-nums}
.error{color:#ab091e;font-weight:600}.warning{color:#8d6708}.info{color:#486581}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:.3rem;color:#fff}
.ok{background:#199473}.fail{background:#ab091e}
.bar{background:#2680c2;height:.7rem;display:inline-block}
"""


def _cell(value: Any) -> str:
    if value is None:
        return "<td></td>"
    if isinstance(value, bool):
        return f"<td>{'yes' if value else ''}</td>"
    if isinstance(value, float):
        return f'<td class="num">{value:.6g}</td>'
    if isinstance(value, int):
        return f'<td class="num">{value}</td>'
    return f"<td>{escape(str(value))}</td>"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_report(report: ValidationReport) -> str:
    """The report as a complete HTML document."""
    status = (
        '<span class="badge ok">passed</span>'
        if report.passed
        else '<span class="badge fail">failed</span>'
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Validation report: {escape(report.source)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Validation report {status}</h1>",
        _table(
            ["item", "value"],
            [
                ["source", report.source],
                ["sha256", report.data_sha256],
                ["rows loaded", report.rows_loaded],
                ["rows kept", report.rows],
                ["columns", report.n_columns],
                ["target", report.target],
                ["problem type", report.problem_type],
                ["how it was decided", report.problem_type_reason],
                ["positive class", report.positive_class],
                ["exact duplicate rows removed", report.duplicate_rows_dropped],
                ["rows without label removed", report.missing_target_rows_dropped],
                ["event time after label time", report.timestamp_after_label_rows],
                ["features", len(report.features)],
            ],
        ),
        "<h2>Issues</h2>",
    ]
    if report.issues:
        parts.append(
            "<ul>"
            + "".join(
                f'<li class="{i.severity}">{escape(i.severity)} [{escape(i.code)}]: '
                f"{escape(i.message)}</li>"
                for i in report.issues
            )
            + "</ul>"
        )
    else:
        parts.append("<p>None.</p>")
    if report.class_balance:
        total = sum(report.class_balance.values()) or 1
        rows = [
            [label, count, f"{count / total:.1%}"] for label, count in report.class_balance.items()
        ]
        parts += ["<h2>Class balance</h2>", _table(["class", "rows", "share"], rows)]
        parts.append(
            "".join(
                f'<div>{escape(label)} <span class="bar" style="width:{300 * c / total:.0f}px">'
                "</span></div>"
                for label, c in report.class_balance.items()
            )
        )
    if report.target_stats:
        parts += [
            "<h2>Target</h2>",
            _table(["statistic", "value"], [[k, v] for k, v in report.target_stats.items()]),
        ]
    if report.leakage:
        parts += [
            "<h2>Target leakage suspects</h2>",
            _table(
                ["column", "metric", "held-out score"],
                [[s.column, s.metric, s.score] for s in report.leakage],
            ),
        ]
    if report.excluded:
        parts += [
            "<h2>Excluded columns</h2>",
            _table(["column", "reason"], [[k, v] for k, v in report.excluded.items()]),
        ]
    parts += [
        "<h2>Columns</h2>",
        _table(
            [
                "name",
                "role",
                "kind",
                "dtype",
                "missing",
                "missing %",
                "distinct",
                "min",
                "max",
                "mean",
                "outliers",
                "top values / range",
            ],
            [
                [
                    c.name,
                    c.role,
                    c.kind,
                    c.dtype,
                    c.missing,
                    f"{c.missing_share:.1%}",
                    c.unique,
                    c.min,
                    c.max,
                    c.mean,
                    c.outliers,
                    ", ".join(f"{k} ({v})" for k, v in (c.top_values or {}).items())
                    or (f"{c.first} .. {c.last}" if c.first else None),
                ]
                for c in report.columns
            ],
        ),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
