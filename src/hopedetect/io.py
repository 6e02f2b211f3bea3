"""Atomic writes and the prediction-file contract.

OOF files: `oof/<model>.csv` with `id,fold,label,pred` (+ carried columns such as source/language).
Test predictions: `submissions/submission_<model>.csv` with `id,prediction`; Kaggle upload file
`submissions/submission.csv` with `id,generated`. Every file is written atomically (temp + rename)
with every field quoted, and gets a `<file>.meta.json` beside it (seed, config, git sha, time).
Every read validates ids and predictions — alignment is always by `id`, never by row order.
"""
from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

CARRIED_COLUMNS = ("source", "domain", "generator", "language", "group", "n_chars")


class PredictionFileError(ValueError):
    """A prediction file that breaks the contract (ids, columns, values)."""


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    # QUOTE_ALL: texts hold \r, \u2028, commas and quotes; quoting every field makes the file round-trip.
    return atomic_write_text(path, df.to_csv(index=False, quoting=csv.QUOTE_ALL, lineterminator="\n"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def run_metadata(seed: int, config: Any = None, **extra: Any) -> dict:
    from .config import to_dict

    meta = {
        "seed": seed,
        "git_sha": git_sha(),
        "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": to_dict(config) if config is not None and not isinstance(config, dict) else config,
    }
    meta.update(extra)
    return meta


def meta_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".meta.json")


def write_with_meta(df: pd.DataFrame, path: str | Path, meta: dict) -> Path:
    # Meta first: a file whose meta is missing is recognisably incomplete; the CSV rename is the commit point.
    atomic_write_json(meta_path(path), meta)
    return atomic_write_csv(df, path)


# ------------------------------------------------------------------------------------------ validation
def _check_ids(df: pd.DataFrame, path: Path, expected_ids: Iterable[str] | None) -> None:
    if "id" not in df.columns:
        raise PredictionFileError(f"{path}: missing column 'id'")
    ids = df["id"].astype(str)
    dup = ids[ids.duplicated()].unique()
    if len(dup):
        raise PredictionFileError(f"{path}: duplicate ids, e.g. {list(dup[:5])}")
    if expected_ids is not None:
        exp = pd.Index(pd.Series(list(expected_ids)).astype(str))
        missing = exp.difference(ids)
        extra = pd.Index(ids).difference(exp)
        if len(missing) or len(extra):
            raise PredictionFileError(
                f"{path}: ids do not match the expected set: {len(missing)} missing "
                f"(e.g. {list(missing[:5])}), {len(extra)} unexpected (e.g. {list(extra[:5])})"
            )


def _check_probs(values: pd.Series, path: Path, col: str, ids: pd.Series) -> None:
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(v) | (v < 0) | (v > 1)
    if bad.any():
        raise PredictionFileError(
            f"{path}: column '{col}' must be finite and in [0,1]; {int(bad.sum())} bad rows, "
            f"e.g. ids {list(ids[bad][:5])}"
        )


def _require(df: pd.DataFrame, cols: Iterable[str], path: Path) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise PredictionFileError(f"{path}: missing column(s) {missing}; has {list(df.columns)}")


# --------------------------------------------------------------------------------------------- OOF
def oof_path(oof_dir: str | Path, model: str) -> Path:
    return Path(oof_dir) / f"{model}.csv"


def submission_path(sub_dir: str | Path, model: str) -> Path:
    return Path(sub_dir) / f"submission_{model}.csv"


def make_oof_frame(train: pd.DataFrame, folds: pd.Series, pred: np.ndarray) -> pd.DataFrame:
    """OOF frame keyed by id from the train frame (any order), its fold ids and the predictions."""
    out = pd.DataFrame({"id": train["id"].astype(str).to_numpy(), "fold": np.asarray(folds, dtype=int)})
    out["label"] = train["label"].astype(int).to_numpy()
    out["pred"] = np.asarray(pred, dtype=float)
    for c in CARRIED_COLUMNS:
        if c in train.columns:
            out[c] = train[c].to_numpy()
    return out


def write_oof(df: pd.DataFrame, path: str | Path, meta: dict) -> Path:
    path = Path(path)
    validate_oof(df, path)
    return write_with_meta(df, path, meta)


def validate_oof(df: pd.DataFrame, path: Path, expected_ids: Iterable[str] | None = None) -> pd.DataFrame:
    _require(df, ["id", "fold", "label", "pred"], path)
    _check_ids(df, path, expected_ids)
    _check_probs(df["pred"], path, "pred", df["id"])
    if not set(pd.unique(df["label"])) <= {0, 1}:
        raise PredictionFileError(f"{path}: labels must be 0/1")
    return df


def read_oof(path: str | Path, expected_ids: Iterable[str] | None = None) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise PredictionFileError(f"OOF file not found: {path}")
    df = pd.read_csv(path, dtype={"id": str}, keep_default_na=False, na_values=[""])
    return validate_oof(df, path, expected_ids)


# ----------------------------------------------------------------------------------------- submissions
def _write_predictions(ids: Iterable[str], pred: np.ndarray, path: str | Path, meta: dict, col: str) -> Path:
    df = pd.DataFrame({"id": pd.Series(list(ids)).astype(str), col: np.asarray(pred, dtype=float)})
    path = Path(path)
    _check_ids(df, path, None)
    _check_probs(df[col], path, col, df["id"])
    return write_with_meta(df, path, meta)


def write_submission(ids: Iterable[str], pred: np.ndarray, path: str | Path, meta: dict) -> Path:
    """Test predictions of one model: `id,prediction` (the original notebook's format)."""
    return _write_predictions(ids, pred, path, meta, "prediction")


def read_submission(path: str | Path, expected_ids: Iterable[str] | None = None) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise PredictionFileError(f"submission file not found: {path}")
    df = pd.read_csv(path, dtype={"id": str})
    _require(df, ["id", "prediction"], path)
    _check_ids(df, path, expected_ids)
    _check_probs(df["prediction"], path, "prediction", df["id"])
    return df


def write_kaggle_submission(ids: Iterable[str], pred: np.ndarray, path: str | Path, meta: dict) -> Path:
    """Kaggle format (`id,generated`), as in the LLM-detect competition."""
    return _write_predictions(ids, pred, path, meta, "generated")
