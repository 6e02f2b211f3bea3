"""Regenerate the thin numbered notebooks (outputs stripped). Run: python tools/make_notebooks.py

Notebooks hold a papermill `parameters` cell, imports and calls only; all logic is in src/hopedetect.
"""
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
SYS_PATH = ("import sys, pathlib\n"
            "# Kaggle / plain Jupyter: make `src/` importable when the package is not pip-installed.\n"
            "for p in (pathlib.Path.cwd() / 'src', pathlib.Path.cwd().parent / 'src', pathlib.Path('/kaggle/input/hopedetect/src')):\n"
            "    if (p / 'hopedetect').is_dir() and str(p) not in sys.path:\n"
            "        sys.path.insert(0, str(p))")


def notebook(title: str, params: str, cells: list) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    p = new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [new_markdown_cell(title), p, new_code_cell(SYS_PATH)]
    for c in cells:
        nb.cells.append(new_markdown_cell(c[3:]) if c.startswith("## ") else new_code_cell(c))
    for i, cell in enumerate(nb.cells):  # stable ids: regenerating an unchanged notebook changes no byte
        cell.id = f"cell-{i:02d}"
    return nb


NOTEBOOKS = {
    "00_eda": notebook(
        "# 00 · EDA\nLabel balance, lengths, counts by source/language/generator, duplicates/leaks and the "
        "label shortcuts listed in the data README.",
        'config = "configs/demo.yaml"',
        [
            "import matplotlib.pyplot as plt\nfrom hopedetect import eda\nfrom hopedetect.experiment import load_experiment",
            "exp = load_experiment(config)\ntrain, test = exp.train, exp.test\nprint(len(train), 'train rows;', 0 if test is None else len(test), 'test rows')",
            "## Label balance and lengths",
            "eda.label_balance(train)",
            "eda.length_stats(train)",
            "fig, ax = plt.subplots(figsize=(7, 3.5))\neda.plot_length_hist(train, ax)\nplt.show()",
            "## Counts by source, language, generator",
            "tables = {c: eda.counts_by(train, c) for c in ('source', 'language', 'domain', 'generator') if c in train}\n"
            "fig, axes = plt.subplots(1, len(tables), figsize=(5 * len(tables), 5))\n"
            "for ax, (c, t) in zip(list(axes) if len(tables) > 1 else [axes], tables.items()):\n"
            "    eda.plot_counts(t.head(20), ax, c)\nplt.tight_layout(); plt.show()",
            "tables.get('generator', eda.counts_by(train, 'label')).head(30)",
            "## Duplicates and train/test leaks",
            "eda.duplicate_report(train, test)",
            "## Shortcut checks (newlines, URLs, trailing punctuation) per class and source",
            "rep = eda.shortcut_report(train, 'source' if 'source' in train else None)\n"
            "rep.pivot(index='group', columns='feature', values='auc').round(2)",
            "rep.round(3)",
            "eda.length_auc_by(train, 'source') if 'source' in train else None",
        ],
    ),
}



def classical(num: str, model: str, title: str) -> nbformat.NotebookNode:
    return notebook(
        f"# {num} · {title}\nOut-of-fold predictions through the shared CV path (`hopedetect.cv.run_cv`), "
        "test predictions averaged over fold models, metrics by source/language.",
        'config = "configs/demo.yaml"\nfold = -1  # -1: every fold; k: only fold k (parts are merged once all exist)',
        [
            "from hopedetect import baselines, cv, metrics\nfrom hopedetect.experiment import load_experiment",
            "exp = load_experiment(config)",
            f"oof = cv.run_cv(exp, {model!r}, baselines.make_factory({model!r}, exp.cfg), folds=None if fold < 0 else [fold])",
            "## Out-of-fold metrics",
            "by = [c for c in ('source', 'language', 'length_bucket') if c in oof or c == 'length_bucket']\n"
            f"table = metrics.evaluate(oof, by, model={model!r}) if oof is not None else None\n"
            "table[table.by == 'all'] if table is not None else 'not all folds done yet'",
            "metrics.breakdown(table, 'source') if table is not None and 'source' in oof else None",
            "## Test metrics (when the test file has labels)",
            f"tf = cv.test_frame(exp, {model!r}) if oof is not None else None\n"
            f"metrics.evaluate(tf, ['source'] if 'source' in tf else [], model={model!r}) if tf is not None else 'no test labels'",
        ],
    )


NOTEBOOKS["10_sgd"] = classical("10", "sgd", "TF-IDF + SGD baseline")
NOTEBOOKS["11_lgb"] = classical("11", "lgb", "LightGBM on stylometric + TF-IDF/SVD features")
NOTEBOOKS["12_lm"] = notebook(
    "# 12 · Likelihood signals from a small causal LM\nZero-shot scores (analytic Fast-DetectGPT, log-likelihood, "
    "entropy, log-rank, GLTR buckets, Binoculars with a second model) from one forward pass per text, cached on disk; "
    "`lm_zero` ranks one score (no training), `lm_lgb` is LightGBM on the features.",
    'config = "configs/demo.yaml"',
    [
        "from hopedetect import cv, lm, metrics\nfrom hopedetect.experiment import load_experiment",
        "exp = load_experiment(config)\nscorer = lm.LMScorer(exp.cfg.lm)\nfeats = scorer.score(exp.train_texts())\n"
        "print(f'{scorer.path}: {getattr(scorer, \"tokens_per_s\", float(\"nan\")):.0f} tokens/s (nan = all cached)')",
        "## Zero-shot AUC of every feature (a-priori sign), pooled and by source",
        "lm.feature_auc_table(feats, exp.train['label'].to_numpy(), exp.train['source'] if 'source' in exp.train else None).round(3)",
        "## lm_zero and lm_lgb through the shared CV path",
        "oof_zero = cv.run_cv(exp, 'lm_zero', lm.make_factory('lm_zero', exp.cfg, scorer))\n"
        "oof_lgb = cv.run_cv(exp, 'lm_lgb', lm.make_factory('lm_lgb', exp.cfg, scorer))",
        "by = [c for c in ('source', 'language') if c in exp.train]\n"
        "{name: metrics.evaluate(o, by, model=name).query(\"by == 'all' or group == 'macro'\") for name, o in "
        "(('lm_zero', oof_zero), ('lm_lgb', oof_lgb))}",
    ],
)


def transformer(num: str, model: str, title: str) -> nbformat.NotebookNode:
    return notebook(
        f"# {num} · {title}\nOne fold per papermill run (`fold=k`, one GPU per process) or every fold (`fold=-1`). "
        "Training: two AdamW groups, warmup + cosine, AMP via Accelerate, best epoch by validation AUC, resumable.",
        'config = "configs/demo.yaml"\nfold = -1',
        [
            "from hopedetect import metrics, train\nfrom hopedetect.experiment import load_experiment",
            f"exp = load_experiment(config)\ntc = exp.cfg.{model}\ntc",
            f"oof = train.run_folds(exp, {model!r}, fold)",
            "## Training history",
            f"train.fold_history(exp, {model!r})",
            "## Out-of-fold metrics (once every fold is done)",
            "table = metrics.evaluate(oof, [c for c in ('source', 'language') if c in oof], model=tc.name) if oof is not None else None\n"
            "table[table.by.isin(['all']) | (table.group == 'macro')] if table is not None else 'waiting for other folds'",
            "metrics.breakdown(table, 'source') if table is not None and 'source' in oof else None",
        ],
    )


NOTEBOOKS["20_deberta"] = transformer("20", "deberta", "Plain fine-tuned encoder (mean ‖ attention pooling)")
NOTEBOOKS["21_hope"] = transformer("21", "hope", "HOPE: encoder + self-modifying Titans memory + CMS")
NOTEBOOKS["30_infer"] = notebook(
    "# 30 · Inference\nMerges the fold parts into `oof/<model>.csv` and `submissions/submission_<model>.csv` "
    "(`submission_hope.csv` is the main one; test predictions are the mean of the fold models). On Kaggle, set "
    "`checkpoints` to the attached dataset holding `runs/models/<exp>/<model>/fold*/best` to predict offline.",
    'config = "configs/demo.yaml"\ncheckpoints = ""  # Kaggle: e.g. "/kaggle/input/hope-checkpoints/hope"\nmodel = "hope"',
    [
        "from hopedetect import cv, infer, metrics\nfrom hopedetect.config import load_config\n"
        "from hopedetect.experiment import load_experiment",
        "if checkpoints:  # Kaggle inference-only kernel: no train file needed\n"
        "    print(infer.infer_offline(load_config(config), model, checkpoints))\n"
        "    frames = {}\nelse:\n    exp = load_experiment(config)\n    oofs = infer.assemble_all(exp)\n"
        "    print({k: len(v) for k, v in oofs.items()})\n"
        "    frames = {n: cv.test_frame(exp, n) for n in oofs}",
        "## Test metrics (when the test file has labels)",
        
        "{n: metrics.evaluate(f, ['source'] if 'source' in f else [], model=n).query(\"by == 'all' or group == 'macro'\") "
        "for n, f in frames.items() if f is not None}",
    ],
)
NOTEBOOKS["40_stack"] = notebook(
    "# 40 · Stack\nBlend every model's OOF predictions (merged on `id`); blends are chosen by nested CV on the "
    "OOF folds. Writes `submissions/submission_blend.csv`, the Kaggle `submissions/submission.csv` and "
    "`runs/<exp>/report.md`.",
    'config = "configs/demo.yaml"',
    [
        "import matplotlib.pyplot as plt\nfrom hopedetect import cv, report, stack\nfrom hopedetect.experiment import load_experiment",
        "exp = load_experiment(config)\nres = stack.stack_experiment(exp)\nmodels = list(res.final.models)\nres.scores",
        "res.final.describe()",
        "## Comparison table (pooled AUC with bootstrap CI, macro AUC by source, TPR@1%FPR, Brier, ECE)",
        "cols = models + [f'blend_{m}' for m in exp.cfg.stack.methods]\ntable = report.comparison_table(res.oof, cols)\ntable",
        "## ROC and calibration",
        "fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))\nreport.plot_roc(res.oof, cols, axes[0])\n"
        "report.plot_calibration(res.oof, cols, axes[1])\nplt.tight_layout(); plt.show()",
        "## AUC by source",
        "by_source = report.per_group_auc(res.oof, cols, 'source') if 'source' in res.oof else None\n"
        "if by_source is not None:\n    fig, ax = plt.subplots(figsize=(1.2 * len(cols) + 3, 0.45 * len(by_source) + 2))\n"
        "    report.plot_heatmap(by_source, ax); plt.tight_layout(); plt.show()",
        "## Test set (when labelled) and report",
        "tf = cv.test_frame(exp, 'blend')\n"
        "test_table = report.comparison_table(tf.assign(blend=tf.pred), ['blend']) if tf is not None else None\n"
        "report.write_report(exp.run_dir / 'report.md', exp.cfg.name, table, res.scores, res.final.describe(), test_table)\n"
        "test_table",
    ],
)

if __name__ == "__main__":
    for name, nb in NOTEBOOKS.items():
        nbformat.write(nb, str(NB_DIR / f"{name}.ipynb"))
        print("wrote", name)
