"""Data contract: read, alias, id, validate and normalise train/test tables.

    python -m hopedetect.data check PATH [--role train|test]
    python -m hopedetect.data prepare-demo SRC --out input [--test-frac 0.2] [--max-rows N] [--seed 42]

Accepted aliases (as in the original notebook and on Kaggle): `text_content`/`content` -> `text`,
`generated` -> `label`. A missing `id` column gets a stable content-derived id. Errors name the file,
the column and offending row ids; duplicate texts are warned about with counts.
"""
from __future__ import annotations

import argparse
import hashlib
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

OPTIONAL_COLUMNS = ("source", "domain", "generator", "language", "group")
TEXT_ALIASES = ("text", "text_content", "content")
LABEL_ALIASES = ("label", "generated")
NORMALIZATIONS = ("none", "whitespace", "clean")

_WS = re.compile(r"\s+")  # \s covers \r, \n, \t, \u2028, \u2029, \xa0 in Python's re (unicode)
_URL = re.compile(r"(https?://\S+|www\.\S+)")


class DataError(ValueError):
    """A data file that breaks the contract; the message names file, column and rows."""


class DataWarning(UserWarning):
    pass


def _examples(ids: pd.Series, n: int = 5) -> str:
    vals = list(ids.astype(str)[:n])
    more = f" (+{len(ids) - n} more)" if len(ids) > n else ""
    return f"{vals}{more}"


def read_table(path: str | Path) -> pd.DataFrame:
    """Read CSV or parquet as strings where it matters; never guesses NaN from literal 'NA' texts."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        # keep_default_na=False: a text "NA"/"null" is a text, not a missing value; only "" is missing.
        return pd.read_csv(path, dtype={"id": str, "group": str}, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{path}: cannot parse ({type(e).__name__}: {e})") from e


def _rename_alias(df: pd.DataFrame, aliases: tuple[str, ...], path: Path) -> pd.DataFrame:
    present = [a for a in aliases if a in df.columns]
    if len(present) > 1:
        raise DataError(f"{path}: ambiguous columns {present}; keep only one of {list(aliases)}")
    if present and present[0] != aliases[0]:
        df = df.rename(columns={present[0]: aliases[0]})
    return df


def stable_ids(texts: pd.Series, prefix: str = "t") -> pd.Series:
    """Content-derived ids: same text -> same id across runs and row orders; duplicates get -1, -2, ..."""
    h = texts.astype(str).map(lambda s: hashlib.sha1(s.encode("utf-8")).hexdigest()[:12])
    dup_rank = h.groupby(h).cumcount()
    return prefix + "-" + h + np.where(dup_rank > 0, "-" + dup_rank.astype(str), "")


def load_frame(path: str | Path, role: str = "train") -> pd.DataFrame:
    """Read + alias + id + validate one table. role='train' requires labels; 'test' accepts them if present."""
    if role not in ("train", "test"):
        raise ValueError(f"role must be train or test, got {role!r}")
    path = Path(path)
    df = read_table(path)
    df = _rename_alias(df, TEXT_ALIASES, path)
    df = _rename_alias(df, LABEL_ALIASES, path)
    if "text" not in df.columns:
        raise DataError(f"{path}: missing text column (one of {list(TEXT_ALIASES)}); has {list(df.columns)}")
    if "id" not in df.columns:
        df.insert(0, "id", stable_ids(df["text"].fillna("")))
    df["id"] = df["id"].astype(str)
    validate_frame(df, path, role)
    if "label" in df.columns:
        df["label"] = df["label"].astype(int)
    for c in OPTIONAL_COLUMNS:
        if c in df.columns:
            df[c] = df[c].astype(str)
    df["n_chars"] = df["text"].str.len()
    return df.reset_index(drop=True)


def validate_frame(df: pd.DataFrame, path: Path, role: str) -> None:
    ids = df["id"]
    bad_id = ids.isna() | (ids.str.strip() == "") | (ids == "nan")
    if bad_id.any():
        raise DataError(f"{path}: column 'id' empty at rows {list(np.flatnonzero(bad_id)[:5])}")
    dup = ids[ids.duplicated(keep=False)]
    if len(dup):
        raise DataError(f"{path}: column 'id' has {dup.nunique()} duplicated ids, e.g. {_examples(dup.drop_duplicates())}")
    text = df["text"]
    empty = text.isna() | (text.astype(str).str.strip() == "")
    if empty.any():
        raise DataError(f"{path}: column 'text' is empty or NaN for {int(empty.sum())} rows, ids {_examples(ids[empty])}")
    if role == "train" and "label" not in df.columns:
        raise DataError(f"{path}: missing label column (one of {list(LABEL_ALIASES)}); has {list(df.columns)}")
    if "label" in df.columns:
        lab = pd.to_numeric(df["label"], errors="coerce")
        bad = lab.isna() | ~lab.isin([0, 1])
        if bad.any():
            raise DataError(
                f"{path}: column 'label' must be 0 or 1; {int(bad.sum())} bad rows, ids {_examples(ids[bad])} "
                f"values {list(df['label'][bad].astype(str)[:5])}"
            )
    n_dup_text = int(text.duplicated().sum())
    if n_dup_text:
        warnings.warn(f"{path}: {n_dup_text} exact duplicate texts inside the file", DataWarning, stacklevel=3)


def check_train_test(train: pd.DataFrame, test: pd.DataFrame, train_path: str | Path = "train",
                     test_path: str | Path = "test") -> None:
    """Ids shared by train and test are an error; identical texts are a (counted) warning."""
    shared = pd.Index(train["id"]).intersection(pd.Index(test["id"]))
    if len(shared):
        raise DataError(f"{train_path} and {test_path} share {len(shared)} ids, e.g. {_examples(pd.Series(shared))}")
    n = int(test["text"].isin(set(train["text"])).sum())
    if n:
        warnings.warn(f"{test_path}: {n} texts also appear verbatim in {train_path}", DataWarning, stacklevel=2)


def normalize_text(text: str, mode: str = "whitespace") -> str:
    """'none': as is; 'whitespace': every whitespace run -> one space, NULs dropped, stripped;
    'clean': whitespace + URLs replaced by ' URL ' (removes the tweet-link shortcut)."""
    if mode == "none":
        return text
    if mode not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {mode!r}")
    text = text.replace("\x00", "")
    if mode == "clean":
        text = _URL.sub(" URL ", text)
    return _WS.sub(" ", text).strip()


def normalized_texts(df: pd.DataFrame, mode: str) -> list[str]:
    return [normalize_text(t, mode) for t in df["text"].astype(str)]


def subsample(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """Seeded subsample stratified by label (and source when present); n<=0 or n>=len returns df."""
    if n <= 0 or n >= len(df):
        return df
    keys = ["label"] + (["source"] if "source" in df.columns else [])
    frac = n / len(df)
    parts = [g.sample(frac=frac, random_state=seed) for _, g in df.groupby(keys, sort=True)]
    return pd.concat(parts).sort_index().reset_index(drop=True)


# ---------------------------------------------------------------------------------------- demo input
def prepare_demo(src: str | Path, out_dir: str | Path, test_frac: float = 0.2, max_rows: int = 0,
                 seed: int = 42) -> tuple[Path, Path]:
    """Split a labelled CSV into input/train.csv + input/test.csv by group (no group crosses), labels kept
    in test so inference can report test metrics."""
    from sklearn.model_selection import GroupShuffleSplit

    from .io import atomic_write_csv

    df = load_frame(src, "train").drop(columns=["n_chars"])
    df = subsample(df, max_rows, seed)
    groups = df["group"] if "group" in df.columns else df["id"]
    tr, te = next(GroupShuffleSplit(n_splits=1, test_size=test_frac, random_state=seed).split(df, groups=groups))
    out = Path(out_dir)
    return atomic_write_csv(df.iloc[tr], out / "train.csv"), atomic_write_csv(df.iloc[te], out / "test.csv")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hopedetect.data")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="validate a train/test file")
    c.add_argument("path")
    c.add_argument("--role", choices=["train", "test"], default="train")
    p = sub.add_parser("prepare-demo", help="split a labelled CSV into input/train.csv and input/test.csv")
    p.add_argument("src")
    p.add_argument("--out", default="input")
    p.add_argument("--test-frac", type=float, default=0.2)
    p.add_argument("--max-rows", type=int, default=0)
    p.add_argument("--seed", type=int, default=42)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "check":
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always", DataWarning)
                df = load_frame(a.path, a.role)
            for x in w:
                print(f"warning: {x.message}", file=sys.stderr)
            lab = f", {int(df['label'].sum())} AI / {int((1 - df['label']).sum())} human" if "label" in df else ""
            print(f"{a.path}: OK ({len(df)} rows{lab})")
        else:
            tr, te = prepare_demo(a.src, a.out, a.test_frac, a.max_rows, a.seed)
            print(f"wrote {tr} and {te}")
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
