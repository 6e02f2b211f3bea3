"""The experiment context every notebook and script starts from: config + validated data + shared folds."""
from __future__ import annotations

import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from .config import ExperimentConfig, config_hash, dump_yaml, load_config
from .data import DataWarning, check_train_test, load_frame, normalized_texts, subsample
from .folds import ensure_folds
from .io import atomic_write_text, oof_path, run_metadata, submission_path


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # torch is optional for the classical models
        pass


@dataclass
class Experiment:
    cfg: ExperimentConfig
    train: pd.DataFrame
    test: pd.DataFrame | None
    folds: pd.Series  # aligned to train rows

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.runs_dir) / self.cfg.name

    def train_texts(self) -> list[str]:
        return normalized_texts(self.train, self.cfg.data.normalize)

    def test_texts(self) -> list[str]:
        return [] if self.test is None else normalized_texts(self.test, self.cfg.data.normalize)

    def oof_path(self, model: str) -> Path:
        return oof_path(self.cfg.oof_dir, model)

    def submission_path(self, model: str) -> Path:
        return submission_path(self.cfg.submission_dir, model)

    def meta(self, **extra) -> dict:
        return run_metadata(self.cfg.seed, self.cfg, config_hash=config_hash(self.cfg), **extra)

    def save_config(self) -> Path:
        return atomic_write_text(self.run_dir / "config.yaml", dump_yaml(self.cfg))


def load_experiment(config: str | Path | ExperimentConfig | None = None, overrides: Iterable[str] = (),
                    with_test: bool = True) -> Experiment:
    cfg = config if isinstance(config, ExperimentConfig) else load_config(config, overrides)
    seed_everything(cfg.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("always", DataWarning)
        train = load_frame(cfg.data.train, "train")
        train = subsample(train, cfg.data.max_train_rows, cfg.seed)
        test = load_frame(cfg.data.test, "test") if (with_test and cfg.data.test) else None
        if test is not None:
            check_train_test(train, test, cfg.data.train, cfg.data.test)
    folds = ensure_folds(train, cfg.folds.path, cfg.folds.scheme, cfg.folds.n_folds, cfg.seed)
    exp = Experiment(cfg, train, test, folds)
    exp.save_config()
    return exp
