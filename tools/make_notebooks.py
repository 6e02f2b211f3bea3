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

if __name__ == "__main__":
    for name, nb in NOTEBOOKS.items():
        nbformat.write(nb, str(NB_DIR / f"{name}.ipynb"))
        print("wrote", name)
