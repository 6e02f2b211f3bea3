"""Hand-made stylometric features (per text, deterministic, language-agnostic where possible)."""
from __future__ import annotations

import re
import zlib
from collections import Counter

import numpy as np
import pandas as pd

_WORD = re.compile(r"\w+", re.UNICODE)
_SENT = re.compile(r"[^.!?。！？]+[.!?。！？]*")
_URL = re.compile(r"https?://|www\.")
_PUNCT = set(".,;:!?\"'()[]{}-–—…/\\*&%$#@")


def _safe_div(a: float, b: float) -> float:
    return a / b if b else 0.0


def text_features(t: str) -> dict[str, float]:
    n = len(t)
    words = _WORD.findall(t)
    nw = len(words)
    wl = np.array([len(w) for w in words]) if nw else np.zeros(1)
    sents = [s for s in (x.strip() for x in _SENT.findall(t)) if s]
    sl = np.array([len(_WORD.findall(s)) for s in sents]) if sents else np.zeros(1)
    lower = [w.lower() for w in words]
    counts = Counter(lower)
    tri = list(zip(lower, lower[1:], lower[2:]))
    tri_counts = Counter(tri)
    raw = t.encode("utf-8")
    return {
        "n_chars": float(n),
        "log_n_chars": float(np.log1p(n)),
        "n_words": float(nw),
        "word_len_mean": float(wl.mean()),
        "word_len_std": float(wl.std()),
        "n_sents": float(len(sents)),
        "sent_len_mean": float(sl.mean()),
        "sent_len_std": float(sl.std()),
        "sent_len_cv": _safe_div(float(sl.std()), float(sl.mean())),
        "ttr": _safe_div(len(counts), nw),
        "hapax_ratio": _safe_div(sum(1 for c in counts.values() if c == 1), nw),
        "punct_ratio": _safe_div(sum(ch in _PUNCT for ch in t), n),
        "comma_per_word": _safe_div(t.count(","), nw),
        "digit_ratio": _safe_div(sum(ch.isdigit() for ch in t), n),
        "upper_ratio": _safe_div(sum(ch.isupper() for ch in t), n),
        "space_ratio": _safe_div(sum(ch.isspace() for ch in t), n),
        "non_ascii_ratio": _safe_div(sum(ord(ch) > 127 for ch in t), n),
        "newline_rate": _safe_div(t.count("\n"), n) * 100,
        "url_count": float(len(_URL.findall(t))),
        "repeat_trigram_rate": _safe_div(sum(c - 1 for c in tri_counts.values() if c > 1), len(tri)),
        "compression_ratio": _safe_div(len(zlib.compress(raw, 6)), len(raw)),
        "ends_with_punct": float(t.rstrip()[-1:] in (".", "!", "?", "。")),
        "starts_upper": float(t[:1].isupper()),
        "paren_quote_rate": _safe_div(sum(t.count(c) for c in "()\"'"), n) * 100,
    }


def stylometric_frame(texts: list[str]) -> pd.DataFrame:
    return pd.DataFrame([text_features(t) for t in texts])


class FeatureCache:
    """Memoises per-text features across folds (features are a pure function of the text)."""

    def __init__(self, fn=stylometric_frame):
        self.fn = fn
        self._cache: dict[str, np.ndarray] = {}
        self.columns: list[str] | None = None

    def __call__(self, texts: list[str]) -> pd.DataFrame:
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            f = self.fn(missing)
            self.columns = list(f.columns)
            for t, row in zip(missing, f.to_numpy(dtype=np.float32)):
                self._cache[t] = row
        return pd.DataFrame(np.stack([self._cache[t] for t in texts]), columns=self.columns)
