"""Inference: assemble fold parts into the OOF + submission files, or (Kaggle, offline) average fold
checkpoints from attached datasets over a test file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .cv import assemble
from .experiment import Experiment
from .io import write_submission
from .train import DocDataset, load_checkpoint, make_loader, predict, tokenize_docs


def transformer_models(exp: Experiment) -> list[str]:
    return [m for m in exp.cfg.models if m in ("deberta", "hope")]


def assemble_all(exp: Experiment) -> dict[str, pd.DataFrame]:
    """OOF frame per transformer model whose every fold is finished (writes oof/ and submissions/)."""
    return {getattr(exp.cfg, m).name: assemble(exp, getattr(exp.cfg, m).name) for m in transformer_models(exp)}


def checkpoint_dirs(root: str | Path) -> list[Path]:
    """Every `best/` checkpoint under root (e.g. an attached Kaggle dataset of runs/models/<exp>/<model>)."""
    dirs = sorted(p.parent for p in Path(root).rglob("config.json") if p.parent.name == "best") or \
        ([Path(root)] if (Path(root) / "config.json").is_file() else [])
    if not dirs:
        raise FileNotFoundError(f"no checkpoints (best/config.json) under {root}")
    return dirs


@torch.no_grad()
def predict_with_checkpoints(dirs: list[Path], texts: list[str], batch_size: int = 32,
                             long_doc: str = "truncate", max_length: int = 512) -> np.ndarray:
    """Mean P(AI) over fold checkpoints; each checkpoint carries its own tokenizer and config (offline)."""
    from transformers import AutoTokenizer

    from .config import TrainConfig

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    amp = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    preds = []
    for d in dirs:
        tok = AutoTokenizer.from_pretrained(str(d))
        model = load_checkpoint(d).to(device)
        tc = TrainConfig(max_length=max_length, long_doc=long_doc)
        ds = DocDataset(tokenize_docs(tok, texts, tc))
        preds.append(predict(model, make_loader(ds, batch_size, False, 0, tok.pad_token_id or 0, long_doc == "memory"),
                             device, amp))
    return np.mean(preds, 0)


def infer_offline(cfg, model: str, root: str | Path) -> Path:
    """Kaggle path (no train file needed): fold checkpoints from an attached dataset, averaged over the test
    file of the config -> submissions/submission_<name>.csv."""
    from .data import load_frame, normalized_texts
    from .io import run_metadata, submission_path

    tc = getattr(cfg, model)
    test = load_frame(cfg.data.test, "test")
    p = predict_with_checkpoints(checkpoint_dirs(root), normalized_texts(test, cfg.data.normalize),
                                 tc.eval_batch_size, tc.long_doc, tc.max_length)
    return write_submission(test["id"], p, submission_path(cfg.submission_dir, tc.name),
                            run_metadata(cfg.seed, cfg, model=tc.name, checkpoints=str(root)))
