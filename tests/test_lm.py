import numpy as np
import pytest
import torch

from conftest import toy_frame
from hopedetect import lm
from hopedetect.config import LMConfig


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    from hopedetect.tiny import make_tiny_causal_lm

    d = tmp_path_factory.mktemp("lm")
    texts = toy_frame(200).text.tolist()
    a = make_tiny_causal_lm(d / "a", texts)
    return a, make_tiny_causal_lm(d / "b", texts, seed=1, tokenizer_from=a)


def test_fast_detectgpt_criterion_matches_direct_computation():
    torch.manual_seed(0)
    V, T = 7, 5
    logits = torch.randn(1, T, V, dtype=torch.float64) * 2
    x = torch.randint(0, V, (1, T))
    st = lm.token_stats(logits, x, torch.ones(1, T))
    p = torch.softmax(logits[0], -1).numpy()
    lp = np.log(p)
    ll = sum(lp[t, x[0, t]] for t in range(T))
    mu = sum(sum(p[t, v] * lp[t, v] for v in range(V)) for t in range(T))  # enumerate the vocabulary
    var = sum(sum(p[t, v] * lp[t, v] ** 2 for v in range(V)) - sum(p[t, v] * lp[t, v] for v in range(V)) ** 2
              for t in range(T))
    assert st["fastdetect"].item() == pytest.approx((ll - mu) / np.sqrt(var), rel=1e-10)
    # and the analytic mean/variance equal what sampling x~p would estimate
    rng = np.random.default_rng(0)
    samples = np.array([sum(lp[t, rng.choice(V, p=p[t])] for t in range(T)) for _ in range(20000)])
    assert samples.mean() == pytest.approx(mu, abs=0.05) and samples.var() == pytest.approx(var, rel=0.05)
    ranks = [(lp[t] > lp[t, x[0, t]]).sum() + 1 for t in range(T)]
    assert st["logrank"].item() == pytest.approx(np.mean(np.log(ranks)))
    assert (st["gltr_10"] + st["gltr_100"] + st["gltr_1000"] + st["gltr_rest"]).item() == pytest.approx(1.0)


def test_scorer_padding_invariant_cached_and_short_texts(tiny_lm, tmp_path, monkeypatch):
    a, b = tiny_lm
    cfg = LMConfig(model=str(a), performer=str(b), cache_dir=str(tmp_path), batch_size=3, min_tokens=4)
    texts = toy_frame(12).text.tolist() + ["hi"]
    sc = lm.LMScorer(cfg, "cpu")
    together = sc.score(texts, progress=False)
    alone = [lm.LMScorer(LMConfig(model=str(a), performer=str(b), cache_dir=str(tmp_path / "x"), batch_size=1),
                         "cpu").score([t], progress=False) for t in texts[:3]]
    for i in range(3):  # batched with padding == scored alone
        assert np.allclose(together.iloc[i].to_numpy(), alone[i].iloc[0].to_numpy(), atol=1e-4)
    assert "binoculars" in together and together.notna().all().all()
    short = together.iloc[-1]
    assert short.short_text == 1 and short.fastdetect == 0
    # cache hit: a new scorer never runs the model again
    sc2 = lm.LMScorer(cfg, "cpu")
    monkeypatch.setattr(sc2, "_score_batch", lambda ids: (_ for _ in ()).throw(AssertionError("recomputed")))
    assert np.allclose(sc2.score(texts, progress=False).to_numpy(), together.to_numpy())


def test_missing_lm_path_is_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="LM path not found"):
        lm.LMScorer(LMConfig(model=str(tmp_path / "nope"), cache_dir=str(tmp_path)))


def test_lm_models_through_cv(tiny_project, tiny_lm):
    from hopedetect import cv
    from hopedetect.config import load_config
    from hopedetect.experiment import load_experiment
    from hopedetect.io import read_oof

    d, cfg_path = tiny_project
    exp = load_experiment(load_config(cfg_path, [f"lm.model={tiny_lm[0]}", f"lm.cache_dir={d}/lmcache",
                                                 "lgb.n_estimators=20"]))
    scorer = lm.LMScorer(exp.cfg.lm, "cpu")
    for name in ("lm_zero", "lm_lgb"):
        oof = cv.run_cv(exp, name, lm.make_factory(name, exp.cfg, scorer), echo=lambda *_: None)
        read_oof(d / f"oof/{name}.csv", expected_ids=exp.train.id)
        assert oof.pred.between(0, 1).all() and (d / f"submissions/submission_{name}.csv").is_file()
