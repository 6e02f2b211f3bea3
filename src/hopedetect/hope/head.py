"""HOPE sequence-classification head (design §2, §6): encoder states -> self-modifying Titans -> CMS chain ->
pooled document vector (mean ‖ attention ‖ probe reads of the final memory ‖ surprise statistics) -> logits.

`HopeHead(hidden_states, attention_mask, state=None) -> HeadOutput` with `next_state` for segment chaining.
`PoolHead` is the no-memory baseline (ablation A0, the plain fine-tuned encoder).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .functional import compact, masked_mean, uncompact
from .memory import CMSLevel, MemoryOptions, SelfModTitans, State, state_dtype

CONV_K = 4


@dataclass
class HeadOutput:
    logits: Tensor  # [B, n_cls]
    pooled: Tensor  # [B, P] document vector fed to the classifier
    surprise: Tensor | None = None  # [B, N] per-chunk surprise of the Titans memory (0 on all-pad chunks)
    chunk_valid: Tensor | None = None  # [B, N] bool
    token_states: Tensor | None = None  # [B, S, d] per-token outputs in input positions (pads = 0)
    next_state: State | None = None
    stats: dict | None = None  # scalars for logging: memory change, max |state|, first/last surprise


class AttnPool(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.score = nn.Linear(d, 1)

    def forward(self, y: Tensor, m: Tensor) -> Tensor:
        s = self.score(y).squeeze(-1).masked_fill(~m, float("-inf"))
        w = torch.softmax(s, dim=1).nan_to_num(0.0)  # an all-pad row gets zero weights, not NaN
        return torch.einsum("bs,bsd->bd", w, y)


def classifier(p_in: int, d: int, n_cls: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(p_in), nn.Linear(p_in, d), nn.GELU(), nn.Dropout(dropout), nn.Linear(d, n_cls))


class PoolHead(nn.Module):
    """Mean ‖ attention pooling over projected encoder states (no memory)."""

    def __init__(self, hidden_size: int, d: int = 256, n_cls: int = 2, dropout: float = 0.1, **_: object):
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, d))
        self.attn = AttnPool(d)
        self.cls = classifier(2 * d, d, n_cls, dropout)

    def forward(self, hidden_states: Tensor, attention_mask: Tensor, state: State | None = None) -> HeadOutput:
        m = attention_mask.bool()
        y = self.proj(hidden_states.to(self.proj[1].weight.dtype))  # cached states arrive as fp16
        z = torch.cat([masked_mean(y, m), self.attn(y, m)], -1)
        return HeadOutput(self.cls(z), z)


class HopeHead(nn.Module):
    def __init__(self, hidden_size: int, d: int = 256, n_heads: int = 4, titans_chunk: int = 16,
                 cms_chunks: tuple[int, ...] = (32, 128, 512), n_probes: int = 4, n_cls: int = 2,
                 dropout: float = 0.1, surprise_features: bool = True, cms_objective: str = "assoc",
                 cms_hidden_mult: int = 2, opts: MemoryOptions = MemoryOptions()):
        super().__init__()
        self.d, self.opts, self.surprise_features = d, opts, surprise_features
        self.proj = nn.Sequential(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, d))
        self.conv = nn.Conv1d(d, d, CONV_K, groups=d)  # causal depthwise (left context only)
        self.titans = SelfModTitans(d, n_heads, titans_chunk, opts)
        self.cms = nn.ModuleList(CMSLevel(d, c, opts, cms_objective, cms_hidden_mult) for c in cms_chunks)
        self.probes = nn.Parameter(torch.randn(n_probes, d) / math.sqrt(d))
        self.attn = AttnPool(d)
        n_stats = 4 if surprise_features else 0
        self.cls = classifier((2 + n_probes) * d + n_stats, d, n_cls, dropout)

    def init_state(self, B: int, device) -> State:
        st = {f"titans.{k}": v for k, v in self.titans.init_state(B, device).items()}
        for i, lvl in enumerate(self.cms):
            st.update({f"cms{i}.{k}": v for k, v in lvl.init_state(B, device).items()})
        st["conv_tail"] = torch.zeros(B, CONV_K - 1, self.d, device=device, dtype=state_dtype(self.probes))
        return st

    @staticmethod
    def _sub(st: State, prefix: str) -> State:
        return {k[len(prefix):]: v for k, v in st.items() if k.startswith(prefix)}

    def _conv(self, x: Tensor, m: Tensor, tail: Tensor) -> tuple[Tensor, Tensor]:
        """Causal depthwise conv over compacted tokens with carried left context; returns (out, next tail)."""
        xt = torch.cat([tail, x], 1)  # [B, K−1+S, d]
        out = self.conv(xt.transpose(1, 2)).transpose(1, 2) * m.unsqueeze(-1)
        n = m.sum(1)  # valid tokens; the last K−1 inputs sit at positions n .. n+K−2 of xt
        idx = (n.view(-1, 1) + torch.arange(CONV_K - 1, device=x.device)).unsqueeze(-1).expand(-1, -1, self.d)
        return out, xt.gather(1, idx)

    def forward(self, hidden_states: Tensor, attention_mask: Tensor, state: State | None = None,
                return_tokens: bool = False) -> HeadOutput:
        """hidden_states:[B,S,D] (any dtype), attention_mask:[B,S] (any padding side)."""
        B = hidden_states.shape[0]
        dev = hidden_states.device
        with torch.autocast(device_type=dev.type, enabled=False):  # the inner loop is always fp32
            H = hidden_states.to(state_dtype(self.probes))
            m0 = attention_mask.bool()
            st = self.init_state(B, dev) if state is None else state
            Hc, m, idx = compact(H, m0)
            x = self.proj(Hc) * m.unsqueeze(-1)  # pads zeroed: garbage in pad slots never leaks
            x, conv_tail = self._conv(x, m, st["conv_tail"])
            x = F.silu(x) * m.unsqueeze(-1)
            o, surprise, chunk_valid, t_st = self.titans(x, m, self._sub(st, "titans."))
            y = (x + o[:, : x.shape[1]]) * m.unsqueeze(-1)
            nxt = {f"titans.{k}": v for k, v in t_st.items()}
            for i, lvl in enumerate(self.cms):
                y, c_st = lvl(y, m, self._sub(st, f"cms{i}."))
                y = y * m.unsqueeze(-1)
                nxt.update({f"cms{i}.{k}": v for k, v in c_st.items()})
            nxt["conv_tail"] = conv_tail
            # probe reads of the end-of-document memory: what only test-time learning can provide
            r = self.titans.read(self.probes.unsqueeze(0).expand(B, -1, -1), t_st)
            for i, lvl in enumerate(self.cms):
                r = lvl.read(r, self._sub(nxt, f"cms{i}."))
            feats = [masked_mean(y, m), self.attn(y, m), r.reshape(B, -1)]
            stats = self._stats(surprise, chunk_valid, t_st)
            if self.surprise_features:
                feats.append(stats["features"])
            z = torch.cat(feats, -1)
        logits = self.cls(z)
        return HeadOutput(logits, z, surprise, chunk_valid, uncompact(y, idx) if return_tokens else None,
                          nxt, {k: v for k, v in stats.items() if k != "features"})

    def _stats(self, surprise: Tensor, valid: Tensor, t_st: State) -> dict:
        """Per-doc surprise mean / last / slope and relative memory change ‖M−M₀‖/‖M₀‖ (features + logs)."""
        vf = valid.to(surprise.dtype)
        n = vf.sum(1).clamp_min(1)
        mean = (surprise * vf).sum(1) / n
        last_idx = (vf.sum(1).long() - 1).clamp_min(0)
        last = surprise.gather(1, last_idx.view(-1, 1)).squeeze(1)
        pos = torch.arange(surprise.shape[1], device=surprise.device, dtype=surprise.dtype).expand_as(surprise)
        pc = (pos - (pos * vf).sum(1, keepdim=True) / n.unsqueeze(1)) * vf
        slope = (pc * surprise).sum(1) / pc.pow(2).sum(1).clamp_min(1e-6)
        W0 = self.titans.W_in0.unsqueeze(0)
        change = (t_st["W_in"] - W0).flatten(1).norm(dim=1) / W0.flatten(1).norm(dim=1)
        first = surprise[:, 0]
        return {"features": torch.stack([mean, last, slope, change], -1), "surprise_first": first.detach(),
                "surprise_last": last.detach(), "memory_change": change.detach(),
                "state_absmax": max(v.detach().abs().max() for v in t_st.values())}


def build_head(kind: str, hidden_size: int, **kw) -> nn.Module:
    if kind == "pool":
        return PoolHead(hidden_size, **{k: v for k, v in kw.items() if k in ("d", "n_cls", "dropout")})
    if kind == "hope":
        return HopeHead(hidden_size, **kw)
    raise ValueError(f"head must be 'hope' or 'pool', got {kind!r}")
