"""Detection metrics on an OOF (or labelled test) frame with `label` and `pred`.

`evaluate(frame, by=[...])` returns one tidy table: a row for the pooled set, a row per group of every
breakdown column, and a macro-average row per breakdown column. Thresholds for TPR@FPR are chosen on the
human texts of the group (the detector's operating point: "at most x% of humans flagged").
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

LENGTH_BUCKETS = (0, 200, 500, 1000, 2000, np.inf)


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, p))


def tpr_at_fpr(y: np.ndarray, p: np.ndarray, fpr: float) -> float:
    """Share of AI texts scored above the threshold that flags at most `fpr` of human texts."""
    y, p = np.asarray(y), np.asarray(p, dtype=float)
    neg, pos = p[y == 0], p[y == 1]
    if len(neg) == 0 or len(pos) == 0:
        return float("nan")
    # Highest threshold t such that mean(neg > t) <= fpr: the ceil((1-fpr)·n)-th smallest human score.
    k = int(np.ceil((1.0 - fpr) * len(neg))) - 1
    thr = np.sort(neg)[min(max(k, 0), len(neg) - 1)]
    return float(np.mean(pos > thr))


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """Threshold maximising F1 on (pooled OOF) predictions; fixed once and reused for every breakdown."""
    y, p = np.asarray(y), np.asarray(p, dtype=float)
    order = np.argsort(-p, kind="mergesort")
    ys, ps = y[order], p[order]
    tp = np.cumsum(ys)
    fp = np.cumsum(1 - ys)
    f1 = 2 * tp / np.maximum(tp + fp + ys.sum(), 1)
    last_of_tie = np.r_[ps[1:] != ps[:-1], True]  # only cut between distinct scores
    f1 = np.where(last_of_tie, f1, -1)
    i = int(np.argmax(f1))
    return float(ps[i]) if len(ps) else 0.5


def f1_at(y: np.ndarray, p: np.ndarray, thr: float) -> float:
    y, yhat = np.asarray(y), np.asarray(p) >= thr
    tp = float(np.sum(yhat & (y == 1)))
    denom = float(np.sum(yhat) + np.sum(y == 1))
    return 2 * tp / denom if denom else float("nan")


def brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((np.asarray(p, dtype=float) - np.asarray(y)) ** 2))


def ece(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error with equal-width bins."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            total += m.sum() * abs(y[m].mean() - p[m].mean())
    return float(total / max(len(y), 1))


def bootstrap_auc_ci(y: np.ndarray, p: np.ndarray, n_boot: int = 200, seed: int = 0,
                     alpha: float = 0.05) -> tuple[float, float]:
    y, p = np.asarray(y), np.asarray(p, dtype=float)
    if len(np.unique(y)) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        if len(np.unique(y[idx])) == 2:
            aucs.append(roc_auc_score(y[idx], p[idx]))
    lo, hi = np.quantile(aucs, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def score(y: np.ndarray, p: np.ndarray, thr: float, n_boot: int = 200, seed: int = 0) -> dict:
    lo, hi = bootstrap_auc_ci(y, p, n_boot, seed) if n_boot else (float("nan"), float("nan"))
    return {
        "n": int(len(y)), "n_ai": int(np.sum(y)), "auc": roc_auc(y, p), "auc_lo": lo, "auc_hi": hi,
        "tpr@1%fpr": tpr_at_fpr(y, p, 0.01), "tpr@5%fpr": tpr_at_fpr(y, p, 0.05),
        "f1": f1_at(y, p, thr), "brier": brier(y, p), "ece": ece(y, p),
    }


def add_length_bucket(frame: pd.DataFrame) -> pd.DataFrame:
    if "n_chars" not in frame.columns:
        raise KeyError("length_bucket needs an 'n_chars' column")
    labels = [f"{int(a)}-{'' if np.isinf(b) else int(b)}" for a, b in zip(LENGTH_BUCKETS[:-1], LENGTH_BUCKETS[1:])]
    out = frame.copy()
    out["length_bucket"] = pd.cut(out["n_chars"], LENGTH_BUCKETS, labels=labels, right=False).astype(str)
    return out


def evaluate(frame: pd.DataFrame, by: Iterable[str] = (), model: str | None = None, thr: float | None = None,
             n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """Tidy metrics table: columns `model, by, group, n, n_ai, auc, auc_lo, auc_hi, tpr@1%fpr, tpr@5%fpr,
    f1, brier, ece` (+ `thr`). Rows: pooled ('all'), each group of every `by` column, and 'macro' per column
    (unweighted mean over groups; AUC-undefined single-class groups are skipped in the macro AUC)."""
    by = list(by)
    if "length_bucket" in by and "length_bucket" not in frame.columns:
        frame = add_length_bucket(frame)
    y, p = frame["label"].to_numpy(), frame["pred"].to_numpy(dtype=float)
    thr = best_f1_threshold(y, p) if thr is None else thr
    rows = [{"by": "all", "group": "all", **score(y, p, thr, n_boot, seed)}]
    for col in by:
        if col not in frame.columns:
            raise KeyError(f"breakdown column {col!r} not in frame (has {list(frame.columns)})")
        sub = []
        for g, d in frame.groupby(col, sort=True):
            r = {"by": col, "group": str(g), **score(d["label"].to_numpy(), d["pred"].to_numpy(float), thr, n_boot, seed)}
            sub.append(r)
        rows.extend(sub)
        macro = pd.DataFrame(sub).drop(columns=["by", "group"]).mean(numeric_only=True, skipna=True).to_dict()
        macro.update(n=int(sum(r["n"] for r in sub)), n_ai=int(sum(r["n_ai"] for r in sub)))
        rows.append({"by": col, "group": "macro", **macro})
    out = pd.DataFrame(rows)
    out.insert(0, "model", model or "")
    out["thr"] = thr
    return out


def summary_row(frame: pd.DataFrame, model: str, by: str | None = "source", n_boot: int = 200) -> dict:
    """One-line summary: pooled AUC (+CI), TPR@1%FPR, macro AUC over `by` (if present), Brier, ECE."""
    t = evaluate(frame, [by] if by and by in frame.columns else [], model=model, n_boot=n_boot)
    a = t[t.by == "all"].iloc[0]
    row = {"model": model, "auc": a.auc, "auc_ci": f"[{a.auc_lo:.3f}, {a.auc_hi:.3f}]",
           "tpr@1%fpr": a["tpr@1%fpr"], "tpr@5%fpr": a["tpr@5%fpr"], "f1": a.f1, "brier": a.brier, "ece": a.ece}
    if by and by in frame.columns:
        row[f"macro_auc_{by}"] = t[(t.by == by) & (t.group == "macro")].iloc[0].auc
    return row


def breakdown(table: pd.DataFrame, col: str) -> pd.DataFrame:
    """The rows of one breakdown column of an `evaluate` table, indexed by group (macro row last)."""
    cols = ["group", "n", "n_ai", "auc", "tpr@1%fpr", "tpr@5%fpr", "f1", "brier", "ece"]
    return table[table.by == col][cols].set_index("group")
