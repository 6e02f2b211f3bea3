"""Run the numbered notebooks with papermill, in order, per fold where a notebook is per-fold.

    python -m hopedetect.pipeline run --config CONFIG [--train PATH] [--test PATH]
                                      [--models sgd,lgb,...] [--folds 0,1,...] [--set key=value ...]

Executed copies go to `runs/<exp>/notebooks/`. A stage whose done-marker carries the same config hash is
skipped (resume); the first failing cell stops the run with the notebook, the cell and the error in the
message. With several GPUs, per-fold notebooks run in parallel, one GPU per process (CUDA_VISIBLE_DEVICES).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from .config import ExperimentConfig, config_hash, dump_yaml, load_config
from .io import atomic_write_json, atomic_write_text

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"


class PipelineError(RuntimeError):
    pass


@dataclass(frozen=True)
class Stage:
    notebook: str
    model: str | None = None  # None = always runs (EDA, stack); else only if the model is selected
    per_fold: bool = False
    after_models: tuple[str, ...] = ()  # runs if any of these models is selected


STAGES = (
    Stage("00_eda"),
    Stage("10_sgd", model="sgd"),
    Stage("11_lgb", model="lgb"),
    Stage("12_lm", model="lm"),
    Stage("20_deberta", model="deberta", per_fold=True),
    Stage("21_hope", model="hope", per_fold=True),
    Stage("30_infer", after_models=("deberta", "hope")),
    Stage("40_stack", after_models=("sgd", "lgb", "lm", "deberta", "hope")),
)


def selected_stages(models: tuple[str, ...]) -> list[Stage]:
    out = []
    for s in STAGES:
        if s.model is not None and s.model not in models:
            continue
        if s.after_models and not set(s.after_models) & set(models):
            continue
        out.append(s)
    return out


def fold_list(cfg: ExperimentConfig, folds: list[int] | None) -> list[int]:
    if folds:
        return folds
    from .experiment import load_experiment
    from .folds import fold_ids

    return fold_ids(load_experiment(cfg, with_test=False).folds)


def _marker(run_dir: Path, stage: Stage, fold: int | None) -> Path:
    return run_dir / "done" / (stage.notebook + ("" if fold is None else f"-fold{fold}") + ".json")


def _is_done(marker: Path, chash: str) -> bool:
    import json

    return marker.is_file() and json.loads(marker.read_text()).get("config_hash") == chash


def _failure_message(nb: Path, out: Path, err: BaseException) -> str:
    cell = getattr(err, "exec_count", None) or getattr(err, "cell_index", None)
    ename, evalue = getattr(err, "ename", type(err).__name__), getattr(err, "evalue", str(err))
    return f"notebook {nb.name} failed at cell {cell}: {ename}: {evalue}\n  executed copy: {out}"


def run_notebook(nb: Path, out: Path, params: dict, env: dict | None = None) -> None:
    """Execute one notebook with papermill; in-process, or as a subprocess when `env` is given (GPU pinning)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if env is None:
        import papermill as pm

        try:
            pm.execute_notebook(str(nb), str(out), parameters=params, cwd=os.getcwd(), progress_bar=False,
                                kernel_name="python3")
        except pm.PapermillExecutionError as e:
            raise PipelineError(_failure_message(nb, out, e)) from None
        return
    cmd = [sys.executable, "-m", "papermill", str(nb), str(out), "--cwd", os.getcwd(), "-k", "python3",
           "--no-progress-bar"]
    for k, v in params.items():
        cmd += ["-p", k, str(v)]
    r = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
    if r.returncode:
        tail = "\n".join(r.stderr.strip().splitlines()[-5:])
        raise PipelineError(f"notebook {nb.name} failed ({env}):\n{tail}\n  executed copy: {out}")


def run_stage(stage: Stage, cfg_path: Path, cfg: ExperimentConfig, folds: list[int], force: bool) -> list[str]:
    run_dir = Path(cfg.runs_dir) / cfg.name
    chash = config_hash(cfg)
    nb = NOTEBOOK_DIR / f"{stage.notebook}.ipynb"
    if not nb.is_file():
        raise PipelineError(f"notebook not found: {nb}")
    jobs = [(f, _marker(run_dir, stage, f)) for f in (folds if stage.per_fold else [None])]
    todo = [(f, m) for f, m in jobs if force or not _is_done(m, chash)]
    log = [f"skip {m.stem} (done, config {chash})" for f, m in jobs if (f, m) not in todo]

    def one(job, gpu: int | None = None):
        fold, marker = job
        params = {"config": str(cfg_path)} | ({} if fold is None else {"fold": fold})
        out = run_dir / "notebooks" / f"{marker.stem}.ipynb"
        t0 = time.time()
        run_notebook(nb, out, params, env=None if gpu is None else {"CUDA_VISIBLE_DEVICES": str(gpu)})
        atomic_write_json(marker, {"config_hash": chash, "seconds": round(time.time() - t0, 1), "output": str(out)})
        return f"ran {marker.stem} in {time.time() - t0:.1f}s"

    n_gpu = _cuda_count()
    if stage.per_fold and n_gpu > 1 and len(todo) > 1:
        with ThreadPoolExecutor(n_gpu) as ex:
            futs = [ex.submit(one, job, i % n_gpu) for i, job in enumerate(todo)]
            log += [f.result() for f in futs]  # re-raises the first PipelineError
    else:
        log += [one(job) for job in todo]
    return log


def _cuda_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


def run(cfg: ExperimentConfig, models: tuple[str, ...] | None = None, folds: list[int] | None = None,
        force: bool = False, echo=print) -> list[str]:
    if models:
        unknown = set(models) - {s.model for s in STAGES if s.model}
        if unknown:
            raise PipelineError(f"unknown model(s) {sorted(unknown)}; known: {[s.model for s in STAGES if s.model]}")
        cfg = replace(cfg, models=tuple(models))
    run_dir = Path(cfg.runs_dir) / cfg.name
    cfg_path = atomic_write_text(run_dir / "config.yaml", dump_yaml(cfg))
    stages = selected_stages(cfg.models)
    fl = fold_list(cfg, folds) if any(s.per_fold for s in stages) else []
    log: list[str] = []
    for stage in stages:
        for line in run_stage(stage, cfg_path, cfg, fl, force):
            echo(line)
            log.append(line)
    return log


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hopedetect.pipeline")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--config", required=True)
    r.add_argument("--train")
    r.add_argument("--test")
    r.add_argument("--models", help="comma-separated subset, e.g. sgd,lgb")
    r.add_argument("--folds", help="comma-separated fold ids for per-fold notebooks")
    r.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    r.add_argument("--force", action="store_true", help="rerun stages even if done")
    a = ap.parse_args(argv)
    overrides = list(a.set)
    if a.train:
        overrides.append(f"data.train={a.train}")
    if a.test:
        overrides.append(f"data.test={a.test}")
    cfg = load_config(a.config, overrides)
    try:
        run(cfg, tuple(a.models.split(",")) if a.models else None,
            [int(x) for x in a.folds.split(",")] if a.folds else None, a.force)
    except PipelineError as e:
        print(f"pipeline failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
