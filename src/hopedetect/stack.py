"""Blend every model's OOF predictions into the final submission.

All frames are merged on `id` (full coverage, no duplicates, identical folds asserted). Blends:
`rank_mean` (mean percentile rank), `rank_weighted` (non-negative weights by Caruana hill climbing on AUC),
`logreg` (logistic regression on logit features). The blend is chosen by **nested** CV on the OOF folds:
for each fold k the blend is fitted on the other folds and scored on k, so the reported stack score is
never fitted on the rows it is scored on. The chosen blend is then refitted on all OOF rows for the test set.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression

from .io import CARRIED_COLUMNS, PredictionFileError, read_oof, read_submission
from .metrics import roc_auc

METHODS = ("rank_mean", "rank_weighted", "logreg")
# Every single model also competes with the blends: a blend that does not beat the best model is not used.
SINGLE = "single"


class StackError(ValueError):
    pass


def available_models(oof_dir: str | Path) -> list[str]:
    return sorted(p.stem for p in Path(oof_dir).glob("*.csv"))


def load_oof_matrix(oof_dir: str | Path, models: list[str], train_ids: pd.Series | None = None,
                    folds: pd.Series | None = None) -> pd.DataFrame:
    """Wide frame keyed by id: `id, fold, label, <carried>, <model_1>, ...`. Every model must cover exactly
    the same ids with the same fold and label; `train_ids`/`folds` (aligned) pin them to the experiment."""
    if not models:
        raise StackError(f"no OOF files to stack in {oof_dir}")
    base: pd.DataFrame | None = None
    for m in models:
        path = Path(oof_dir) / f"{m}.csv"
        df = read_oof(path, expected_ids=train_ids)
        if base is None:
            keep = ["id", "fold", "label"] + [c for c in CARRIED_COLUMNS if c in df.columns]
            base = df[keep].copy()
        else:
            j = base[["id", "fold", "label"]].merge(df[["id", "fold", "label"]], on="id", how="outer",
                                                   suffixes=("", "_m"), indicator=True)
            if (j["_merge"] != "both").any():
                bad = j.loc[j["_merge"] != "both", "id"]
                raise StackError(f"{path}: ids differ from {models[0]}'s OOF, e.g. {list(bad[:5])}")
            for col in ("fold", "label"):
                diff = j[col] != j[f"{col}_m"]
                if diff.any():
                    raise StackError(f"{path}: {col} differs from {models[0]}'s OOF for ids {list(j.id[diff][:5])}")
        base = base.merge(df[["id", "pred"]].rename(columns={"pred": m}), on="id", how="left", validate="1:1")
    if folds is not None and train_ids is not None:
        ref = pd.Series(np.asarray(folds), index=pd.Index(train_ids.astype(str)))
        if not np.array_equal(base["fold"].to_numpy(), ref.reindex(base["id"]).to_numpy()):
            raise StackError("OOF folds differ from the experiment's fold file: every model must use input/folds.csv")
    return base


def load_test_matrix(sub_dir: str | Path, models: list[str], test_ids: pd.Series) -> pd.DataFrame:
    out = pd.DataFrame({"id": test_ids.astype(str).to_numpy()})
    for m in models:
        try:
            s = read_submission(Path(sub_dir) / f"submission_{m}.csv", expected_ids=test_ids)
        except PredictionFileError as e:
            raise StackError(str(e)) from None
        out = out.merge(s.rename(columns={"prediction": m}), on="id", how="left", validate="1:1")
    return out


# --------------------------------------------------------------------------------------------- blends
def pct_rank(x: np.ndarray) -> np.ndarray:
    return (rankdata(x) - 0.5) / len(x)


def logit(p: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    p = np.clip(p, eps, 1 - eps)
    return np.log(p / (1 - p))


def hill_climb_weights(R: np.ndarray, y: np.ndarray, n_iter: int = 40) -> np.ndarray:
    """Caruana ensemble selection with replacement on AUC of the averaged ranks; weights sum to 1."""
    n_models = R.shape[1]
    counts = np.zeros(n_models)
    cur = np.zeros(len(y))
    best = -np.inf
    for _ in range(n_iter):
        scores = [roc_auc(y, (cur * counts.sum() + R[:, j]) / (counts.sum() + 1)) for j in range(n_models)]
        j = int(np.nanargmax(scores))
        if scores[j] <= best + 1e-7:
            break
        best = scores[j]
        cur = (cur * counts.sum() + R[:, j]) / (counts.sum() + 1)
        counts[j] += 1
    if counts.sum() == 0:
        counts[:] = 1
    return counts / counts.sum()


@dataclass
class Blend:
    method: str
    models: list[str]
    weights: np.ndarray | None = None
    lr: LogisticRegression | None = None
    calibrator: LogisticRegression | None = field(default=None, repr=False)

    def fit(self, X: np.ndarray, y: np.ndarray) -> "Blend":
        if self.method == "rank_weighted":
            self.weights = hill_climb_weights(np.column_stack([pct_rank(c) for c in X.T]), y)
        elif self.method == "logreg":
            self.lr = LogisticRegression(C=1.0, max_iter=1000).fit(logit(X), y)
        elif self.method == "rank_mean":
            self.weights = np.full(X.shape[1], 1.0 / X.shape[1])
        else:
            raise StackError(f"unknown blend method {self.method!r}; one of {METHODS}")
        return self

    def raw(self, X: np.ndarray) -> np.ndarray:
        """Blend score in [0,1]: mean percentile rank within X's rows, or the stacker's probability."""
        if self.method == SINGLE:  # the chosen model's own probabilities
            return X @ self.weights
        if self.method == "logreg":
            return self.lr.predict_proba(logit(X))[:, 1]
        return np.column_stack([pct_rank(c) for c in X.T]) @ self.weights

    def calibrate(self, X: np.ndarray, y: np.ndarray) -> "Blend":
        """Platt scaling of the blend score, fitted on OOF rows."""
        self.calibrator = LogisticRegression(max_iter=1000).fit(logit(self.raw(X)).reshape(-1, 1), y)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        s = self.raw(X)
        if self.calibrator is not None:
            return self.calibrator.predict_proba(logit(s).reshape(-1, 1))[:, 1]
        return s

    def describe(self) -> dict:
        if self.method == "logreg":
            return {"method": self.method, **{m: round(float(c), 4) for m, c in zip(self.models, self.lr.coef_[0])}}
        return {"method": self.method, **{m: round(float(w), 4) for m, w in zip(self.models, self.weights)}}


def nested_oof(oof: pd.DataFrame, models: list[str], method: str, calibrate: bool = False) -> np.ndarray:
    """Blend predictions for every OOF row from a blend fitted on the *other* folds only."""
    X, y, f = oof[models].to_numpy(float), oof["label"].to_numpy(), oof["fold"].to_numpy()
    out = np.zeros(len(oof))
    for k in np.unique(f):
        tr, va = f != k, f == k
        b = Blend(method, models).fit(X[tr], y[tr])
        if calibrate:
            b.calibrate(X[tr], y[tr])
        # rank blends rank the held-out fold within itself, exactly as the test set will be ranked
        out[va] = b.predict(X[va])
    return out


@dataclass
class StackResult:
    oof: pd.DataFrame  # the OOF matrix + one nested-CV column per method
    scores: pd.DataFrame  # method/model -> nested OOF AUC
    best: str
    final: Blend
    test_pred: np.ndarray | None


def run_stack(oof: pd.DataFrame, models: list[str], test: pd.DataFrame | None = None,
              methods: tuple[str, ...] = METHODS, calibrate: bool = False) -> StackResult:
    oof = oof.copy()
    y = oof["label"].to_numpy()
    rows = [{"name": m, "kind": "model", "auc": roc_auc(y, oof[m].to_numpy())} for m in models]
    for meth in methods:
        col = f"blend_{meth}"
        oof[col] = nested_oof(oof, models, meth, calibrate)
        rows.append({"name": col, "kind": "blend (nested CV)", "auc": roc_auc(y, oof[col].to_numpy())})
    scores = pd.DataFrame(rows).sort_values("auc", ascending=False).reset_index(drop=True)
    top = scores.iloc[0]
    if top["kind"] == "model":  # OOF predictions are already out-of-fold: comparable with nested blend scores
        best = SINGLE
        final = Blend(SINGLE, models, weights=(np.array(models) == top["name"]).astype(float))
    else:
        best = top["name"].removeprefix("blend_")
        final = Blend(best, models).fit(oof[models].to_numpy(float), y)
    if calibrate:
        final.calibrate(oof[models].to_numpy(float), y)
    test_pred = final.predict(test[models].to_numpy(float)) if test is not None else None
    return StackResult(oof, scores, best, final, test_pred)


def stack_experiment(exp) -> StackResult:
    """Stack every OOF file of the experiment (or `stack.models`), write the blend submission, the Kaggle
    `submission.csv` and the nested-CV blend OOF (`runs/<exp>/stack_oof.csv`, outside `oof/` so it is never
    mistaken for a base model)."""
    from .io import atomic_write_csv, write_kaggle_submission, write_submission

    cfg = exp.cfg
    models = list(cfg.stack.models) or available_models(cfg.oof_dir)
    oof = load_oof_matrix(cfg.oof_dir, models, exp.train["id"], exp.folds)
    test = load_test_matrix(cfg.submission_dir, models, exp.test["id"]) if exp.test is not None else None
    res = run_stack(oof, models, test, tuple(cfg.stack.methods), cfg.stack.calibrate)
    atomic_write_csv(res.oof, exp.run_dir / "stack_oof.csv")
    if res.test_pred is not None:
        meta = exp.meta(blend=res.final.describe(), models=models, oof_auc=float(res.scores.iloc[0]["auc"]))
        write_submission(exp.test["id"], res.test_pred, exp.submission_path("blend"), meta)
        write_kaggle_submission(exp.test["id"], res.test_pred, Path(cfg.submission_dir) / "submission.csv", meta)
    return res
