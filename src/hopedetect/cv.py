"""One cross-validation path for every model.

Each fold writes its part atomically (`runs/<exp>/parts/<model>/fold<k>.csv` with the validation
predictions, `fold<k>_test.csv` with the fold model's test predictions); a rerun skips finished folds, so a
crash loses at most the fold in flight. `assemble` merges the parts on `id` into `oof/<model>.csv` and averages
the fold models' test predictions into `submissions/submission_<model>.csv`. Transformer folds, which run one
per process, write the same parts.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import pandas as pd

from .experiment import Experiment
from .folds import fold_ids
from .io import atomic_write_csv, make_oof_frame, write_oof, write_submission


class Classifier(Protocol):
    def fit(self, texts: list[str], y: np.ndarray, unlabeled: list[str] | None = None) -> "Classifier": ...

    def predict_proba(self, texts: list[str]) -> np.ndarray: ...  # [n, 2]


class FoldParts:
    def __init__(self, exp: Experiment, model: str):
        self.exp, self.model = exp, model
        self.dir = exp.run_dir / "parts" / model

    def path(self, fold: int, test: bool = False) -> Path:
        return self.dir / f"fold{fold}{'_test' if test else ''}.csv"

    def done(self, fold: int) -> bool:
        need_test = self.exp.test is not None
        return self.path(fold).is_file() and (not need_test or self.path(fold, True).is_file())

    def write(self, fold: int, val_ids, val_pred, test_pred=None) -> None:
        # test part first: the validation part is the fold's commit marker
        if test_pred is not None:
            atomic_write_csv(pd.DataFrame({"id": self.exp.test["id"], "pred": np.asarray(test_pred, float)}),
                             self.path(fold, True))
        atomic_write_csv(pd.DataFrame({"id": list(val_ids), "pred": np.asarray(val_pred, float)}), self.path(fold))

    def read(self, fold: int, test: bool = False) -> pd.DataFrame:
        return pd.read_csv(self.path(fold, test), dtype={"id": str})

    def missing(self) -> list[int]:
        """Folds of the experiment's fold file that have no finished part yet."""
        return [k for k in fold_ids(self.exp.folds) if not self.done(k)]


def run_cv(exp: Experiment, model: str, factory: Callable[[], Classifier], folds: list[int] | None = None,
           echo: Callable[[str], None] = print) -> pd.DataFrame | None:
    """Fit `factory()` on every fold's training part, predict its validation part and the test set.
    Returns the assembled OOF frame once every fold is done (None if only some folds were asked for)."""
    texts = np.array(exp.train_texts(), dtype=object)
    test_texts = exp.test_texts() or None
    y = exp.train["label"].to_numpy()
    parts = FoldParts(exp, model)
    for k in folds if folds is not None else fold_ids(exp.folds):
        if parts.done(k):
            echo(f"[{model}] fold {k}: done earlier, skipped")
            continue
        t0 = time.time()
        va = exp.folds.to_numpy() == k
        clf = factory().fit(list(texts[~va]), y[~va], unlabeled=test_texts)
        pv = clf.predict_proba(list(texts[va]))[:, 1]
        pt = clf.predict_proba(test_texts)[:, 1] if test_texts is not None else None
        parts.write(k, exp.train["id"][va], pv, pt)
        echo(f"[{model}] fold {k}: {va.sum()} val rows, {time.time() - t0:.1f}s")
    return assemble_if_complete(exp, model)


def assemble_if_complete(exp: Experiment, model: str) -> pd.DataFrame | None:
    """`assemble` once every fold has its part (the last fold to finish, in whatever process, does it)."""
    return None if FoldParts(exp, model).missing() else assemble(exp, model)


def assemble(exp: Experiment, model: str) -> pd.DataFrame:
    """Merge fold parts on id into the OOF file (+ the test submission averaged over fold models)."""
    parts = FoldParts(exp, model)
    ks = fold_ids(exp.folds)
    missing = parts.missing()
    if missing:
        raise FileNotFoundError(f"{model}: folds {missing} have no parts under {parts.dir} (train them first)")
    val = pd.concat([parts.read(k).assign(fold=k) for k in ks])
    pred = val.set_index("id")["pred"]
    if pred.index.duplicated().any():
        raise ValueError(f"{model}: an id was predicted by two folds")
    ids = exp.train["id"]
    absent = ~ids.isin(pred.index)
    if absent.any():
        raise ValueError(f"{model}: {int(absent.sum())} train ids have no OOF prediction, e.g. {list(ids[absent][:3])}")
    part_fold = val.set_index("id")["fold"].reindex(ids).to_numpy()
    if not np.array_equal(part_fold, exp.folds.to_numpy()):
        raise ValueError(f"{model}: parts were made with another fold file than {exp.cfg.folds.path}")
    oof = make_oof_frame(exp.train, exp.folds, pred.reindex(ids).to_numpy())
    write_oof(oof, exp.oof_path(model), exp.meta(model=model))
    if exp.test is not None:
        tp = np.mean([parts.read(k, test=True).set_index("id")["pred"].reindex(exp.test["id"]).to_numpy() for k in ks], 0)
        write_submission(exp.test["id"], tp, exp.submission_path(model), exp.meta(model=model, n_fold_models=len(ks)))
    return oof


def test_frame(exp: Experiment, model: str) -> pd.DataFrame | None:
    """Test predictions joined with test labels (when the test file has them) for test metrics."""
    if exp.test is None or "label" not in exp.test.columns:
        return None
    from .io import read_submission

    sub = read_submission(exp.submission_path(model), expected_ids=exp.test["id"])
    cols = ["id", "label"] + [c for c in ("source", "language", "generator", "n_chars") if c in exp.test]
    return exp.test[cols].merge(sub.rename(columns={"prediction": "pred"}), on="id", validate="1:1")
