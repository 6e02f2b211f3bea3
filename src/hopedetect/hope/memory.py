"""Self-modifying Titans memory (design §3–§4) and CMS levels (§5) with explicit state in / state out.

No module buffer is touched in `forward`: each call starts from the learned meta-initialisation (or the
`state` passed in) and returns the next state. All inner-loop tensors are fp32 (the head disables autocast).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .functional import (assoc_grads, chunk_coefficients, clip_scale, l2n, mlp_read, pad_to_multiple,
                         weighted_grads)

State = dict[str, Tensor]


@dataclass(frozen=True)
class MemoryOptions:
    """Ablation switches shared by the memory modules (design §12)."""

    inner_update: bool = True  # False: θ ≡ 0, the memory is a static MLP ("frequency 0")
    selfmod: bool = True  # False: projections frozen at their meta-init (plain Titans)
    rule: str = "gd"  # "dgd": delta-rule decay of W_in along the written keys
    momentum: bool = True
    decay: bool = True
    stopgrad: bool = False  # first-order: inner gradient terms detached from the outer graph
    grad_clip_tau: float = 1.0


def _inv_sigmoid(p: float) -> float:
    return math.log(p / (1 - p))


def state_dtype(p: Tensor) -> torch.dtype:
    """fp32 for fp32/bf16/fp16 params (the inner loop never runs in low precision), fp64 in f64 tests."""
    return torch.promote_types(p.dtype, torch.float32)


def _select(cond: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """Per-sample where over a leading batch dim (all-pad chunks leave the state untouched). When every
    sample has a valid token (the usual case) the `where` and its backward are skipped: states are large."""
    if bool(cond.all()):
        return new
    return torch.where(cond.view(-1, *([1] * (new.dim() - 1))), new, old)


class SelfModTitans(nn.Module):
    """Titans long-term memory whose keys, values and rates come from fast memories written per chunk."""

    def __init__(self, d: int, n_heads: int, chunk: int, opts: MemoryOptions, hidden_mult: int = 4):
        super().__init__()
        if d % n_heads:
            raise ValueError(f"d={d} must be divisible by n_heads={n_heads}")
        self.d, self.h, self.dh, self.C, self.o = d, n_heads, d // n_heads, chunk, opts
        f = hidden_mult * self.dh
        self.W_q = nn.Linear(d, d, bias=False)  # static query projection (paper: q is not adaptive)
        self.W_o = nn.Linear(d, d, bias=False)
        # meta-initialisations of the fast memory (outer params)
        self.W_in0 = nn.Parameter(torch.randn(n_heads, f, self.dh) / math.sqrt(self.dh))
        self.W_out0 = nn.Parameter(torch.randn(n_heads, self.dh, f) * (0.1 / math.sqrt(f)))
        self.A_k0 = nn.Parameter(torch.randn(d, d) * (0.5 / math.sqrt(d)))
        self.A_v0 = nn.Parameter(torch.randn(d, d) * (0.5 / math.sqrt(d)))
        self.a_rates0 = nn.Parameter(torch.zeros(3, d))  # θ, α, η rate memories (d -> 1 each)
        # gate biases: α ≈ 0.01, η ≈ 0.9 as in design §9, but θ ≈ 0.05 θ_max (not 0.5): with momentum η ≈ 0.9
        # the effective step is θ/(1−η) ≈ 10θ, and 0.5 θ_max diverged within a few chunks on random input.
        self.b_rates = nn.Parameter(torch.tensor([_inv_sigmoid(0.05), -4.6, 2.2]))
        self.theta_max = 16.0 / chunk
        self.sm_theta_max = 1.0 / chunk  # θ'_max ≤ 1/C keeps the DGD chunk step contractive

    # ----------------------------------------------------------------------------------------- state
    def init_state(self, B: int, device, dtype: torch.dtype | None = None) -> State:
        dtype = dtype or state_dtype(self.W_in0)
        ex = lambda p: p.to(dtype).unsqueeze(0).expand(B, *p.shape)  # noqa: E731
        return {
            "W_in": ex(self.W_in0), "W_out": ex(self.W_out0),
            "S_in": torch.zeros(B, *self.W_in0.shape, device=device, dtype=dtype),
            "S_out": torch.zeros(B, *self.W_out0.shape, device=device, dtype=dtype),
            "A_k": ex(self.A_k0), "A_v": ex(self.A_v0), "a_rates": ex(self.a_rates0),
        }

    def _heads(self, x: Tensor) -> Tensor:  # [B,T,d] -> [B·h, T, d_h]
        B, T, _ = x.shape
        return x.view(B, T, self.h, self.dh).transpose(1, 2).reshape(B * self.h, T, self.dh)

    def _merge(self, x: Tensor, B: int) -> Tensor:  # [B·h,T,d_h] -> [B,T,d]
        T = x.shape[1]
        return x.view(B, self.h, T, self.dh).transpose(1, 2).reshape(B, T, self.d)

    def generate(self, x: Tensor, st: State) -> tuple[Tensor, Tensor, Tensor]:
        """Keys (per-head ℓ2-normed), values and raw rate logits from the chunk-start fast projections.
        x:[B,C,d] -> k,v:[B,C,d], rates:[B,C,3]"""
        k = x + torch.einsum("btd,bed->bte", x, st["A_k"])
        v = x + torch.einsum("btd,bed->bte", x, st["A_v"])
        k = l2n(k.view(*k.shape[:2], self.h, self.dh)).view_as(k)
        rates = torch.einsum("btd,brd->btr", x, st["a_rates"]) + self.b_rates
        return k, v, rates

    def gates(self, rates: Tensor, m: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """θ, γ=1−α, η per token [B,C]; pads: θ=0, α=0, η=1 (identity steps)."""
        o = self.o
        mf = m.to(rates.dtype)
        theta = self.theta_max * torch.sigmoid(rates[..., 0]) * mf
        if not o.inner_update:
            theta = torch.zeros_like(theta)
        # no test-time update means a static memory: no forgetting either (state == M_0 exactly)
        alpha = torch.sigmoid(rates[..., 1]) * mf if (o.decay and o.inner_update) else torch.zeros_like(theta)
        eta = torch.sigmoid(rates[..., 2]) if o.momentum else torch.zeros_like(theta)
        eta = torch.where(m, eta, torch.ones_like(eta))
        return theta, 1.0 - alpha, eta

    # ------------------------------------------------------------------------------------ one chunk
    def chunk_step(self, x: Tensor, m: Tensor, st: State) -> tuple[Tensor, Tensor, State]:
        """x:[B,C,d], m:[B,C] bool -> (o:[B,C,d] read at chunk-start state, surprise:[B], next state)."""
        B = x.shape[0]
        h = self.h
        k, v, rates = self.generate(x, st)
        q = l2n(self.W_q(x).view(B, -1, h, self.dh)).view_as(x)
        theta, gamma, eta = self.gates(rates, m)
        kh, vh, qh = self._heads(k), self._heads(v), self._heads(q)
        W_in, W_out = st["W_in"].reshape(B * h, *st["W_in"].shape[2:]), st["W_out"].reshape(B * h, *st["W_out"].shape[2:])
        o = self._merge(mlp_read(W_in, W_out, qh, qh), B)  # chunk-causal read
        g = assoc_grads(W_in, W_out, kh, kh, vh, stopgrad=self.o.stopgrad)
        rep = lambda t: t.repeat_interleave(h, 0)  # [B,C] -> [B·h,C] # noqa: E731
        mh = rep(m.to(x.dtype))
        cf = chunk_coefficients(rep(theta), rep(gamma), rep(eta), mh, clip_scale(g.gnorm, self.o.grad_clip_tau))
        GS_in, GS_out = weighted_grads(g, cf.lam_S)
        GM_in, GM_out = weighted_grads(g, cf.lam_M)
        S_in, S_out = st["S_in"].reshape_as(GS_in), st["S_out"].reshape_as(GS_out)
        bc = lambda s: s.view(-1, 1, 1)  # noqa: E731
        new_S_in = bc(cf.eta_prod) * S_in - GS_in
        new_S_out = bc(cf.eta_prod) * S_out - GS_out
        new_W_in = bc(cf.gamma_prod) * W_in + bc(cf.s0) * S_in - GM_in
        new_W_out = bc(cf.gamma_prod) * W_out + bc(cf.s0) * S_out - GM_out
        if self.o.rule == "dgd":  # W_in ← W_in (I − Σ_t λ^M_t k_t k_tᵀ)  (first-order chunk form)
            kk = torch.einsum("nt,nti,ntj->nij", cf.lam_M, g.x_in, g.x_in)
            new_W_in = new_W_in - torch.einsum("nfi,nij->nfj", W_in, kk)
        any_valid = m.any(1)
        sel = lambda new, key: _select(any_valid, new.view_as(st[key]), st[key])  # noqa: E731
        nxt = {"W_in": sel(new_W_in, "W_in"), "W_out": sel(new_W_out, "W_out"),
               "S_in": sel(new_S_in, "S_in"), "S_out": sel(new_S_out, "S_out")}
        nxt.update(self.selfmod_step(k, v, theta, rates, m, st, any_valid))
        surprise = (g.loss.view(B, h, -1).mean(1) * m).sum(1) / m.sum(1).clamp_min(1)
        return self.W_o(o), surprise, nxt

    def selfmod_step(self, k: Tensor, v: Tensor, theta: Tensor, rates: Tensor, m: Tensor, st: State,
                     any_valid: Tensor) -> State:
        """DGD write of the projection memories (§4): A ← A(ρI − Σθ' k kᵀ) − Σθ' (M(k) − M(v)) kᵀ."""
        if not (self.o.selfmod and self.o.inner_update):
            return {"A_k": st["A_k"], "A_v": st["A_v"], "a_rates": st["a_rates"]}
        mf = m.to(k.dtype)
        kn = k / math.sqrt(self.h)  # unit-norm keys (per-head normed k has ‖k‖² = h)
        if self.o.stopgrad:
            kn, v = kn.detach(), v.detach()
        th = theta * (self.sm_theta_max / self.theta_max)  # [B,C], zero on pads
        alpha_bar = ((1 - torch.sigmoid(rates[..., 1])) * mf).sum(1) / mf.sum(1).clamp_min(1)  # masked mean of 1−α
        rho = alpha_bar if self.o.decay else torch.ones_like(alpha_bar)
        diff = kn - v / math.sqrt(self.h)  # M(k) − M(v) = (I + A)(k − v) for residual memories

        def write(A: Tensor, resid: bool) -> Tensor:
            # A(ρI − Σθ' k kᵀ) − Σθ' r kᵀ  ==  ρA − Σ_t θ'_t (A k_t + r_t) k_tᵀ,  r_t = A·diff_t (+ diff_t):
            # low-rank form, 3·d²·C flops per chunk instead of the d³ of materialising Σθ' k kᵀ.
            Ak = torch.einsum("boi,bti->bto", A, kn)  # [B,C,out]
            r = torch.einsum("boi,bti->bto", A, diff) + (diff if resid else 0)
            new = rho.view(-1, 1, 1) * A - torch.einsum("bto,bti->boi", (Ak + r) * th.unsqueeze(-1), kn)
            return _select(any_valid, new, A)

        return {"A_k": write(st["A_k"], True), "A_v": write(st["A_v"], True), "a_rates": write(st["a_rates"], False)}

    # ------------------------------------------------------------------------------------ full pass
    def forward(self, x: Tensor, m: Tensor, state: State | None = None) -> tuple[Tensor, Tensor, Tensor, State]:
        """x:[B,S,d] compacted (valid tokens first), m:[B,S] bool.
        Returns o:[B,S,d], surprise:[B,N] per chunk, chunk_valid:[B,N] bool, final state."""
        B = x.shape[0]
        st = self.init_state(B, x.device) if state is None else state
        x, m = pad_to_multiple(x, m, self.C)
        outs, surprises = [], []
        for n in range(x.shape[1] // self.C):
            sl = slice(n * self.C, (n + 1) * self.C)
            if not bool(m[:, sl].any()):  # every document already ended: nothing to read or write
                outs.append(x.new_zeros(B, self.C, self.d))
                surprises.append(x.new_zeros(B))
                continue
            o, s, st = self.chunk_step(x[:, sl], m[:, sl], st)
            outs.append(o)
            surprises.append(s)
        chunk_valid = m.view(B, -1, self.C).any(-1)
        return torch.cat(outs, 1), torch.stack(surprises, 1), chunk_valid, st

    def read(self, q_in: Tensor, st: State) -> Tensor:
        """Read the (final) memory with arbitrary inputs q_in:[B,P,d] -> [B,P,d] (probe queries)."""
        B = q_in.shape[0]
        q = self._heads(l2n(self.W_q(q_in).view(B, -1, self.h, self.dh)).view_as(q_in))
        W_in = st["W_in"].reshape(B * self.h, *st["W_in"].shape[2:])
        W_out = st["W_out"].reshape(B * self.h, *st["W_out"].shape[2:])
        return self.W_o(self._merge(mlp_read(W_in, W_out, q, q), B))


class CMSLevel(nn.Module):
    """One Continuum-Memory level: residual MLP F(u) = u + U σ(V LN(u)) written every C valid tokens by
    plain GD + decay on a self-supervised objective; tokens read the state of the last completed chunk."""

    def __init__(self, d: int, chunk: int, opts: MemoryOptions, objective: str = "assoc", hidden_mult: int = 2):
        super().__init__()
        if objective not in ("assoc", "next"):
            raise ValueError(f"cms_objective must be assoc or next, got {objective!r}")
        f = hidden_mult * d
        self.d, self.C, self.o, self.objective = d, chunk, opts, objective
        self.V0 = nn.Parameter(torch.randn(f, d) / math.sqrt(d))  # W_in of the memory
        self.U0 = nn.Parameter(torch.zeros(d, f))  # W_out: zero init -> the level starts as identity
        self.P_k = nn.Linear(d, d, bias=False)
        self.P_v = nn.Linear(d, d, bias=False)
        self.b_theta = nn.Parameter(torch.tensor(0.0))
        self.b_alpha = nn.Parameter(torch.tensor(-4.6))
        self.theta_max = 4.0 / chunk

    def init_state(self, B: int, device, dtype: torch.dtype | None = None) -> State:
        dtype = dtype or state_dtype(self.V0)
        return {"V": self.V0.to(dtype).expand(B, *self.V0.shape), "U": self.U0.to(dtype).expand(B, *self.U0.shape)}

    @staticmethod
    def _ln(u: Tensor) -> Tensor:
        return F.layer_norm(u, u.shape[-1:])

    def read(self, u: Tensor, st: State) -> Tensor:
        return mlp_read(st["V"], st["U"], self._ln(u), u)

    def _targets(self, u: Tensor, u_next: Tensor, m: Tensor, m_next: Tensor):
        """(memory input, residual, target, mask) of the inner objective for one chunk."""
        if self.objective == "assoc":
            k = l2n(self.P_k(u))
            return self._ln(k), k, self.P_v(u), m
        return self._ln(u), u, u_next.detach(), m & m_next  # next-state prediction; last token has none

    def chunk_step(self, u: Tensor, u_next: Tensor, m: Tensor, m_next: Tensor, st: State) -> tuple[Tensor, State]:
        y = self.read(u, st)
        x_in, resid, v, mm = self._targets(u, u_next, m, m_next)
        g = assoc_grads(st["V"], st["U"], x_in, resid, v, stopgrad=self.o.stopgrad)
        theta = self.theta_max * torch.sigmoid(self.b_theta) if self.o.inner_update else 0.0 * self.b_theta
        lam = theta * clip_scale(g.gnorm, self.o.grad_clip_tau) * mm.to(u.dtype)
        G_V, G_U = weighted_grads(g, lam)
        decays = self.o.decay and self.o.inner_update
        gamma = 1 - torch.sigmoid(self.b_alpha) if decays else torch.ones_like(self.b_alpha)
        any_valid = m.any(1)
        return y, {"V": _select(any_valid, gamma * st["V"] - G_V, st["V"]),
                   "U": _select(any_valid, gamma * st["U"] - G_U, st["U"])}

    def forward(self, u: Tensor, m: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """u:[B,S,d] compacted, m:[B,S] -> (y:[B,S,d], state after the last (possibly partial, i.e. flushed) chunk)."""
        B, S, _ = u.shape
        st = self.init_state(B, u.device) if state is None else state
        up, mp = pad_to_multiple(u, m, self.C)
        u_next = torch.cat([up[:, 1:], up.new_zeros(B, 1, self.d)], 1)
        m_next = torch.cat([mp[:, 1:], mp.new_zeros(B, 1)], 1)
        ys = []
        for n in range(up.shape[1] // self.C):
            sl = slice(n * self.C, (n + 1) * self.C)
            if not bool(mp[:, sl].any()):
                ys.append(up[:, sl])
                continue
            y, st = self.chunk_step(up[:, sl], u_next[:, sl], mp[:, sl], m_next[:, sl], st)
            ys.append(y)
        return torch.cat(ys, 1)[:, :S], st
