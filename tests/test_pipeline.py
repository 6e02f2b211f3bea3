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
