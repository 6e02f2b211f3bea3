"""Quality benchmark on real data: HOPE vs baselines, ablations, cross-source generalisation.

    python bench/quality.py [--rows 3000] [--schemes group,leave-source-out] [--ablations]
                            [--skip lm] [--config configs/quality.yaml]

On a seeded, stratified (label × source) subsample of ../shared/data/dev.csv, for each fold scheme: SGD, LightGBM,
the LM likelihood models (lm_zero, lm_lgb), the plain pooled head (A0) and HOPE on frozen MiniLM-L6 states, the
ablations of configs/ablations/*.yaml (group folds), and the nested-CV stack. Prints and writes a markdown
section (pooled AUC with CI, macro AUC by source, TPR@1%FPR, wall time, per-source AUC) to bench/out/quality.md.
Every number comes from the committed configs and the seed; nothing is tuned on the test side of a fold.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd  # noqa: E402

from hopedetect import baselines, cv, lm, report, stack, train  # noqa: E402
from hopedetect.config import load_config  # noqa: E402
from hopedetect.data import load_frame, subsample  # noqa: E402
from hopedetect.experiment import load_experiment  # noqa: E402
from hopedetect.io import atomic_write_csv, atomic_write_text  # noqa: E402

OUT = ROOT / "bench" / "out" / "quality"


def make_sample(src: Path, rows: int, seed: int) -> Path:
    path = OUT / f"dev_sample_{rows}_{seed}.csv"
    if not path.is_file():
        df = subsample(load_frame(src).drop(columns=["n_chars"]), rows, seed)
        atomic_write_csv(df, path)
    return path


def experiment(config: str, sample: Path, scheme: str, layers=(), **over):
    tag = f"{scheme}-{sample.stem}"
    ov = [f"data.train={sample}", f"folds.scheme={scheme}", f"folds.path={OUT}/{tag}/folds.csv",
          f"oof_dir={OUT}/{tag}/oof", f"submission_dir={OUT}/{tag}/sub", f"runs_dir={OUT}/runs",
          f"models_dir={OUT}/models", f"name=quality-{tag}", f"lm.cache_dir={ROOT}/runs/cache/lm"]
    ov += [f"{k}={v}" for k, v in over.items()]
    return load_experiment(load_config(config, ov, layers), with_test=False)


def timed(fn) -> float:
    t0 = time.time()
    fn()
    return time.time() - t0


def run_scheme(config: str, sample: Path, scheme: str, ablations: list[Path], skip: set[str]) -> tuple[str, pd.DataFrame]:
    exp = experiment(config, sample, scheme)
    echo = lambda s: print("  " + s, flush=True)  # noqa: E731
    times: dict[str, float] = {}
    for m in ("sgd", "lgb"):
        if m not in skip:
            times[m] = timed(lambda: cv.run_cv(exp, m, baselines.make_factory(m, exp.cfg), echo=echo))
    if "lm" not in skip:
        scorer = lm.LMScorer(exp.cfg.lm)
        times["lm_scoring"] = timed(lambda: scorer.score(exp.train_texts()))
        print(f"  LM scorer: {getattr(scorer, 'tokens_per_s', float('nan')):.0f} tokens/s (nan = cached)", flush=True)
        for m in ("lm_zero", "lm_lgb"):
            times[m] = timed(lambda: cv.run_cv(exp, m, lm.make_factory(m, exp.cfg, scorer), echo=echo))
    heads = [("deberta", exp)] if "pool" not in skip else []
    if "hope" not in skip:
        heads.append(("hope", exp))
        for layer in ablations if scheme == "group" else []:
            heads.append(("hope", experiment(config, sample, scheme, [layer])))
    for attr, e in heads:
        name = getattr(e.cfg, attr).name
        times[name] = timed(lambda: train.run_folds(e, attr, -1, echo=echo))
    models = stack.available_models(exp.cfg.oof_dir)
    res = stack.run_stack(stack.load_oof_matrix(exp.cfg.oof_dir, models, exp.train["id"], exp.folds), models)
    cols = models + [c for c in res.oof.columns if c.startswith("blend_")]
    table = report.comparison_table(res.oof, cols, n_boot=100)
    table["wall_s"] = [round(times.get(c, float("nan")), 0) for c in table.index]
    per_source = report.per_group_auc(res.oof, cols)
    md = [f"### {scheme} folds ({len(exp.train)} rows, {exp.folds.nunique()} folds)", "",
          table.round(4).to_markdown(), "", f"Stack choice: {res.final.describe()}", "",
          "AUC by source:", "", per_source.round(3).to_markdown(), ""]
    print("\n".join(md), flush=True)
    return "\n".join(md), table.assign(scheme=scheme)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "dev.csv"))
    ap.add_argument("--config", default=str(ROOT / "configs" / "quality.yaml"))
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--schemes", default="group,leave-source-out")
    ap.add_argument("--ablations", action="store_true", help="run configs/ablations/*.yaml on group folds")
    ap.add_argument("--skip", default="", help="comma list of: lm, pool, hope")
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    sample = make_sample(Path(a.data), a.rows, a.seed)
    ablations = sorted((ROOT / "configs" / "ablations").glob("*.yaml")) if a.ablations else []
    sections, tables = [], []
    for scheme in a.schemes.split(","):
        md, t = run_scheme(a.config, sample, scheme, ablations, set(filter(None, a.skip.split(","))))
        sections.append(md)
        tables.append(t)
    total = time.time() - t0
    head = [f"## Quality benchmark: {a.rows} rows of dev.csv (seed {a.seed}), config {Path(a.config).name}", "",
            f"Total wall time {total / 60:.1f} min on {os.cpu_count()} CPU cores.", ""]
    atomic_write_text(OUT.parent / "quality.md", "\n".join(head + sections))
    pd.concat(tables).to_csv(OUT.parent / "quality.csv")
    print(f"total wall time {total:.0f}s")


if __name__ == "__main__":
    main()
