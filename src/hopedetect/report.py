"""Comparison tables, plots and the markdown report of the stacking notebook."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from .io import atomic_write_text
from .metrics import evaluate, summary_row


def comparison_table(frame: pd.DataFrame, cols: list[str], by: str = "source", n_boot: int = 200) -> pd.DataFrame:
    """One row per prediction column: pooled AUC with bootstrap CI, macro AUC by `by`, TPR@1%FPR, Brier, ECE."""
    rows = [summary_row(frame.assign(pred=frame[c]), c, by if by in frame else None, n_boot) for c in cols]
    return pd.DataFrame(rows).set_index("model").sort_values("auc", ascending=False)


def per_group_auc(frame: pd.DataFrame, cols: list[str], by: str = "source") -> pd.DataFrame:
    out = {}
    for c in cols:
        t = evaluate(frame.assign(pred=frame[c]), [by], n_boot=0)
        out[c] = t[t.by == by].set_index("group")["auc"]
    return pd.DataFrame(out)


def plot_roc(frame: pd.DataFrame, cols: list[str], ax=None):
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    for c in cols:
        fpr, tpr, _ = roc_curve(frame["label"], frame[c])
        ax.plot(fpr, tpr, label=c)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel("false positive rate (humans flagged)")
    ax.set_ylabel("true positive rate")
    ax.legend(fontsize=8)
    return ax


def plot_calibration(frame: pd.DataFrame, cols: list[str], ax=None, n_bins: int = 10):
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    for c in cols:
        p = frame[c].to_numpy(float)
        b = np.minimum((p * n_bins).astype(int), n_bins - 1)
        d = pd.DataFrame({"b": b, "p": p, "y": frame["label"]}).groupby("b").mean()
        ax.plot(d["p"], d["y"], "o-", label=c)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed share AI")
    ax.legend(fontsize=8)
    return ax


def plot_heatmap(table: pd.DataFrame, ax=None, title: str = "AUC by source"):
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    im = ax.imshow(table.to_numpy(float), vmin=0.5, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=45, ha="right")
    ax.set_yticks(range(table.shape[0]), table.index)
    for i in range(table.shape[0]):
        for j in range(table.shape[1]):
            v = table.iat[i, j]
            ax.text(j, i, "" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=7, color="w")
    ax.set_title(title)
    plt.colorbar(im, ax=ax)
    return ax


def write_report(path: str | Path, name: str, table: pd.DataFrame, scores: pd.DataFrame, blend: dict,
                 test_table: pd.DataFrame | None = None) -> Path:
    lines = [f"# Stack report: {name}", "", "## Out-of-fold comparison (blends scored by nested CV)", "",
             table.round(4).to_markdown(), "", "## Chosen blend", "", ", ".join(f"{k}: {v}" for k, v in blend.items()), ""]
    if test_table is not None:
        lines += ["## Test set", "", test_table.round(4).to_markdown(), ""]
    return atomic_write_text(path, "\n".join(lines))
