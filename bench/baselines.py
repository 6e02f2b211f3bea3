"""Quality bar of the classical baselines on the real dev data (a benchmark, not a test).

    python bench/baselines.py [--data ../shared/data/dev.csv] [--schemes group,leave-source-out]
                              [--normalize whitespace] [--max-rows 0]

Runs SGD and LightGBM through the same CV path as the notebooks, plus the nested-CV stack of the two, and prints
pooled AUC (bootstrap CI), macro AUC by source, TPR@1%FPR and wall time per model. Outputs under bench/out/.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import pandas as pd  # noqa: E402

from hopedetect import baselines, cv, report, stack  # noqa: E402
from hopedetect.config import load_config  # noqa: E402
from hopedetect.experiment import load_experiment  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "out")


def run_scheme(data: str, scheme: str, normalize: str, max_rows: int, seed: int) -> pd.DataFrame:
    tag = f"baselines-{scheme}-{normalize}-{max_rows or 'all'}"
    cfg = load_config(None, [f"name={tag}", f"seed={seed}", f"data.train={data}", "data.test=null",
                             f"data.normalize={normalize}", f"data.max_train_rows={max_rows}",
                             f"folds.scheme={scheme}", f"folds.path={OUT}/{tag}/folds.csv",
                             f"oof_dir={OUT}/{tag}/oof", f"submission_dir={OUT}/{tag}/sub", f"runs_dir={OUT}/runs"])
    exp = load_experiment(cfg)
    times = {}
    for m in ("sgd", "lgb"):
        t0 = time.time()
        cv.run_cv(exp, m, baselines.make_factory(m, exp.cfg), echo=lambda s: print("  " + s, flush=True))
        times[m] = time.time() - t0
    res = stack.run_stack(stack.load_oof_matrix(exp.cfg.oof_dir, ["sgd", "lgb"]), ["sgd", "lgb"])
    cols = ["sgd", "lgb"] + [c for c in res.oof.columns if c.startswith("blend_")]
    table = report.comparison_table(res.oof, cols, n_boot=100)
    table["wall_s"] = [times.get(c, float("nan")) for c in table.index]
    table.insert(0, "folds", scheme)
    print(f"\n== {scheme} folds, normalize={normalize}, {len(exp.train)} rows ==")
    print(table.round(4).to_string())
    print(report.per_group_auc(res.oof, cols).round(3).to_string())
    return table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "dev.csv"))
    ap.add_argument("--schemes", default="group,leave-source-out")
    ap.add_argument("--normalize", default="whitespace")
    ap.add_argument("--max-rows", type=int, default=0)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    t0 = time.time()
    tables = [run_scheme(a.data, s, a.normalize, a.max_rows, a.seed) for s in a.schemes.split(",")]
    print(f"\ntotal wall time {time.time() - t0:.0f}s")
    pd.concat(tables).to_csv(os.path.join(OUT, f"baselines_{a.normalize}.csv"))


if __name__ == "__main__":
    main()
