import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SHARED = ROOT.parent / "shared" / "data"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def toy_frame(n: int = 120, seed: int = 0, messy: bool = True) -> pd.DataFrame:
    """Synthetic labelled texts with groups/sources; AI texts use a distinct vocabulary so models can learn."""
    rng = np.random.default_rng(seed)
    human = "the cat sat on a mat while rain fell over old town streets near river".split()
    ai = "furthermore it is important to note that overall this delve showcases robust insights".split()
    rows = []
    for i in range(n):
        y = int(i % 2)
        words = rng.choice(ai if y else human, size=int(rng.integers(8, 40)))
        text = " ".join(words)
        if messy and i % 7 == 0:
            text = text + '\r\n"quoted", \u2028 comma, ünïcødé 中文'
        rows.append({"id": f"doc-{i}", "text": text, "label": y, "source": f"src{i % 3}",
                     "language": "en", "generator": "gpt" if y else "human", "group": f"g{i // 4}"})
    return pd.DataFrame(rows)


@pytest.fixture
def toy():
    return toy_frame()


@pytest.fixture
def shared_small():
    p = SHARED / "dev_small.csv"
    if not p.is_file():
        pytest.skip("../shared/data/dev_small.csv not present")
    return p


@pytest.fixture
def tiny_project(tmp_path, monkeypatch):
    """A temp working dir with input/train.csv, input/test.csv and a config; returns (dir, config_path)."""
    from hopedetect.io import atomic_write_csv

    monkeypatch.chdir(tmp_path)
    df = toy_frame(160, seed=1)
    atomic_write_csv(df.iloc[:120], tmp_path / "input" / "train.csv")
    atomic_write_csv(df.iloc[120:].drop(columns="label").assign(id=lambda d: "t" + d.id),
                     tmp_path / "input" / "test.csv")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("name: tiny\nseed: 0\nfolds: {n_folds: 3}\nmodels: []\n")
    return tmp_path, cfg


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory):
    from hopedetect.tiny import make_tiny_encoder

    return make_tiny_encoder(tmp_path_factory.mktemp("enc") / "tiny-deberta", toy_frame(200).text.tolist())


TINY_TRAIN = ("{m}: {{encoder: {enc}, max_length: 48, epochs: 2, batch_size: 16, eval_batch_size: 32, "
              "head: {{d: 16, n_heads: 2, titans_chunk: 4, cms_chunks: [8, 16], n_probes: 2}}}}\n")


def tiny_train_yaml(enc, models=("hope", "deberta")) -> str:
    return "".join(TINY_TRAIN.format(m=m, enc=enc) for m in models)
