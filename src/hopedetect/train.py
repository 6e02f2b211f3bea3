"""Training and inference of the transformer models (HOPE and the plain encoder) for one fold.

    run_fold(exp, "hope", fold) -> OOF part frame

Small steps: tokenize once (cached on disk), length-bucketed batches with dynamic padding, two AdamW param
groups with linear warmup + cosine decay, gradient accumulation and clipping, AMP through HF Accelerate
(bf16 where supported, fp16 with a scaler otherwise, fp32 on CPU), evaluation each epoch with the best epoch
kept as a deep copy, per-epoch resumable checkpoints, and a finished fold skipped. The same code runs on one
CPU and under `accelerate launch` on several GPUs (the memory state is per sample: no buffers to sync).
"""
from __future__ import annotations

import hashlib
import json
import math
import pickle
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .config import TrainConfig
from .cv import FoldParts, assemble_if_complete
from .experiment import Experiment
from .io import atomic_write_bytes, atomic_write_json
from .metrics import roc_auc
from .modeling import HopeForSequenceClassification, resolve_encoder_path

Docs = list[list[list[int]]]  # per document: windows of token ids


# ------------------------------------------------------------------------------------------ tokenize
def load_tokenizer(encoder: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_encoder_path(encoder))


def tokenize_docs(tokenizer, texts: list[str], tc: TrainConfig) -> Docs:
    """`truncate`: one window of ≤ max_length tokens. `memory`: up to `max_windows` windows with `doc_stride`
    tokens of overlap, concatenated for the head (design §14)."""
    if tc.long_doc not in ("truncate", "memory"):
        raise ValueError(f"long_doc must be truncate or memory, got {tc.long_doc!r}")
    if tc.long_doc == "truncate":
        enc = tokenizer(texts, truncation=True, max_length=tc.max_length)
        return [[ids] for ids in enc["input_ids"]]
    enc = tokenizer(texts, truncation=True, max_length=tc.max_length, stride=tc.doc_stride,
                    return_overflowing_tokens=True)
    docs: Docs = [[] for _ in texts]
    for ids, src in zip(enc["input_ids"], enc["overflow_to_sample_mapping"]):
        if len(docs[src]) < tc.max_windows:
            docs[src].append(ids)
    return docs


def cached_tokenize(tokenizer, texts: list[str], tc: TrainConfig, cache_dir: Path) -> Docs:
    h = hashlib.sha1()
    h.update(json.dumps([tc.encoder, tc.max_length, tc.long_doc, tc.doc_stride, tc.max_windows,
                         getattr(tokenizer, "name_or_path", "")]).encode())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    path = cache_dir / f"tok-{h.hexdigest()[:16]}.pkl"
    if path.is_file():
        return pickle.loads(path.read_bytes())
    docs = tokenize_docs(tokenizer, texts, tc)
    atomic_write_bytes(path, pickle.dumps(docs))
    return docs


# -------------------------------------------------------------------------------------------- batching
class DocDataset(Dataset):
    def __init__(self, docs: Docs, labels: np.ndarray | None = None, hidden: list[torch.Tensor] | None = None):
        self.docs, self.labels, self.hidden = docs, labels, hidden

    def __len__(self) -> int:
        return len(self.docs)

    def __getitem__(self, i: int) -> dict:
        item = {"idx": i, "windows": self.docs[i]}
        if self.hidden is not None:
            item["hidden"] = self.hidden[i]
        if self.labels is not None:
            item["label"] = int(self.labels[i])
        return item

    def lengths(self) -> np.ndarray:
        return np.array([sum(len(w) for w in d) for d in self.docs])


class LengthBucketSampler(Sampler[list[int]]):
    """Batches of similar length (less padding): shuffle, sort inside mega-batches of 50 batches, shuffle
    the batches. Seeded by (seed, epoch) so a resumed epoch sees the same order."""

    def __init__(self, lengths: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0):
        self.lengths, self.bs, self.shuffle, self.seed, self.epoch = lengths, batch_size, shuffle, seed, 0

    def __iter__(self) -> Iterator[list[int]]:
        n = len(self.lengths)
        if not self.shuffle:
            order = np.argsort(-self.lengths, kind="stable")
            yield from (order[i:i + self.bs].tolist() for i in range(0, n, self.bs))
            return
        rng = np.random.default_rng((self.seed, self.epoch))
        perm = rng.permutation(n)
        mega = self.bs * 50
        batches = []
        for i in range(0, n, mega):
            chunk = perm[i:i + mega]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches += [chunk[j:j + self.bs].tolist() for j in range(0, len(chunk), self.bs)]
        for b in rng.permutation(len(batches)):
            yield batches[b]

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.bs)


def collate(items: list[dict], pad_id: int, windows: bool) -> dict:
    """Dynamic padding to the longest window in the batch. windows=True -> input_ids [B, W, L]."""
    out: dict = {"idx": torch.tensor([it["idx"] for it in items])}
    if "label" in items[0]:
        out["labels"] = torch.tensor([it["label"] for it in items])
    if "hidden" in items[0]:  # cached encoder states [L_i, D]
        L = max(it["hidden"].shape[0] for it in items)
        H = torch.zeros(len(items), L, items[0]["hidden"].shape[1], dtype=items[0]["hidden"].dtype)
        M = torch.zeros(len(items), L, dtype=torch.long)
        for b, it in enumerate(items):
            H[b, : it["hidden"].shape[0]], M[b, : it["hidden"].shape[0]] = it["hidden"], 1
        return out | {"hidden_states": H, "attention_mask": M}
    W = max(len(it["windows"]) for it in items) if windows else 1
    L = max(len(w) for it in items for w in it["windows"][:W])
    ids = torch.full((len(items), W, L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), W, L), dtype=torch.long)
    for b, it in enumerate(items):
        for w, win in enumerate(it["windows"][:W]):
            ids[b, w, : len(win)], mask[b, w, : len(win)] = torch.tensor(win), 1
    if not windows:
        ids, mask = ids[:, 0], mask[:, 0]
    return out | {"input_ids": ids, "attention_mask": mask}


def make_loader(ds: DocDataset, batch_size: int, shuffle: bool, seed: int, pad_id: int, windows: bool,
                num_workers: int = 0) -> DataLoader:
    sampler = LengthBucketSampler(ds.lengths(), batch_size, shuffle, seed)
    return DataLoader(ds, batch_sampler=sampler, num_workers=num_workers,
                      collate_fn=lambda items: collate(items, pad_id, windows))


# ------------------------------------------------------------------------------------ model / optimiser
def resolve_mixed_precision(mp: str) -> str:
    if mp != "auto":
        return mp
    if not torch.cuda.is_available():
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def build_model(tc: TrainConfig) -> HopeForSequenceClassification:
    model = HopeForSequenceClassification.from_encoder(tc.encoder, tc.head, aux_memory_loss=tc.aux_memory_loss)
    if not tc.encoder_trainable:
        model.encoder.requires_grad_(False)
    return model


def build_optimizer(model: HopeForSequenceClassification, tc: TrainConfig, total_steps: int):
    from transformers import get_cosine_schedule_with_warmup

    groups = model.param_groups(tc.lr_encoder, tc.lr_memory, tc.weight_decay, tc.weight_decay_memory)
    opt = torch.optim.AdamW(groups)
    warmup = int(round(tc.warmup_ratio * total_steps))
    return opt, get_cosine_schedule_with_warmup(opt, warmup, max(total_steps, 1))


@torch.no_grad()
def encode_all(model: HopeForSequenceClassification, ds: DocDataset, batch_size: int, pad_id: int,
               windows: bool, device) -> list[torch.Tensor]:
    """Frozen-encoder mode: run the encoder once per document, keep its valid token states (fp16, CPU)."""
    model.encoder.eval().to(device)
    out: list[torch.Tensor | None] = [None] * len(ds)
    for batch in make_loader(ds, batch_size, False, 0, pad_id, windows):
        H, M = model.encode(batch["input_ids"].to(device), batch["attention_mask"].to(device))
        for b, i in enumerate(batch["idx"].tolist()):
            out[i] = H[b][M[b].bool()].to(torch.float16).cpu()
    return out  # type: ignore[return-value]


def cached_encoder_states(model: HopeForSequenceClassification, docs: Docs, tc: TrainConfig, pad_id: int,
                          device, cache_dir: Path) -> list[torch.Tensor]:
    """Encoder states of every document, computed once per (encoder, settings, documents) and stored on disk,
    so every fold and every head variant of a frozen-encoder experiment reuses them."""
    h = hashlib.sha1(json.dumps([tc.encoder, tc.max_length, tc.long_doc, tc.doc_stride, tc.max_windows]).encode())
    h.update(pickle.dumps(docs))
    path = cache_dir / f"enc-{h.hexdigest()[:16]}.pt"
    if path.is_file():
        return torch.load(path)
    states = encode_all(model, DocDataset(docs), tc.eval_batch_size, pad_id, tc.long_doc == "memory", device)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(states, tmp)
    tmp.replace(path)
    return states


@torch.no_grad()
def predict(model, loader: DataLoader, device, autocast_dtype=None) -> np.ndarray:
    """P(AI) for every document of the loader's dataset, in dataset order."""
    model.eval()
    n = len(loader.dataset)
    probs = np.zeros(n)
    for batch in loader:
        idx = batch.pop("idx")
        batch.pop("labels", None)
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = model(**batch).logits
        probs[idx.numpy()] = torch.softmax(logits.float(), -1)[:, 1].cpu().numpy()
    return probs


# ------------------------------------------------------------------------------------------ checkpoints
@dataclass
class FoldPaths:
    root: Path

    @property
    def best(self) -> Path:
        return self.root / "best"

    @property
    def last(self) -> Path:
        return self.root / "last"


def save_best(model, tokenizer, path: Path, meta: dict) -> None:
    """save_pretrained (config inside) + tokenizer + meta, written to a temp dir and renamed (atomic)."""
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    atomic_write_json(tmp / "training_meta.json", meta)
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def load_checkpoint(path: str | Path) -> HopeForSequenceClassification:
    return HopeForSequenceClassification.from_pretrained(str(path))


# --------------------------------------------------------------------------------------------- training
def _unwrap(model):
    return getattr(model, "module", model)


def train_one_epoch(model, loader, opt, sched, accelerator, tc: TrainConfig, epoch: int) -> dict:
    from tqdm.auto import tqdm

    model.train()
    t0, n_tok, losses, surprise = time.time(), 0, [], []
    steps = len(loader) if tc.max_steps_per_epoch <= 0 else min(len(loader), tc.max_steps_per_epoch * tc.grad_accum)
    bar = tqdm(total=steps, desc=f"epoch {epoch}", disable=not accelerator.is_local_main_process, leave=False)
    for i, batch in enumerate(loader):
        if i >= steps:
            break
        batch.pop("idx")
        with accelerator.accumulate(model):
            out = model(**batch)
            if not torch.isfinite(out.loss):
                raise FloatingPointError(f"non-finite loss at epoch {epoch} step {i}")
            accelerator.backward(out.loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), tc.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad()
        losses.append(out.loss.item())
        if out.memory_stats:
            surprise.append(float(out.memory_stats["surprise_last"].mean()))
        n_tok += int(batch["attention_mask"].sum())
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", surprise=f"{np.mean(surprise[-20:]) if surprise else 0:.4f}",
                        tok_s=f"{n_tok / (time.time() - t0):.0f}")
    bar.close()
    return {"loss": float(np.mean(losses)) if losses else float("nan"),
            "surprise_last": float(np.mean(surprise)) if surprise else None,
            "tokens_per_s": n_tok / max(time.time() - t0, 1e-9), "seconds": time.time() - t0}


def evaluate_epoch(model, loader, device, y: np.ndarray, autocast_dtype) -> tuple[float, np.ndarray]:
    p = predict(_unwrap(model), loader, device, autocast_dtype)
    return roc_auc(y, p), p


def run_fold(exp: Experiment, model_name: str, fold: int, echo: Callable[[str], None] = print) -> pd.DataFrame | None:
    """Train `exp.cfg.<model_name>` on every fold but `fold`, keep the best epoch by validation AUC, write the
    fold's OOF/test parts. Returns the assembled OOF frame once every fold is done (None before)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    tc: TrainConfig = getattr(exp.cfg, model_name)
    parts = FoldParts(exp, tc.name)
    if parts.done(fold):
        echo(f"[{tc.name}] fold {fold}: done earlier, skipped")
        return assemble_if_complete(exp, tc.name)
    paths = FoldPaths(Path(exp.cfg.models_dir) / exp.cfg.name / tc.name / f"fold{fold}")
    mp = resolve_mixed_precision(tc.mixed_precision)
    accelerator = Accelerator(mixed_precision=mp, gradient_accumulation_steps=tc.grad_accum,
                              cpu=not torch.cuda.is_available())
    device = accelerator.device
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mp)
    set_seed(exp.cfg.seed + fold)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)

    tokenizer = load_tokenizer(tc.encoder)
    windows = tc.long_doc == "memory"
    cache = Path(exp.cfg.runs_dir) / "cache"
    docs = cached_tokenize(tokenizer, exp.train_texts(), tc, cache)
    test_docs = cached_tokenize(tokenizer, exp.test_texts(), tc, cache) if exp.test is not None else None
    va = exp.folds.to_numpy() == fold
    y = exp.train["label"].to_numpy()
    model = build_model(tc)
    pad = tokenizer.pad_token_id or 0

    tr_ds = DocDataset([d for d, v in zip(docs, va) if not v], y[~va])
    va_ds = DocDataset([d for d, v in zip(docs, va) if v], y[va])
    te_ds = DocDataset(test_docs) if test_docs is not None else None
    if not tc.encoder_trainable:  # encoder states computed once per experiment; the encoder never runs again
        H = cached_encoder_states(model, docs, tc, pad, device, cache)
        tr_ds.hidden = [h for h, v in zip(H, va) if not v]
        va_ds.hidden = [h for h, v in zip(H, va) if v]
        if te_ds is not None:
            te_ds.hidden = cached_encoder_states(model, test_docs, tc, pad, device, cache)
    train_loader = make_loader(tr_ds, tc.batch_size, True, exp.cfg.seed + fold, pad, windows, tc.num_workers)
    val_loader = make_loader(va_ds, tc.eval_batch_size, False, 0, pad, windows)
    steps_per_epoch = math.ceil(len(train_loader) / tc.grad_accum)
    if tc.max_steps_per_epoch > 0:
        steps_per_epoch = min(steps_per_epoch, tc.max_steps_per_epoch)
    opt, sched = build_optimizer(model, tc, steps_per_epoch * tc.epochs)
    model, opt, train_loader, sched = accelerator.prepare(model, opt, train_loader, sched)

    state = _resume(accelerator, paths)
    best_state = None
    if state["best_epoch"] is not None and paths.best.is_dir():
        best_state = {k: v.clone() for k, v in load_checkpoint(paths.best).state_dict().items()}
    for epoch in range(state["epoch"] + 1, tc.epochs):
        _set_epoch(train_loader, epoch)
        stats = train_one_epoch(model, train_loader, opt, sched, accelerator, tc, epoch)
        auc = float("nan")
        if accelerator.is_main_process:
            auc, _ = evaluate_epoch(model, val_loader, device, y[va], autocast_dtype)
            improved = state["best_epoch"] is None or auc > state["best_auc"] or not tc.select_best_epoch
            echo(f"[{tc.name}] fold {fold} epoch {epoch}: loss {stats['loss']:.4f} val AUC {auc:.4f}"
                 f" ({stats['tokens_per_s']:.0f} tok/s){' *' if improved else ''}")
            if improved:
                # a deep copy: the notebook's state_dict().copy() was shallow and silently kept the last epoch
                best_state = {k: v.detach().cpu().clone() for k, v in _unwrap(model).state_dict().items()}
                state.update(best_epoch=epoch, best_auc=auc)
                save_best(_unwrap(model), tokenizer, paths.best,
                          exp.meta(model=tc.name, fold=fold, epoch=epoch, val_auc=auc))
        state["epoch"] = epoch
        state["history"].append({"epoch": epoch, "val_auc": auc, **stats})
        _save_last(accelerator, paths, state)

    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return None
    final = _unwrap(model)
    if best_state is not None:
        final.load_state_dict(best_state)
    pv = predict(final, val_loader, device, autocast_dtype)
    pt = predict(final, make_loader(te_ds, tc.eval_batch_size, False, 0, pad, windows), device,
                 autocast_dtype) if te_ds is not None else None
    parts.write(fold, exp.train["id"][va], pv, pt)
    atomic_write_json(paths.root / "history.json", state)
    echo(f"[{tc.name}] fold {fold}: best epoch {state['best_epoch']} val AUC {state['best_auc']:.4f}")
    return assemble_if_complete(exp, tc.name)


def _set_epoch(loader, epoch: int) -> None:
    """Reach our LengthBucketSampler through Accelerate's wrappers, whatever their depth."""
    s = loader.batch_sampler
    for _ in range(4):
        if isinstance(s, LengthBucketSampler):
            s.epoch = epoch
            return
        s = getattr(s, "batch_sampler", None)
    raise RuntimeError("LengthBucketSampler not found under the prepared loader")


def _resume(accelerator, paths: FoldPaths) -> dict:
    meta = paths.last / "state.json"
    if meta.is_file():
        accelerator.load_state(str(paths.last))
        state = json.loads(meta.read_text())
        accelerator.print(f"resumed from {paths.last} after epoch {state['epoch']}")
        return state
    return {"epoch": -1, "best_epoch": None, "best_auc": None, "history": []}


def _save_last(accelerator, paths: FoldPaths, state: dict) -> None:
    tmp = paths.last.with_name("last.tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        atomic_write_json(tmp / "state.json", state)
        shutil.rmtree(paths.last, ignore_errors=True)
        tmp.rename(paths.last)
    accelerator.wait_for_everyone()


def run_folds(exp: Experiment, model_name: str, fold: int = -1, echo: Callable[[str], None] = print) -> pd.DataFrame | None:
    """Notebook entry point: `fold=-1` trains every fold in turn, `fold=k` only fold k (one process per fold)."""
    from .folds import fold_ids

    out = None
    for k in fold_ids(exp.folds) if fold < 0 else [fold]:
        out = run_fold(exp, model_name, k, echo)
    return out


def fold_history(exp: Experiment, model_name: str) -> pd.DataFrame:
    """Per-epoch history (loss, validation AUC, throughput) of every finished fold."""
    tc: TrainConfig = getattr(exp.cfg, model_name)
    rows = []
    for f in sorted((Path(exp.cfg.models_dir) / exp.cfg.name / tc.name).glob("fold*/history.json")):
        h = json.loads(f.read_text())
        rows += [{"fold": f.parent.name, "best_epoch": h["best_epoch"], **r} for r in h["history"]]
    return pd.DataFrame(rows)
