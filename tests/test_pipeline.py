import json

import pytest

from hopedetect import pipeline
from hopedetect.config import load_config


def test_eda_notebook_smoke_and_resume(tiny_project):
    d, cfg_path = tiny_project
    cfg = load_config(cfg_path)
    log = pipeline.run(cfg, models=(), echo=lambda *_: None)
    assert any(l.startswith("ran 00_eda") for l in log)
    assert (d / "runs" / "tiny" / "notebooks" / "00_eda.ipynb").is_file()
    assert (d / "input" / "folds.csv").is_file()
    marker = json.loads((d / "runs" / "tiny" / "done" / "00_eda.json").read_text())
    assert marker["config_hash"]
    # rerun with the same config skips, a changed config reruns
    assert any(l.startswith("skip 00_eda") for l in pipeline.run(cfg, models=(), echo=lambda *_: None))


def test_failing_notebook_names_notebook_and_cell(tiny_project):
    d, cfg_path = tiny_project
    cfg_path.write_text(cfg_path.read_text() + "data: {train: input/missing.csv}\n")
    with pytest.raises(pipeline.PipelineError, match=r"00_eda.*cell.*DataError.*missing.csv"):
        pipeline.run(load_config(cfg_path), models=(), echo=lambda *_: None)


def test_runner_end_to_end_baselines_and_stack(tiny_project):
    d, cfg_path = tiny_project
    cfg_path.write_text(cfg_path.read_text().replace("models: []", "models: [sgd, lgb]")
                        + "sgd: {min_df: 1}\nlgb: {n_estimators: 30, svd_components: 4}\n")
    log = pipeline.run(load_config(cfg_path), echo=lambda *_: None)
    assert [l.split()[1] for l in log if l.startswith("ran")] == ["00_eda", "10_sgd", "11_lgb", "40_stack"]
    for f in ("oof/sgd.csv", "oof/lgb.csv", "submissions/submission_sgd.csv", "submissions/submission_lgb.csv",
              "submissions/submission_blend.csv", "submissions/submission.csv", "runs/tiny/report.md"):
        assert (d / f).is_file(), f
    import pandas as pd
    assert list(pd.read_csv(d / "submissions/submission.csv").columns) == ["id", "generated"]
    # resume: nothing reruns
    assert all(l.startswith("skip") for l in pipeline.run(load_config(cfg_path), echo=lambda *_: None))


def test_runner_transformer_notebooks_smoke(tiny_project, tiny_encoder):
    from conftest import tiny_train_yaml

    d, cfg_path = tiny_project
    cfg_path.write_text(cfg_path.read_text().replace("models: []", "models: [deberta, hope]")
                        + tiny_train_yaml(tiny_encoder).replace("epochs: 2", "epochs: 1"))
    log = pipeline.run(load_config(cfg_path), echo=lambda *_: None)
    ran = [l.split()[1] for l in log if l.startswith("ran")]
    assert ran == ["00_eda"] + [f"20_deberta-fold{k}" for k in range(3)] + [f"21_hope-fold{k}" for k in range(3)] \
        + ["30_infer", "40_stack"]
    for f in ("oof/hope.csv", "oof/deberta.csv", "submissions/submission_hope.csv", "submissions/submission.csv"):
        assert (d / f).is_file(), f
    # one fold asked again: skipped, nothing rerun
    log = pipeline.run(load_config(cfg_path), folds=[1], echo=lambda *_: None)
    assert not any(l.startswith("ran") for l in log)


def test_runner_lm_notebook_smoke(tiny_project, tmp_path_factory):
    from conftest import toy_frame
    from hopedetect.tiny import make_tiny_causal_lm

    d, cfg_path = tiny_project
    lm_dir = make_tiny_causal_lm(tmp_path_factory.mktemp("lm") / "m", toy_frame(100).text.tolist())
    cfg_path.write_text(cfg_path.read_text().replace("models: []", "models: [lm]")
                        + f"lm: {{model: {lm_dir}, cache_dir: lmcache}}\nlgb: {{n_estimators: 20}}\n")
    log = pipeline.run(load_config(cfg_path), echo=lambda *_: None)
    assert [l.split()[1] for l in log if l.startswith("ran")] == ["00_eda", "12_lm", "40_stack"]
    for f in ("oof/lm_zero.csv", "oof/lm_lgb.csv", "submissions/submission.csv"):
        assert (d / f).is_file(), f
