"""Pure tensor functions for the HOPE inner loop (design §3): closed-form per-token gradients of a residual
MLP memory, the exact chunk coefficients of the momentum/forgetting recurrence, masking helpers.

Notation: N = batch·heads (independent inner problems), C = chunk length, i = d_in, f = hidden width.
A memory maps u -> u + W_out·σ(W_in·φ(u)) with σ = SiLU; W_in:[N,f,i], W_out:[N,i,f].
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


def silu_with_grad(z: Tensor) -> tuple[Tensor, Tensor]:
    """σ(z) = z·sigmoid(z) and σ'(z) = s·(1 + z·(1 − s)), computed once for both."""
    s = torch.sigmoid(z)
    return z * s, s * (1 + z * (1 - s))


def l2n(x: Tensor, eps: float = 1e-6) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


def mlp_read(W_in: Tensor, W_out: Tensor, x_in: Tensor, resid: Tensor) -> Tensor:
    """resid + σ(x_in W_inᵀ) W_outᵀ. x_in, resid:[N,T,i] -> [N,T,i] (no state change: a pure read)."""
    a = F.silu(torch.einsum("nti,nfi->ntf", x_in, W_in))
    return resid + torch.einsum("ntf,nif->nti", a, W_out)


class AssocGrads(NamedTuple):
    loss: Tensor  # [N,C] ℓ_t = mean_d (pred − v)²
    e: Tensor  # [N,C,i] ∂ℓ_t/∂pred
    a: Tensor  # [N,C,f] hidden activation σ(z)
    delta: Tensor  # [N,C,f] ∂ℓ_t/∂z
    x_in: Tensor  # [N,C,i] input to W_in
    gnorm: Tensor  # [N,C] exact per-token ‖∇_{W_in,W_out} ℓ_t‖


def assoc_grads(W_in: Tensor, W_out: Tensor, x_in: Tensor, resid: Tensor, v: Tensor,
                stopgrad: bool = False) -> AssocGrads:
    """Closed-form per-token gradients of ℓ_t = mean_d ‖resid_t + W_out σ(W_in x_t) − v_t‖².

    Each token's gradient is rank one: ∇W_out = e_t ⊗ a_t, ∇W_in = δ_t ⊗ x_t, so its Frobenius norm is
    sqrt(|e|²|a|² + |δ|²|x|²) without materialising it. `stopgrad` detaches the gradient terms from the
    outer graph (first-order meta-learning); the read/loss itself stays differentiable.
    """
    z = torch.einsum("nti,nfi->ntf", x_in, W_in)  # [N,C,f]
    a, da = silu_with_grad(z)
    pred = resid + torch.einsum("ntf,nif->nti", a, W_out)  # [N,C,i]
    diff = pred - v
    loss = diff.pow(2).mean(-1)
    e = 2.0 * diff / diff.shape[-1]
    delta = torch.einsum("nti,nif->ntf", e, W_out) * da
    if stopgrad:
        e, a, delta, x_in = e.detach(), a.detach(), delta.detach(), x_in.detach()
    gsq = e.pow(2).sum(-1) * a.pow(2).sum(-1) + delta.pow(2).sum(-1) * x_in.pow(2).sum(-1)
    return AssocGrads(loss, e, a, delta, x_in, gsq.clamp_min(1e-30).sqrt())


def clip_scale(gnorm: Tensor, tau: float) -> Tensor:
    """Per-token inner gradient clipping factor s_t = min(1, τ/g_t) (τ<=0 disables)."""
    if tau <= 0:
        return torch.ones_like(gnorm)
    return torch.clamp(tau / gnorm, max=1.0)


def weighted_grads(g: AssocGrads, lam: Tensor) -> tuple[Tensor, Tensor]:
    """Σ_t λ_t ∇ℓ_t for both matrices: G_in:[N,f,i], G_out:[N,i,f] (two GEMMs, no per-token copies)."""
    G_out = torch.einsum("nt,nti,ntf->nif", lam, g.e, g.a)
    G_in = torch.einsum("nt,ntf,nti->nfi", lam, g.delta, g.x_in)
    return G_in, G_out


class ChunkCoeffs(NamedTuple):
    lam_S: Tensor  # [N,C] weight of u_i in the chunk-end momentum: w_i θ_i s_i m_i
    lam_M: Tensor  # [N,C] weight of u_i in the chunk-end memory:   c_i θ_i s_i m_i
    eta_prod: Tensor  # [N] Π_t η_t
    gamma_prod: Tensor  # [N] Π_t γ_t
    s0: Tensor  # [N] weight of the chunk-start momentum in the chunk-end memory


def _masked_prod(values: Tensor, keep: Tensor) -> Tensor:
    """Π_j where(keep[..., j], values_j, 1) over the last dim; values:[N,1..,C] broadcast with keep."""
    return torch.where(keep, values, torch.ones_like(values)).prod(-1)


def chunk_coefficients(theta: Tensor, gamma: Tensor, eta: Tensor, m: Tensor, clip: Tensor) -> ChunkCoeffs:
    """Exact per-token coefficients of the recurrence  S_t = η_t S_{t−1} − θ_t s_t m_t u_t,
    M_t = γ_t M_{t−1} + m_t S_t  over one chunk, with every u_t taken at the chunk-start state.

    Products are taken with masked `prod` (not exp∘cumsum∘log) so gates of exactly 0 (momentum off) or 1
    (pads) stay exact. theta, gamma, eta, m, clip: [N,C]. Cost O(N·C³) elementwise — tiny for C ≤ 64.
    """
    C = theta.shape[-1]
    dev = theta.device
    t = torch.arange(C, device=dev)
    # L[t, i'] = Π_{i' < j ≤ t} η_j  with i' ∈ {−1 (chunk start), 0..C−1}  -> [N, C(t), C+1(i')]
    ip = torch.arange(-1, C, device=dev)
    keep_L = (ip[None, :, None] < t[None, None, :]) & (t[None, None, :] <= t[:, None, None])  # [C, C+1, C(j)]
    L = _masked_prod(eta[:, None, None, :], keep_L[None])  # [N, C, C+1]
    # Γ[t] = Π_{j > t} γ_j  -> [N, C]
    Gam = _masked_prod(gamma[:, None, :], (t[None, :] > t[:, None])[None])
    valid_ti = (ip[None, :] <= t[:, None]).to(theta.dtype)  # i' ≤ t
    K = (m * Gam)[:, :, None] * L * valid_ti  # [N, C(t), C+1(i')]
    c_all = K.sum(1)  # [N, C+1]: c_{i'} = Σ_{t ≥ i'} m_t L[t,i'] Γ[t]
    s0, c = c_all[:, 0], c_all[:, 1:]
    w_all = _masked_prod(eta[:, None, :], (t[None, :] > ip[:, None])[None])  # [N, C+1]: Π_{j > i'} η_j
    eta_prod, w = w_all[:, 0], w_all[:, 1:]
    base = theta * clip * m
    return ChunkCoeffs(w * base, c * base, eta_prod, gamma.prod(-1), s0)


def compact(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Move valid tokens to the front of each row, keeping their order (left/right padding both work).
    x:[B,S,...], mask:[B,S] bool -> (x_c, mask_c, idx) with x_c[b, j] = x[b, idx[b, j]]."""
    idx = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices
    shape = idx.shape + (1,) * (x.dim() - 2)
    x_c = x.gather(1, idx.view(shape).expand(-1, -1, *x.shape[2:]))
    return x_c, mask.gather(1, idx), idx


def uncompact(y_c: Tensor, idx: Tensor) -> Tensor:
    """Inverse of `compact` for per-token outputs: y[b, idx[b, j]] = y_c[b, j]."""
    shape = idx.shape + (1,) * (y_c.dim() - 2)
    return torch.zeros_like(y_c).scatter(1, idx.view(shape).expand(-1, -1, *y_c.shape[2:]), y_c)


def pad_to_multiple(x: Tensor, mask: Tensor, multiple: int) -> tuple[Tensor, Tensor]:
    S = x.shape[1]
    extra = (-S) % multiple
    if extra == 0:
        return x, mask
    pad = x.new_zeros(x.shape[0], extra, *x.shape[2:])
    return torch.cat([x, pad], 1), torch.cat([mask, mask.new_zeros(mask.shape[0], extra)], 1)


def masked_mean(x: Tensor, mask: Tensor, dim: int = 1) -> Tensor:
    m = mask.to(x.dtype)
    while m.dim() < x.dim():
        m = m.unsqueeze(-1)
    return (x * m).sum(dim) / m.sum(dim).clamp_min(1.0)
