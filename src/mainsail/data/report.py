"""The validation report: what the data stage checked and found, as JSON and as one
self-contained HTML page (inline CSS, no scripts).

Every value in the page is escaped; it loads nothing from the network, so it can be opened from a
run folder, attached to a model version, or served as-is.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mainsail.config import ProblemType

Severity = Literal["error", "warning", "info"]
Role = Literal[
    "feature",
    "target",
    "entity_key",
    "event_timestamp",
    "label_timestamp",
    "dropped",
    "excluded",
    "sensitive",
]
Kind = Literal["numeric", "categorical", "boolean", "datetime"]


class Issue(BaseModel):
    """One finding of the validation."""

    model_config = ConfigDict(extra="forbid")

    severity: Severity
    """`error` blocks the run; `warning` deserves a look; `info` records a decision."""
    code: str
    """Stable machine-readable code (e.g. `constant_column`, `leakage_suspect`)."""
    message: str
    """What was found, naming the column and the numbers."""
    column: str | None = None
    """The column concerned, when there is one."""


class ColumnProfile(BaseModel):
    """Profile of one column of the loaded table."""

    model_config = ConfigDict(extra="forbid")

    name: str
    """Column name."""
    dtype: str
    """pandas dtype after loading."""
    role: Role
    """What the data stage uses the column for."""
    kind: Kind
    """How the column is treated: numeric, categorical, boolean or datetime."""
    missing: int
    """Missing values."""
    missing_share: float
    """Missing values as a share of rows."""
    unique: int
    """Distinct non-missing values."""
    constant: bool = False
    """At most one distinct value."""
    id_like: bool = False
    """Looks like an identifier (distinct per row)."""
    min: float | None = None
    """Smallest value (numeric)."""
    max: float | None = None
    """Largest value (numeric)."""
    mean: float | None = None
    """Mean (numeric)."""
    std: float | None = None
    """Standard deviation (numeric)."""
    outliers: int | None = None
    """Values more than 3 IQRs outside the quartiles (numeric)."""
    top_values: dict[str, int] | None = None
    """Most frequent values and their counts (categorical, up to 10)."""
    first: str | None = None
    """Earliest value (datetime, ISO 8601)."""
    last: str | None = None
    """Latest value (datetime, ISO 8601)."""


class LeakageSuspect(BaseModel):
    """A single feature that predicts the target almost perfectly on held-out rows."""

    model_config = ConfigDict(extra="forbid")

    column: str
    """The feature."""
    metric: str
    """Held-out score used: `roc_auc`, `balanced_accuracy` or `r2`."""
    score: float
    """Its value (2-fold cross-validated, one feature only)."""
    allowed: bool = False
    """Kept as a feature because `data.allow_leakage_suspects` lists it (else the run stops)."""


class ValidationReport(BaseModel):
    """Machine-readable validation report (also rendered as HTML)."""

    model_config = ConfigDict(extra="forbid")

    version: int = 1
    """Report format version."""
    source: str
    """Path of the data file."""
    data_sha256: str = ""
    """sha256 of the file's bytes."""
    rows_loaded: int
    """Rows read from the file."""
    rows: int = 0
    """Rows kept after removing exact duplicates and rows without a label."""
    n_columns: int
    """Columns read from the file."""
    target: str
    """Target column."""
    problem_type: ProblemType | None = None
    """Classification or regression."""
    problem_type_detected: bool = False
    """True when the problem type was detected (the config left it out)."""
    problem_type_reason: str = ""
    """Why that problem type (from config, or the rule that detected it)."""
    classes: list[str] | None = None
    """Class labels, sorted as the models order them (classification)."""
    positive_class: str | None = None
    """Positive class (binary classification)."""
    positive_class_reason: str = ""
    """How the positive class was decided: `data.positive_class`, or the minority class."""
    class_balance: dict[str, int] | None = None
    """Rows per class (classification)."""
    minority_share: float | None = None
    """Share of the rarest class (classification)."""
    target_stats: dict[str, float] | None = None
    """min, max, mean, std of the target (regression)."""
    duplicate_rows_dropped: int = 0
    """Exact duplicate rows removed (the first copy is kept)."""
    missing_target_rows_dropped: int = 0
    """Rows removed because their label is missing."""
    timestamp_after_label_rows: int | None = None
    """Rows whose event timestamp is after their label timestamp (leakage)."""
    features: list[str] = Field(default_factory=list)
    """Feature columns in model input order."""
    numeric: list[str] = Field(default_factory=list)
    """Numeric and boolean features."""
    categorical: list[str] = Field(default_factory=list)
    """Categorical features."""
    excluded: dict[str, str] = Field(default_factory=dict)
    """Columns left out of the features, with the reason."""
    sensitive: dict[str, str] = Field(default_factory=dict)
    """Sensitive columns (declared in `privacy.sensitive_columns`, or detected), with the
    reason; removed from the rows before any other check, profiled by counts only."""
    leakage: list[LeakageSuspect] = Field(default_factory=list)
    """Single features that predict the target almost perfectly."""
    columns: list[ColumnProfile] = Field(default_factory=list)
    """Profile of every column."""
    issues: list[Issue] = Field(default_factory=list)
    """Errors, warnings and decisions, in the order found."""
    passed: bool = False
    """True when no blocking problem was found."""

    def warnings(self) -> list[Issue]:
        """The warnings."""
        return [i for i in self.issues if i.severity == "warning"]

    def errors(self) -> list[Issue]:
        """The blocking problems."""
        return [i for i in self.issues if i.severity == "error"]

    def to_json(self) -> str:
        """Stable JSON form (sorted keys, NaN-free)."""
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"

    def save_json(self, path: Path) -> None:
        """Write the JSON form."""
        path.write_text(self.to_json())

    def to_html(self) -> str:
        """Self-contained HTML page (no scripts, no network)."""
        return render_report(self)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#1f2933}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d9e2ec}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border:1px solid #d9e2ec;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f0f4f8}td.num{text-align:right;font-variant-numeric:tabular-nums}
.error{color:#ab091e;font-weight:600}.warning{color:#8d6708}.info{color:#486581}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:.3rem;color:#fff}
.ok{background:#199473}.fail{background:#ab091e}.warn{background:#b26b00}
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


def status_badge(report: ValidationReport) -> str:
    """`failed`, `passed with N warning(s)` (leakage suspects allowed by the config are
    warnings) or `passed`, as an HTML badge."""
    n_warn = len(report.warnings())
    if not report.passed:
        return '<span class="badge fail">failed</span>'
    if n_warn:
        return f'<span class="badge warn">passed with {n_warn} warning(s)</span>'
    return '<span class="badge ok">passed</span>'


def render_report(report: ValidationReport) -> str:
    """The report as a complete HTML document."""
    status = status_badge(report)
    body = render_body(report)
    return (
        "\n".join(
            [
                "<!DOCTYPE html>",
                '<html lang="en"><head><meta charset="utf-8">',
                f"<title>Validation report: {escape(report.source)}</title>",
                f"<style>{_CSS}</style></head><body>",
                f"<h1>Validation report {status}</h1>",
                body,
                "</body></html>",
            ]
        )
        + "\n"
    )


def render_body(report: ValidationReport, heading: str = "h2") -> str:
    """The report's sections as an HTML fragment (the training report embeds it)."""
    h = heading
    parts = [
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
                ["positive class decided by", report.positive_class_reason or None],
                ["exact duplicate rows removed", report.duplicate_rows_dropped],
                ["rows without label removed", report.missing_target_rows_dropped],
                ["event time after label time", report.timestamp_after_label_rows],
                ["features", len(report.features)],
            ],
        ),
        f"<{h}>Issues</{h}>",
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
        parts += [f"<{h}>Class balance</{h}>", _table(["class", "rows", "share"], rows)]
        parts.append(
            "".join(
                f'<div>{escape(label)} <span class="bar" style="width:{300 * c / total:.0f}px">'
                "</span></div>"
                for label, c in report.class_balance.items()
            )
        )
    if report.target_stats:
        parts += [
            f"<{h}>Target</{h}>",
            _table(["statistic", "value"], [[k, v] for k, v in report.target_stats.items()]),
        ]
    if report.leakage:
        parts += [
            f"<{h}>Target leakage suspects</{h}>",
            _table(
                ["column", "metric", "held-out score", "kept (allowed by config)"],
                [[s.column, s.metric, s.score, s.allowed] for s in report.leakage],
            ),
        ]
    if report.sensitive:
        parts.append(
            f"<{h}>Sensitive columns (removed, values never shown)</{h}>"
            + _table(["column", "reason"], [[k, v] for k, v in report.sensitive.items()])
        )
    if report.excluded:
        parts += [
            f"<{h}>Excluded columns</{h}>",
            _table(["column", "reason"], [[k, v] for k, v in report.excluded.items()]),
        ]
    parts += [
        f"<{h}>Columns</{h}>",
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
    ]
    return "\n".join(parts)
