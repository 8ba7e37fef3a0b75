"""PNG plots of the chosen model (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fixed metadata dict keeps the PNG bytes identical between runs (no timestamp).
    fig.savefig(path, dpi=90, bbox_inches="tight", metadata={"Software": None})
    _pyplot().close(fig)
    return path


def importance_plot(imp: pd.DataFrame, path: Path, title: str, top: int = 20) -> Path:
    plt = _pyplot()
    data = imp.head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(data) + 1.2))
    ax.barh(data["feature"], data["importance"], xerr=data.get("std"), color="#3b75af")
    ax.set_title(title)
    ax.set_xlabel("importance")
    return _save(fig, path)


def classification_plots(
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: np.ndarray,
    out_dir: Path,
    labels: np.ndarray | None = None,
) -> dict[str, Path]:
    """Confusion matrix (of `labels`, the served decisions, else the most probable class), ROC,
    precision-recall and calibration; the positive class is the last of `classes` (the data
    stage puts a binary target's positive class there)."""
    from sklearn import metrics as skm

    plt = _pyplot()
    index = {c: i for i, c in enumerate(classes.tolist())}
    codes = np.array([index[v] for v in np.asarray(y_true).tolist()])
    if labels is not None:
        pred = np.array([index[v] for v in np.asarray(labels).tolist()])
    else:
        pred = proba.argmax(axis=1)
    paths: dict[str, Path] = {}

    cm = skm.confusion_matrix(codes, pred, labels=range(len(classes)))
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(cm, cmap="Blues")
    dark = cm.max() / 2.0 if cm.size else 0.0
    for (i, j), v in np.ndenumerate(cm):
        # White on the dark cells, black on the light ones: every count stays readable.
        color = "white" if v > dark else "black"
        ax.text(j, i, str(v), ha="center", va="center", color=color, fontweight="bold")
    ax.set_xticks(range(len(classes)), [str(c) for c in classes])
    ax.set_yticks(range(len(classes)), [str(c) for c in classes])
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title("Confusion matrix (test)")
    paths["confusion_matrix"] = _save(fig, out_dir / "confusion_matrix.png")

    pos = len(classes) - 1
    score = proba[:, pos]
    truth = (codes == pos).astype(int)
    fpr, tpr, _ = skm.roc_curve(truth, score)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(fpr, tpr, label=f"AUC {skm.auc(fpr, tpr):.3f}")
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC (positive = {classes[pos]})")
    ax.legend(loc="lower right")
    paths["roc"] = _save(fig, out_dir / "roc.png")

    prec, rec, _ = skm.precision_recall_curve(truth, score)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(rec, prec, label=f"AP {skm.average_precision_score(truth, score):.3f}")
    ax.axhline(truth.mean(), ls="--", color="grey")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"Precision-recall (positive = {classes[pos]})")
    ax.legend(loc="upper right")
    paths["pr"] = _save(fig, out_dir / "pr.png")

    edges = np.linspace(0, 1, 11)
    which = np.clip(np.digitize(score, edges[1:-1], right=True), 0, 9)
    xs, ys = [], []
    for b in range(10):
        mask = which == b
        if mask.any():
            xs.append(score[mask].mean())
            ys.append(truth[mask].mean())
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.plot(xs, ys, "o-")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_title("Calibration (test)")
    paths["calibration"] = _save(fig, out_dir / "calibration.png")
    return paths


def regression_plots(y_true: np.ndarray, pred: np.ndarray, out_dir: Path) -> dict[str, Path]:
    """Residuals against predictions, and predicted against actual."""
    plt = _pyplot()
    y = np.asarray(y_true, dtype=np.float64)
    resid = y - pred
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(pred, resid, s=6, alpha=0.5)
    ax.axhline(0, color="grey", ls="--")
    ax.set_xlabel("predicted")
    ax.set_ylabel("residual (actual - predicted)")
    ax.set_title("Residuals (test)")
    paths = {"residuals": _save(fig, out_dir / "residuals.png")}
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(y, pred, s=6, alpha=0.5)
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], "--", color="grey")
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    ax.set_title("Predicted vs actual (test)")
    paths["predicted_vs_actual"] = _save(fig, out_dir / "predicted_vs_actual.png")
    return paths
