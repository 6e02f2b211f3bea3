"""Classical baselines with a scikit-learn style `fit/predict_proba` over raw texts, so the CV path, the
runner and the stacker treat them like every other model.

- `SGDTextModel`: TF-IDF char_wb (3–5) + word (1–2) n-grams -> SGDClassifier(modified_huber). The vectorizer is
  fitted inside each fold's training part; `vocab_on_test=True` also learns the vocabulary (never labels) from the
  test texts (the Kaggle "fit on test" trick).
- `LGBTextModel`: LightGBM on stylometric features + TF-IDF -> SVD, early stopping on a slice of the fold's
  *training* part only.
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split

from .config import LGBConfig, SGDConfig
from .features import FeatureCache


class SGDTextModel:
    def __init__(self, cfg: SGDConfig = SGDConfig(), seed: int = 42):
        self.cfg, self.seed = cfg, seed

    def _vectorizers(self) -> list[TfidfVectorizer]:
        c = self.cfg
        half = c.max_features // 2
        return [
            TfidfVectorizer(analyzer="char_wb", ngram_range=tuple(c.char_ngrams), min_df=c.min_df,
                            max_features=half, sublinear_tf=True, dtype=np.float32),
            TfidfVectorizer(analyzer="word", ngram_range=tuple(c.word_ngrams), min_df=c.min_df,
                            max_features=half, sublinear_tf=True, token_pattern=r"(?u)\b\w+\b", dtype=np.float32),
        ]

    def _transform(self, texts: list[str]) -> sp.csr_matrix:
        return sp.hstack([v.transform(texts) for v in self.vecs]).tocsr()

    def fit(self, texts: list[str], y: np.ndarray, unlabeled: list[str] | None = None) -> "SGDTextModel":
        vocab_texts = texts + list(unlabeled) if (self.cfg.vocab_on_test and unlabeled) else texts
        self.vecs = [v.fit(vocab_texts) for v in self._vectorizers()]
        self.clf = SGDClassifier(loss="modified_huber", alpha=self.cfg.alpha, max_iter=self.cfg.max_iter,
                                 tol=1e-4, random_state=self.seed, class_weight="balanced")
        self.clf.fit(self._transform(texts), y)
        return self

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        # modified_huber's own predict_proba clips the margin to [-1, 1] and ties every confident text at 0/1,
        # which destroys the ranking that AUC and TPR@1%FPR measure; a logistic map of the margin keeps it.
        p1 = 1.0 / (1.0 + np.exp(-2.0 * self.clf.decision_function(self._transform(texts))))
        return np.column_stack([1 - p1, p1])


class LGBTextModel:
    def __init__(self, cfg: LGBConfig = LGBConfig(), seed: int = 42, cache: FeatureCache | None = None):
        self.cfg, self.seed = cfg, seed
        self.cache = cache or FeatureCache()

    def _features(self, texts: list[str]) -> np.ndarray:
        sty = self.cache(texts).to_numpy(np.float32)
        if self.svd is None:
            return sty
        return np.hstack([sty, self.svd.transform(self.tfidf.transform(texts)).astype(np.float32)])

    def fit(self, texts: list[str], y: np.ndarray, unlabeled: list[str] | None = None) -> "LGBTextModel":
        import lightgbm as lgb

        c = self.cfg
        self.tfidf, self.svd = None, None
        if c.svd_components > 0:
            self.tfidf = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), max_features=c.tfidf_max_features,
                                         sublinear_tf=True, min_df=2, dtype=np.float32)
            X_t = self.tfidf.fit_transform(texts)
            n_comp = max(1, min(c.svd_components, X_t.shape[1] - 1, X_t.shape[0] - 1))
            self.svd = TruncatedSVD(n_comp, random_state=self.seed).fit(X_t)
        X = self._features(texts)
        X_fit, X_es, y_fit, y_es = train_test_split(X, y, test_size=c.valid_fraction, stratify=y, random_state=self.seed)
        self.model = lgb.LGBMClassifier(
            n_estimators=c.n_estimators, learning_rate=c.learning_rate, num_leaves=c.num_leaves,
            min_child_samples=c.min_child_samples, subsample=c.subsample, subsample_freq=1,
            colsample_bytree=c.colsample_bytree, random_state=self.seed, verbose=-1, n_jobs=2,
        )
        with warnings.catch_warnings():  # eval_set is renamed in newer LightGBM; both spellings work
            warnings.simplefilter("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", message=".*eval_set.*")
            self.model.fit(X_fit, y_fit, eval_set=[(X_es, y_es)], eval_metric="auc",
                           callbacks=[lgb.early_stopping(c.early_stopping_rounds, verbose=False)])
        return self

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.model.predict_proba(self._features(texts))


def make_factory(name: str, exp_cfg, cache: FeatureCache | None = None):
    """Model factory for `cv.run_cv` from the experiment config (one shared feature cache across folds)."""
    if name == "sgd":
        return lambda: SGDTextModel(exp_cfg.sgd, exp_cfg.seed)
    if name == "lgb":
        cache = cache or FeatureCache()
        return lambda: LGBTextModel(exp_cfg.lgb, exp_cfg.seed, cache)
    raise ValueError(f"unknown classical model {name!r}")
