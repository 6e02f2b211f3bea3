"""Speed and memory of the HOPE memory stack, as ratios measured in one run (not a timed test).

    python bench/memory.py [--reps 3] [--device cpu|cuda] [--quick]

Rows:
- bare Titans memory (1 head, chunk 64, hidden 4·dim, self-mod off: the design §10 anchor) at dim 384/768 ×
  seq 256/512, batch 8, against a naive per-token reference (autograd gradient per token, the paper's
  recurrence written literally) in the same run -> speed-up ratio;
- the full HOPE head at d=256, 4 heads (self-mod + 3 CMS levels) at seq 256/512;
- the head's cost relative to a MiniLM-L6 encoder forward+backward on the same batch.
Each configuration runs in a fresh subprocess so its peak RSS (CPU) / peak allocated memory (CUDA) is its own.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))


def naive_memory_step(W_in, W_out, S_in, S_out, k, v, theta, eta, gamma, create_graph):
    """One token of S_t = η S − θ ∇ℓ, M_t = γ M + S_t with the gradient from autograd (differentiable)."""
    pred = k + torch.nn.functional.silu(k @ W_in.T) @ W_out.T
    loss = (pred - v).pow(2).mean()
    g_in, g_out = torch.autograd.grad(loss, (W_in, W_out), create_graph=create_graph)
    S_in, S_out = eta * S_in - theta * g_in, eta * S_out - theta * g_out
    return gamma * W_in + S_in, gamma * W_out + S_out, S_in, S_out


def naive_memory(x, W_q, W_k, W_v, W_in0, W_out0, create_graph):
    """Token-by-token, sample-by-sample reference (true online updates, chunk size 1)."""
    outs = []
    for b in range(x.shape[0]):
        W_in = W_in0.clone().requires_grad_(True) if not W_in0.requires_grad else W_in0
        W_out = W_out0.clone().requires_grad_(True) if not W_out0.requires_grad else W_out0
        S_in, S_out = torch.zeros_like(W_in), torch.zeros_like(W_out)
        q = torch.nn.functional.normalize(x[b] @ W_q.T, dim=-1)
        k = torch.nn.functional.normalize(x[b] @ W_k.T, dim=-1)
        v = x[b] @ W_v.T
        ys = []
        for t in range(x.shape[1]):
            ys.append(q[t] + torch.nn.functional.silu(q[t] @ W_in.T) @ W_out.T)
            W_in, W_out, S_in, S_out = naive_memory_step(W_in, W_out, S_in, S_out, k[t], v[t], 0.1, 0.9, 0.99,
                                                          create_graph)
        outs.append(torch.stack(ys))
    return torch.stack(outs)


def build(kind: str, dim: int, device):
    from hopedetect.hope import HopeHead, MemoryOptions, SelfModTitans

    if kind == "memory":
        return SelfModTitans(dim, 1, 64, MemoryOptions(selfmod=False)).to(device)
    if kind == "head":
        return HopeHead(384, d=dim, n_heads=4, titans_chunk=16, cms_chunks=(32, 128, 512)).to(device)
    if kind == "naive":
        g = torch.Generator().manual_seed(0)
        p = lambda *s: (torch.randn(*s, generator=g) / s[-1] ** 0.5).to(device).requires_grad_(True)  # noqa: E731
        return [p(dim, dim), p(dim, dim), p(dim, dim), p(4 * dim, dim), p(dim, 4 * dim)]
    if kind == "encoder":
        from transformers import AutoModel

        from hopedetect.modeling import resolve_encoder_path

        return AutoModel.from_pretrained(resolve_encoder_path("minilm")).to(device)
    raise ValueError(kind)


def run_one(kind: str, dim: int, seq: int, batch: int, reps: int, device: str) -> dict:
    torch.manual_seed(0)
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    dev = torch.device(device)
    mod = build(kind, dim, dev)
    if kind == "encoder":
        ids = torch.randint(1000, 20000, (batch, seq), device=dev)
        mask = torch.ones_like(ids)
        call = lambda: mod(input_ids=ids, attention_mask=mask).last_hidden_state  # noqa: E731
    else:
        x = torch.randn(batch, seq, 384 if kind == "head" else dim, device=dev)
        m = torch.ones(batch, seq, dtype=torch.bool, device=dev)
        if kind == "memory":
            call = lambda: mod(x, m)[0]  # noqa: E731
        elif kind == "head":
            call = lambda: mod(x, m).logits  # noqa: E731
        else:
            call = None

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def timed(fn, n):
        fn()  # warm-up
        sync()
        best = float("inf")
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            sync()
            best = min(best, time.perf_counter() - t0)
        return best

    if kind == "naive":
        with torch.enable_grad():
            fwd = lambda: naive_memory(x, *mod, create_graph=False)  # noqa: E731
            fb = lambda: naive_memory(x, *mod, create_graph=True).sum().backward()  # noqa: E731
            t_f, t_fb = timed(fwd, 1), timed(fb, 1)
    else:
        def fwd():
            with torch.no_grad():
                call()

        def fb():
            call().float().sum().backward()

        t_f, t_fb = timed(fwd, reps), timed(fb, reps)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    tok = batch * seq
    return {"kind": kind, "dim": dim, "seq": seq, "batch": batch, "fwd_tok_s": tok / t_f, "fwd_bwd_tok_s": tok / t_fb,
            "peak_gib": peak}


def spawn(kind, dim, seq, batch, reps, device) -> dict:
    cmd = [sys.executable, __file__, "--one", json.dumps([kind, dim, seq, batch, reps, device])]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if r.returncode:
        raise RuntimeError(f"{kind} {dim}x{seq} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="seq 256 only, dim 384 only")
    ap.add_argument("--one")
    a = ap.parse_args()
    if a.one:
        print(json.dumps(run_one(*json.loads(a.one))))
        return
    seqs = (256,) if a.quick else (256, 512)
    dims = (384,) if a.quick else (384, 768)
    rows = []
    print(f"device={a.device} batch={a.batch} threads={os.environ.get('BENCH_THREADS', '2')} torch={torch.__version__}")
    print(f"{'what':28s} {'fwd tok/s':>10s} {'fwd+bwd tok/s':>14s} {'peak GiB':>9s} {'ratio':>22s}")
    for dim in dims:
        for seq in seqs:
            mem = spawn("memory", dim, seq, a.batch, a.reps, a.device)
            # the naive reference keeps one weight copy per token in the graph (RAM ∝ S·B·params): its per-token
            # cost does not depend on S or B, so it is measured on 1 document of 64 tokens
            ref = spawn("naive", dim, 64, 1, 1, a.device)
            rows += [mem, ref]
            ratio = f"{mem['fwd_tok_s'] / ref['fwd_tok_s']:.1f}x / {mem['fwd_bwd_tok_s'] / ref['fwd_bwd_tok_s']:.1f}x naive"
            print(f"{'memory d=' + str(dim) + ' S=' + str(seq):28s} {mem['fwd_tok_s']:10.0f} {mem['fwd_bwd_tok_s']:14.0f} "
                  f"{mem['peak_gib']:9.2f} {ratio:>22s}")
            print(f"{'  naive per-token reference':28s} {ref['fwd_tok_s']:10.0f} {ref['fwd_bwd_tok_s']:14.0f} {ref['peak_gib']:9.2f}")
    for seq in seqs:
        head = spawn("head", 256, seq, a.batch, a.reps, a.device)
        enc = spawn("encoder", 384, seq, a.batch, a.reps, a.device)
        rows += [head, enc]
        ratio = f"{enc['fwd_bwd_tok_s'] / head['fwd_bwd_tok_s']:.2f}x encoder cost"
        print(f"{'HOPE head d=256 h=4 S=' + str(seq):28s} {head['fwd_tok_s']:10.0f} {head['fwd_bwd_tok_s']:14.0f} "
              f"{head['peak_gib']:9.2f} {ratio:>22s}")
        print(f"{'  MiniLM-L6 encoder S=' + str(seq):28s} {enc['fwd_tok_s']:10.0f} {enc['fwd_bwd_tok_s']:14.0f} {enc['peak_gib']:9.2f}")
    out = os.path.join(os.path.dirname(__file__), "out")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"memory_{a.device}.json"), "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
