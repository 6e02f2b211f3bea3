"""Folds are built once by a seeded function, saved as `input/folds.csv` (`id,fold`) and read by every model.

Schemes: `stratified` (StratifiedKFold, the original notebook's), `group` (StratifiedGroupKFold on `group`:
a group never crosses folds) and `leave-source-out` (fold k = every row of the k-th source). `auto` picks
`group` when the column exists. A fold file that does not match the train ids is an error, never a rebuild.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from .io import atomic_write_csv

SCHEMES = ("auto", "stratified", "group", "leave-source-out")


class FoldError(ValueError):
    pass


def resolve_scheme(train: pd.DataFrame, scheme: str) -> str:
    if scheme not in SCHEMES:
        raise FoldError(f"fold scheme must be one of {SCHEMES}, got {scheme!r}")
    if scheme == "auto":
        return "group" if "group" in train.columns else "stratified"
    need = {"group": "group", "leave-source-out": "source"}.get(scheme)
    if need and need not in train.columns:
        raise FoldError(f"fold scheme {scheme!r} needs a '{need}' column in the train data")
    return scheme


def make_folds(train: pd.DataFrame, scheme: str = "auto", n_folds: int = 5, seed: int = 42) -> pd.DataFrame:
    """Return `id,fold` for every train row (in train order). Deterministic given (ids, labels, groups, seed)."""
    scheme = resolve_scheme(train, scheme)
    y = train["label"].to_numpy()
    fold = np.full(len(train), -1, dtype=int)
    if scheme == "leave-source-out":
        sources = sorted(train["source"].astype(str).unique())
        if len(sources) < 2:
            raise FoldError("leave-source-out needs at least 2 sources")
        fold = train["source"].astype(str).map({s: i for i, s in enumerate(sources)}).to_numpy()
    else:
        if scheme == "group":
            splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
            splits = splitter.split(train, y, groups=train["group"].astype(str).to_numpy())
        else:
            splits = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(train, y)
        for k, (_, va) in enumerate(splits):
            fold[va] = k
    return pd.DataFrame({"id": train["id"].astype(str).to_numpy(), "fold": fold})


def save_folds(folds: pd.DataFrame, path: str | Path) -> Path:
    return atomic_write_csv(folds, path)


def load_folds(path: str | Path, train: pd.DataFrame) -> pd.Series:
    """Fold ids aligned to `train` rows by id. Missing/extra ids are an error naming both counts."""
    path = Path(path)
    if not path.is_file():
        raise FoldError(f"{path}: fold file not found (build it with hopedetect.folds.ensure_folds)")
    f = pd.read_csv(path, dtype={"id": str})
    if list(f.columns[:2]) != ["id", "fold"]:
        raise FoldError(f"{path}: expected columns id,fold; got {list(f.columns)}")
    if f["id"].duplicated().any():
        raise FoldError(f"{path}: duplicate ids, e.g. {list(f['id'][f['id'].duplicated()][:5])}")
    tr_ids = pd.Index(train["id"].astype(str))
    missing, extra = tr_ids.difference(f["id"]), pd.Index(f["id"]).difference(tr_ids)
    if len(missing) or len(extra):
        raise FoldError(
            f"{path}: fold file does not match the train ids ({len(missing)} train ids missing, e.g. "
            f"{list(missing[:3])}; {len(extra)} unknown ids, e.g. {list(extra[:3])}). Delete it to rebuild "
            f"deliberately, or point folds.path elsewhere."
        )
    return f.set_index("id")["fold"].reindex(tr_ids).astype(int).reset_index(drop=True)


def ensure_folds(train: pd.DataFrame, path: str | Path, scheme: str, n_folds: int, seed: int) -> pd.Series:
    """Build + save the fold file if absent, then load (and so validate) it."""
    if not Path(path).is_file():
        save_folds(make_folds(train, scheme, n_folds, seed), path)
    return load_folds(path, train)


def fold_ids(folds: pd.Series) -> list[int]:
    return sorted(int(k) for k in pd.unique(folds))
