import numpy as np
import pandas as pd
import pytest

from conftest import toy_frame
from hopedetect import baselines, cv, stack
from hopedetect.config import ExperimentConfig, LGBConfig, SGDConfig, load_config
from hopedetect.experiment import load_experiment
from hopedetect.io import make_oof_frame, read_oof, read_submission, write_oof, write_submission


@pytest.mark.parametrize("model", ["sgd", "lgb"])
def test_baseline_learns_separable_text(model):
    df = toy_frame(160, seed=3)
    cfg = ExperimentConfig(sgd=SGDConfig(min_df=1), lgb=LGBConfig(n_estimators=50, svd_components=8))
    clf = baselines.make_factory(model, cfg)()
    clf.fit(df.text[:120].tolist(), df.label[:120].to_numpy())
    p = clf.predict_proba(df.text[120:].tolist())
    assert p.shape == (40, 2) and np.allclose(p.sum(1), 1)
    from hopedetect.metrics import roc_auc
    assert roc_auc(df.label[120:].to_numpy(), p[:, 1]) > 0.9


def test_sgd_vocabulary_is_fitted_inside_the_fold():
    df = toy_frame(60)
    m = baselines.SGDTextModel(SGDConfig(min_df=1)).fit(df.text.tolist(), df.label.to_numpy(), unlabeled=["zebra xylophone"])
    assert "zebra" not in m.vecs[1].vocabulary_
    m2 = baselines.SGDTextModel(SGDConfig(min_df=1, vocab_on_test=True)).fit(
        df.text.tolist(), df.label.to_numpy(), unlabeled=["zebra xylophone"])
    assert "zebra" in m2.vecs[1].vocabulary_


def test_run_cv_writes_oof_and_submission_and_resumes(tiny_project, monkeypatch):
    d, cfg_path = tiny_project
    exp = load_experiment(load_config(cfg_path, ["sgd.min_df=1"]))
    calls = []
    factory = baselines.make_factory("sgd", exp.cfg)
    counting = lambda: calls.append(1) or factory()  # noqa: E731
    assert cv.run_cv(exp, "sgd", counting, folds=[0], echo=lambda *_: None) is None  # partial: no OOF yet
    assert not exp.oof_path("sgd").exists()
    oof = cv.run_cv(exp, "sgd", counting, echo=lambda *_: None)
    assert len(calls) == 3  # fold 0 was not refitted
    back = read_oof(exp.oof_path("sgd"), expected_ids=exp.train.id)
    assert back.id.tolist() == exp.train.id.tolist() and (back.fold.to_numpy() == exp.folds.to_numpy()).all()
    assert oof.pred.between(0, 1).all()
    sub = read_submission(exp.submission_path("sgd"), expected_ids=exp.test.id)
    assert len(sub) == len(exp.test)


# -------------------------------------------------------------------------------------------- stacking
def _synthetic_oof(n=600, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    df = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "fold": np.arange(n) % 5, "label": y})
    df["perfect"] = np.where(y == 1, 0.6 + 0.4 * rng.random(n), 0.4 * rng.random(n))
    df["noisy"] = np.clip(0.5 * y + rng.random(n) * 0.8, 0, 1)
    df["const"] = 0.5
    return df


def test_hill_climb_gives_perfect_model_all_weight():
    df = _synthetic_oof()
    R = np.column_stack([stack.pct_rank(df[c].to_numpy()) for c in ("noisy", "perfect", "const")])
    w = stack.hill_climb_weights(R, df.label.to_numpy())
    assert w[1] == pytest.approx(1.0) and w[2] == 0


def test_constant_model_adds_nothing_and_nested_scores():
    df = _synthetic_oof()
    res = stack.run_stack(df, ["noisy", "const"])
    s = res.scores.set_index("name").auc
    assert s["blend_rank_weighted"] == pytest.approx(s["noisy"], abs=0.02)
    assert res.final.describe()["method"] in stack.METHODS + (stack.SINGLE,)
    res2 = stack.run_stack(df, ["noisy", "perfect"])
    assert res2.scores.set_index("name").auc["blend_rank_weighted"] > 0.99
    # a blend that does not beat the best single model is not used: the model's own probabilities are
    res3 = stack.run_stack(df, ["noisy", "const"], methods=("rank_mean",))
    assert res3.best == stack.SINGLE and np.allclose(res3.final.predict(df[["noisy", "const"]].to_numpy()), df.noisy)


def test_nested_cv_does_not_score_on_fitted_rows():
    # pure-noise models: a blend fitted and scored on the same rows would look > 0.5; nested CV stays near 0.5
    rng = np.random.default_rng(1)
    n = 400
    df = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "fold": np.arange(n) % 5, "label": rng.integers(0, 2, n)})
    for j in range(8):
        df[f"m{j}"] = rng.random(n)
    res = stack.run_stack(df, [f"m{j}" for j in range(8)], methods=("rank_weighted",))
    assert res.scores.set_index("name").auc["blend_rank_weighted"] < 0.58


def _write_model(tmp_path, name, df, pred, ids_test=("t1", "t2")):
    oof = make_oof_frame(df, df.fold, pred)
    write_oof(oof, tmp_path / "oof" / f"{name}.csv", {})
    write_submission(list(ids_test), np.array([0.2, 0.8]), tmp_path / "sub" / f"submission_{name}.csv", {})


def test_misaligned_or_missing_ids_are_clear_errors(tmp_path):
    df = toy_frame(40).assign(fold=lambda d: np.arange(40) % 4)
    _write_model(tmp_path, "a", df, np.linspace(0, 1, 40))
    _write_model(tmp_path, "b", df.iloc[:-1], np.linspace(0, 1, 39))
    with pytest.raises(stack.StackError, match=r"b.csv: ids differ.*doc-39"):
        stack.load_oof_matrix(tmp_path / "oof", ["a", "b"])
    _write_model(tmp_path, "c", df.assign(fold=(df.fold + 1) % 4), np.linspace(0, 1, 40))
    with pytest.raises(stack.StackError, match="fold differs"):
        stack.load_oof_matrix(tmp_path / "oof", ["a", "c"])
    with pytest.raises(Exception, match="missing"):
        stack.load_oof_matrix(tmp_path / "oof", ["a"], train_ids=pd.Series(list(df.id) + ["extra"]))
    with pytest.raises(stack.StackError, match="1 missing"):
        stack.load_test_matrix(tmp_path / "sub", ["a"], pd.Series(["t1", "t2", "t3"]))
    # shuffled rows are merged on id, not row order
    _write_model(tmp_path, "d", df.iloc[::-1], np.linspace(0, 1, 40)[::-1])
    m = stack.load_oof_matrix(tmp_path / "oof", ["a", "d"])
    assert np.allclose(m["a"], m["d"])


def test_platt_calibration_of_the_blend_improves_ece():
    from hopedetect.metrics import ece
    df = _synthetic_oof(2000, seed=4)
    raw = stack.run_stack(df, ["noisy", "perfect"], methods=("rank_mean",))
    cal = stack.run_stack(df, ["noisy", "perfect"], methods=("rank_mean",), calibrate=True)
    y = df.label.to_numpy()
    e_raw, e_cal = ece(y, raw.oof.blend_rank_mean.to_numpy()), ece(y, cal.oof.blend_rank_mean.to_numpy())
    assert cal.final.calibrator is not None and e_cal < e_raw
