"""Exploratory tables and plots for notebooks/00_eda.ipynb (the notebook only calls these)."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .metrics import roc_auc

_URL = re.compile(r"https?://|www\.")


def label_balance(df: pd.DataFrame) -> pd.DataFrame:
    c = df["label"].value_counts().rename_axis("label").rename("n").reset_index()
    c["share"] = c["n"] / c["n"].sum()
    c["label"] = c["label"].map({0: "human", 1: "AI"})
    return c


def counts_by(df: pd.DataFrame, col: str) -> pd.DataFrame:
    """Human / AI counts per value of `col`, sorted by total."""
    t = pd.crosstab(df[col], df["label"].map({0: "human", 1: "AI"}))
    t = t.reindex(columns=["human", "AI"], fill_value=0)
    t["total"] = t.sum(axis=1)
    return t.sort_values("total", ascending=False)


def length_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Character/word length quantiles per class, plus the length-only AUC (a shortcut measure)."""
    d = df.assign(n_words=df["text"].str.split().str.len(), cls=df["label"].map({0: "human", 1: "AI"}))
    out = d.groupby("cls")[["n_chars", "n_words"]].describe(percentiles=[0.1, 0.5, 0.9]).T
    return out


def shortcut_features(texts: pd.Series) -> pd.DataFrame:
    """Binary surface properties that leak the label in several sources (data README 'Caveats')."""
    t = texts.astype(str)
    return pd.DataFrame({
        "has_newline": t.str.contains("\n", regex=False),
        "has_double_newline": t.str.contains("\n\n", regex=False),
        "has_cr_or_u2028": t.str.contains("\r|\u2028|\u2029", regex=True),
        "has_url": t.str.contains(_URL),
        "ends_with_punct": t.str.rstrip().str[-1:].isin(list(".!?")),
    })


def shortcut_report(df: pd.DataFrame, by: str | None = "source") -> pd.DataFrame:
    """Share of texts with each shortcut property per class (and per `by` group), with the property's AUC."""
    feats = shortcut_features(df["text"])
    keys = [by] if by and by in df.columns else []
    rows = []
    groups = df.groupby(keys) if keys else [("all", df)]
    for g, d in groups:
        f = feats.loc[d.index]
        y = d["label"].to_numpy()
        for name in f.columns:
            v = f[name].to_numpy()
            rows.append({
                "group": g[0] if isinstance(g, tuple) else g, "feature": name,
                "human_share": float(v[y == 0].mean()) if (y == 0).any() else np.nan,
                "ai_share": float(v[y == 1].mean()) if (y == 1).any() else np.nan,
                "auc": roc_auc(y, v.astype(float)),
            })
    return pd.DataFrame(rows)


def length_auc_by(df: pd.DataFrame, col: str = "source") -> pd.DataFrame:
    return (df.groupby(col).apply(lambda d: roc_auc(d["label"].to_numpy(), d["n_chars"].to_numpy()),
                                  include_groups=False).rename("length_auc").reset_index())


def duplicate_report(train: pd.DataFrame, test: pd.DataFrame | None = None) -> pd.DataFrame:
    """Exact duplicate texts inside train (and with conflicting labels) and between train and test."""
    dup = train["text"].duplicated(keep=False)
    conflict = train[dup].groupby("text")["label"].nunique().gt(1).sum() if dup.any() else 0
    rows = [{"check": "train texts duplicated", "n": int(train["text"].duplicated().sum())},
            {"check": "duplicated texts with conflicting labels", "n": int(conflict)}]
    if test is not None:
        rows.append({"check": "test texts also in train", "n": int(test["text"].isin(set(train["text"])).sum())})
        rows.append({"check": "test texts duplicated", "n": int(test["text"].duplicated().sum())})
    return pd.DataFrame(rows)


def plot_length_hist(df: pd.DataFrame, ax=None):
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    bins = np.logspace(np.log10(max(df["n_chars"].min(), 1)), np.log10(df["n_chars"].max() + 1), 40)
    for lab, name in ((0, "human"), (1, "AI")):
        ax.hist(df.loc[df["label"] == lab, "n_chars"], bins=bins, alpha=0.5, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("characters")
    ax.set_ylabel("texts")
    ax.legend()
    return ax


def plot_counts(table: pd.DataFrame, ax=None, title: str = ""):
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    table[["human", "AI"]].plot.barh(stacked=True, ax=ax)
    ax.set_title(title)
    return ax
