import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import tiny_train_yaml
from hopedetect import train
from hopedetect.config import HeadConfig, load_config
from hopedetect.experiment import load_experiment
from hopedetect.io import read_oof, read_submission
from hopedetect.modeling import HopeForSequenceClassification


@pytest.fixture
def tiny_exp(tiny_project, tiny_encoder):
    d, cfg_path = tiny_project
    cfg_path.write_text(cfg_path.read_text() + tiny_train_yaml(tiny_encoder))
    return d, load_experiment(load_config(cfg_path))


def test_one_fold_writes_parts_checkpoint_and_self_describing_config(tiny_exp):
    d, exp = tiny_exp
    assert train.run_fold(exp, "hope", 0, echo=lambda *_: None) is None  # other folds pending
    part = pd.read_csv(d / "runs/tiny/parts/hope/fold0.csv")
    assert set(part.id) == set(exp.train.id[exp.folds == 0]) and part.pred.between(0, 1).all()
    best = d / "runs/models/tiny/hope/fold0/best"
    cfg = json.loads((best / "config.json").read_text())
    assert cfg["model_type"] == "hope_detector" and cfg["encoder_config"]["model_type"] == "deberta-v2"
    meta = json.loads((best / "training_meta.json").read_text())
    assert meta["seed"] == 0 and meta["fold"] == 0
    # the checkpoint alone reproduces the fold's validation predictions (tokenizer saved beside it)
    p = train.predict(train.load_checkpoint(best), train.make_loader(
        train.DocDataset([[ids] for ids in train.load_tokenizer(str(best))(
            exp.train_texts(), truncation=True, max_length=48)["input_ids"]]), 32, False, 0, 0, False),
        torch.device("cpu"))
    ref = part.set_index("id").pred.reindex(exp.train.id[exp.folds == 0]).to_numpy()
    assert np.allclose(p[(exp.folds == 0).to_numpy()], ref, atol=1e-6)


def test_best_epoch_weights_are_kept_not_the_last(tiny_exp, monkeypatch):
    d, exp = tiny_exp
    snapshots, aucs = [], iter([0.9, 0.1])
    real = train.evaluate_epoch

    def fake_eval(model, *a, **k):
        snapshots.append({k: v.detach().clone() for k, v in train._unwrap(model).state_dict().items()})
        real(model, *a, **k)
        return next(aucs), None

    monkeypatch.setattr(train, "evaluate_epoch", fake_eval)
    train.run_fold(exp, "hope", 1, echo=lambda *_: None)
    best = HopeForSequenceClassification.from_pretrained(str(d / "runs/models/tiny/hope/fold1/best")).state_dict()
    key = "head.titans.W_in0"
    assert torch.equal(best[key], snapshots[0][key]) and not torch.equal(best[key], snapshots[1][key])
    hist = json.loads((d / "runs/models/tiny/hope/fold1/history.json").read_text())
    assert hist["best_epoch"] == 0 and len(hist["history"]) == 2


def test_resume_after_interruption_matches_uninterrupted_run(tiny_exp, monkeypatch):
    d, exp = tiny_exp
    train.run_fold(exp, "deberta", 2, echo=lambda *_: None)
    ref = pd.read_csv(d / "runs/tiny/parts/deberta/fold2.csv")
    import shutil
    shutil.rmtree(d / "runs/tiny/parts/deberta")
    shutil.rmtree(d / "runs/models/tiny/deberta")
    real, calls = train.train_one_epoch, []

    def crash_on_second_epoch(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real(*a, **k)

    monkeypatch.setattr(train, "train_one_epoch", crash_on_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train.run_fold(exp, "deberta", 2, echo=lambda *_: None)
    assert (d / "runs/models/tiny/deberta/fold2/last/state.json").is_file()
    calls.clear()
    monkeypatch.setattr(train, "train_one_epoch", lambda *a, **k: calls.append(1) or real(*a, **k))
    train.run_fold(exp, "deberta", 2, echo=lambda *_: None)
    assert len(calls) == 1  # only the unfinished epoch ran
    got = pd.read_csv(d / "runs/tiny/parts/deberta/fold2.csv")
    assert np.allclose(got.pred, ref.pred, atol=1e-5)
    calls.clear()
    train.run_fold(exp, "deberta", 2, echo=lambda *_: None)  # finished fold: skipped
    assert calls == []


def test_all_folds_assemble_oof_and_submission(tiny_exp):
    d, exp = tiny_exp
    oof = train.run_folds(exp, "deberta", -1, echo=lambda *_: None)
    assert oof is not None and len(oof) == len(exp.train)
    read_oof(d / "oof/deberta.csv", expected_ids=exp.train.id)
    sub = read_submission(d / "submissions/submission_deberta.csv", expected_ids=exp.test.id)
    assert list(sub.columns) == ["id", "prediction"]
    # Kaggle inference-only path: the fold checkpoints alone (no train file) reproduce the submission
    from hopedetect import infer
    import shutil
    (d / "input/train.csv").unlink()
    shutil.move(str(d / "submissions/submission_deberta.csv"), str(d / "ref.csv"))
    out = infer.infer_offline(exp.cfg, "deberta", d / "runs/models/tiny/deberta")
    got = read_submission(out, expected_ids=exp.test.id)
    assert np.allclose(got.prediction, pd.read_csv(d / "ref.csv").prediction, atol=1e-5)


def test_save_pretrained_round_trip_and_param_groups(tiny_encoder, tmp_path):
    m = HopeForSequenceClassification.from_encoder(str(tiny_encoder), HeadConfig(d=16, n_heads=2, cms_chunks=(8,))).eval()
    ids = torch.randint(5, 100, (2, 2, 12))  # two windows per document (long_doc="memory")
    mask = torch.ones_like(ids)
    mask[1, 1, 5:] = 0
    with torch.no_grad():
        ref = m(input_ids=ids, attention_mask=mask).logits
    m.save_pretrained(tmp_path)
    m2 = HopeForSequenceClassification.from_pretrained(str(tmp_path)).eval()
    with torch.no_grad():
        assert torch.equal(m2(input_ids=ids, attention_mask=mask).logits, ref)
    groups = {g["name"]: g for g in m.param_groups(2e-5, 1e-3, 0.01, 0.0)}
    assert groups["encoder"]["lr"] == 2e-5 and groups["memory"]["lr"] == 1e-3
    assert groups["memory"]["weight_decay"] == 0.0 and groups["encoder/no_decay"]["weight_decay"] == 0.0
    n = sum(len(g["params"]) for g in groups.values())
    assert n == len([p for p in m.parameters() if p.requires_grad])
    assert any(p is m.head.titans.W_in0 for p in groups["memory"]["params"])


def test_frozen_encoder_mode_caches_states(tiny_exp, monkeypatch):
    d, exp = tiny_exp
    import dataclasses
    cfg = dataclasses.replace(exp.cfg, hope=dataclasses.replace(exp.cfg.hope, encoder_trainable=False),
                              deberta=dataclasses.replace(exp.cfg.deberta, encoder_trainable=False))
    exp.cfg = cfg
    calls = []
    real = train.encode_all
    monkeypatch.setattr(train, "encode_all", lambda *a, **k: calls.append(1) or real(*a, **k))
    train.run_fold(exp, "hope", 0, echo=lambda *_: None)
    assert len(calls) == 2  # train+validation documents, test documents: once each, not per epoch
    train.run_fold(exp, "hope", 1, echo=lambda *_: None)
    assert len(calls) == 2  # the next fold reuses the on-disk states
    enc = HopeForSequenceClassification.from_encoder(str(exp.cfg.hope.encoder), exp.cfg.hope.head).encoder.state_dict()
    best = HopeForSequenceClassification.from_pretrained(str(d / "runs/models/tiny/hope/fold0/best")).encoder.state_dict()
    assert all(torch.equal(enc[k], best[k]) for k in enc)  # the encoder was not trained
    train.run_fold(exp, "deberta", 0, echo=lambda *_: None)  # the pool head reads the same fp16 cache
    assert len(calls) == 2


def test_length_bucket_sampler_and_collate():
    lengths = np.array([5, 50, 7, 48, 6, 49, 8, 51])
    s = train.LengthBucketSampler(lengths, 2, shuffle=True, seed=0)
    batches = list(s)
    assert sorted(i for b in batches for i in b) == list(range(8))
    assert all(abs(lengths[b[0]] - lengths[b[-1]]) <= 3 for b in batches)  # similar lengths together
    s.epoch = 1
    assert list(s) != batches  # a new order each epoch
    s.epoch = 0
    assert list(s) == batches  # seeded by (seed, epoch)
    items = [{"idx": 0, "windows": [[1, 2, 3]], "label": 1}, {"idx": 1, "windows": [[4]], "label": 0}]
    b = train.collate(items, pad_id=0, windows=False)
    assert b["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]] and b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_last_epoch_when_best_epoch_selection_is_off(tiny_exp, monkeypatch):
    import dataclasses
    d, exp = tiny_exp
    exp.cfg = dataclasses.replace(exp.cfg, hope=dataclasses.replace(exp.cfg.hope, select_best_epoch=False))
    aucs = iter([0.9, 0.1])
    real = train.evaluate_epoch

    def fake_eval(*a, **k):
        real(*a, **k)
        return next(aucs), None

    monkeypatch.setattr(train, "evaluate_epoch", fake_eval)
    train.run_fold(exp, "hope", 1, echo=lambda *_: None)
    hist = json.loads((d / "runs/models/tiny/hope/fold1/history.json").read_text())
    assert hist["best_epoch"] == 1  # the last epoch, although epoch 0 scored higher
