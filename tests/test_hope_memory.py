"""The correctness spec of the HOPE memory (design §11): closed form == token loop, real test-time learning,
padding/batch invariance, segment chaining, outer gradients through the inner loop, numerics."""
import math

import pytest
import torch

from hopedetect.hope import CMSLevel, HopeHead, MemoryOptions, SelfModTitans
from hopedetect.hope import functional as Fn

D64 = torch.float64


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def small_head(dtype=torch.float32, **opt):
    h = HopeHead(24, d=16, n_heads=2, titans_chunk=4, cms_chunks=(8, 16), n_probes=2, dropout=0.0,
                 opts=MemoryOptions(**opt))
    return h.to(dtype).eval()


def randomize_gates(mod: SelfModTitans):
    """Non-trivial data-dependent gates (the meta-init has zero rate memories)."""
    with torch.no_grad():
        mod.a_rates0.normal_(0, 0.5)
        mod.b_rates.copy_(torch.tensor([0.0, -2.0, 0.5]))


# ------------------------------------------------------------------------------------ 1. chunk == loop
def naive_titans(mod: SelfModTitans, x, m):
    """Token-by-token recurrence S_t = η_t S − θ_t s_t m_t u_t, M_t = γ_t M + m_t S_t with every u_t an
    autograd gradient taken at the chunk-start memory (the paper's chunked mini-batch form)."""
    B, S, _ = x.shape
    st = mod.init_state(B, x.device, x.dtype)
    W = [st["W_in"].reshape(B * mod.h, *st["W_in"].shape[2:]).clone(),
         st["W_out"].reshape(B * mod.h, *st["W_out"].shape[2:]).clone()]
    Mom = [torch.zeros_like(W[0]), torch.zeros_like(W[1])]
    for n in range(S // mod.C):
        sl = slice(n * mod.C, (n + 1) * mod.C)
        k, v, rates = mod.generate(x[:, sl], st)
        theta, gamma, eta = (t.repeat_interleave(mod.h, 0) for t in mod.gates(rates, m[:, sl]))
        kh, vh = mod._heads(k), mod._heads(v)
        W0 = [w.detach().clone().requires_grad_(True) for w in W]
        mh = m[:, sl].to(x.dtype).repeat_interleave(mod.h, 0)
        for t in range(mod.C):
            pred = kh[:, t] + torch.einsum("nf,nif->ni", torch.nn.functional.silu(
                torch.einsum("ni,nfi->nf", kh[:, t], W0[0])), W0[1])
            loss = (pred - vh[:, t]).pow(2).mean(-1)
            g_in, g_out = torch.autograd.grad(loss.sum(), W0)
            gn = (g_in.flatten(1).pow(2).sum(1) + g_out.flatten(1).pow(2).sum(1)).sqrt()
            s = torch.clamp(mod.o.grad_clip_tau / gn, max=1.0)
            for j, g in enumerate((g_in, g_out)):
                c = (theta[:, t] * s * mh[:, t]).view(-1, 1, 1)
                Mom[j] = eta[:, t].view(-1, 1, 1) * Mom[j] - c * g
                W[j] = gamma[:, t].view(-1, 1, 1) * W[j] + mh[:, t].view(-1, 1, 1) * Mom[j]
    return W, Mom


@pytest.mark.parametrize("chunk", [1, 4])
def test_chunk_closed_form_equals_token_loop(chunk):
    mod = SelfModTitans(8, 2, chunk, MemoryOptions(selfmod=False, grad_clip_tau=0.3)).to(D64)
    randomize_gates(mod)
    x = torch.randn(3, 12, 8, dtype=D64)
    m = torch.ones(3, 12, dtype=torch.bool)
    m[1, 10:] = False  # padded partial chunk
    m[2, :] = False  # all-pad sample
    _, _, _, st = mod(x, m)
    (W_in, W_out), (S_in, S_out) = naive_titans(mod, x, m)
    for got, ref in ((st["W_in"], W_in), (st["W_out"], W_out), (st["S_in"], S_in), (st["S_out"], S_out)):
        assert torch.allclose(got.reshape_as(ref), ref, atol=1e-10, rtol=0)
    assert torch.equal(st["W_in"][2], mod.W_in0.expand_as(st["W_in"][2]))  # all-pad doc untouched


def test_closed_form_grad_equals_autograd():
    N, C, i, f = 3, 5, 6, 10
    W_in = torch.randn(N, f, i, dtype=D64, requires_grad=True)
    W_out = torch.randn(N, i, f, dtype=D64, requires_grad=True)
    k, v = torch.randn(N, C, i, dtype=D64), torch.randn(N, C, i, dtype=D64)
    g = Fn.assoc_grads(W_in, W_out, k, k, v)
    G_in, G_out = Fn.weighted_grads(g, torch.ones(N, C, dtype=D64))
    a_in, a_out = torch.autograd.grad(g.loss.sum(), (W_in, W_out), retain_graph=True)
    assert torch.allclose(G_in, a_in, atol=1e-12) and torch.allclose(G_out, a_out, atol=1e-12)
    for t in range(C):  # per-token norm formula == the materialised per-token gradient norm
        gi, go = torch.autograd.grad(g.loss[:, t].sum(), (W_in, W_out), retain_graph=True)
        ref = (gi.flatten(1).pow(2).sum(1) + go.flatten(1).pow(2).sum(1)).sqrt()
        assert torch.allclose(g.gnorm[:, t], ref, atol=1e-12)


def test_chunk_coefficients_pads_are_identities():
    C = 6
    theta, gamma, eta = torch.rand(2, C, dtype=D64), torch.rand(2, C, dtype=D64), torch.rand(2, C, dtype=D64)
    m = torch.ones(2, C, dtype=D64)
    cf = Fn.chunk_coefficients(theta, gamma, eta, m, torch.ones_like(m))
    # inserting identity pads (θ=0, γ=1, η=1, m=0) between tokens changes no coefficient of a real token
    ins = lambda t, fill: torch.cat([t[:, :3], torch.full((2, 2), fill, dtype=D64), t[:, 3:]], 1)  # noqa: E731
    cf2 = Fn.chunk_coefficients(ins(theta, 0.0), ins(gamma, 1.0), ins(eta, 1.0), ins(m, 0.0), torch.ones(2, C + 2, dtype=D64))
    keep = [0, 1, 2, 5, 6, 7]
    assert torch.allclose(cf2.lam_M[:, keep], cf.lam_M) and torch.allclose(cf2.lam_S[:, keep], cf.lam_S)
    assert torch.allclose(cf2.s0, cf.s0) and torch.allclose(cf2.eta_prod, cf.eta_prod)


# ------------------------------------------------------------------------------ 3-4. test-time learning
def test_associative_recall():
    d, n = 32, 8
    k = Fn.l2n(torch.randn(1, n, d))
    v = torch.randn(1, n, d)
    W_in, W_out = torch.randn(1, 4 * d, d) / math.sqrt(d), torch.zeros(1, d, 4 * d)

    def run(theta_val):
        Wi, Wo = W_in.clone(), W_out.clone()
        for _ in range(6):  # 6 passes over the 8 pairs, one chunk each (α=0, η=0)
            g = Fn.assoc_grads(Wi, Wo, k, k, v)
            cf = Fn.chunk_coefficients(torch.full((1, n), theta_val), torch.ones(1, n), torch.zeros(1, n),
                                       torch.ones(1, n), torch.ones(1, n))
            Gi, Go = Fn.weighted_grads(g, cf.lam_M)
            Wi, Wo = Wi - Gi, Wo - Go
        return (Fn.mlp_read(Wi, Wo, k, k) - v).pow(2).mean().item()

    before = (Fn.mlp_read(W_in, W_out, k, k) - v).pow(2).mean().item()
    assert run(2.0) < 0.05 * before
    assert run(0.0) == pytest.approx(before, abs=0)


def test_surprise_decreases_along_sequence():
    mod = SelfModTitans(16, 1, 8, MemoryOptions(selfmod=False))
    with torch.no_grad():
        mod.A_k0.zero_()
        mod.A_v0.normal_(0, 0.25)  # values ≠ keys: a real association to store
        mod.W_q.weight.copy_(torch.eye(16))
        mod.b_rates.copy_(torch.tensor([20.0, -30.0, -30.0]))  # θ = θ_max = 2, α ≈ 0, η ≈ 0
    pairs = Fn.l2n(torch.randn(1, 8, 16))
    x = pairs.repeat(1, 6, 1)  # the same 8 tokens, 6 times
    _, surprise, _, _ = mod(x, torch.ones(1, 48, dtype=torch.bool))
    s = surprise[0]
    assert all(s[i + 1] < s[i] for i in range(3)), s
    assert s[-1] < 0.1 * s[0], s


def test_memory_state_changes_exactly_when_it_should():
    x, m = torch.randn(2, 20, 24), torch.ones(2, 20, dtype=torch.bool)
    m[1] = False

    def change(head, st):
        return (st["titans.W_in"] - head.titans.W_in0).flatten(1).norm(dim=1)

    head = small_head()
    st = head(x, m).next_state
    assert change(head, st)[0] > 0 and change(head, st)[1] == 0  # real doc written; fully masked doc untouched
    head = small_head(inner_update=False)
    st = head(x, m).next_state
    assert torch.all(change(head, st) == 0)
    for key in ("cms0.U", "cms1.V", "titans.A_k"):
        assert torch.equal(st[key], head.init_state(2, "cpu")[key]), key


def test_cms_state_changes_only_at_chunk_ends_and_flush():
    lvl = CMSLevel(8, 4, MemoryOptions()).double()
    with torch.no_grad():
        lvl.U0.normal_(0, 0.3)
    u = torch.randn(1, 10, 8, dtype=D64)
    m = torch.ones(1, 10, dtype=torch.bool)
    y, st = lvl(u, m)
    # perturbing token 5 (chunk 1) leaves outputs of tokens 0..4, 6, 7 unchanged (they read states of
    # completed chunks only) and changes tokens 8, 9 (chunk 2 reads the state written by chunk 1)
    u2 = u.clone()
    u2[0, 5] += 1.0
    y2, st2 = lvl(u2, m)
    diff = (y2 - y).abs().amax(-1)[0]
    assert torch.all(diff[[0, 1, 2, 3, 4, 6, 7]] == 0) and torch.all(diff[[5, 8, 9]] > 0)
    # the final partial chunk (tokens 8, 9) is flushed into the final state
    _, st8 = lvl(u[:, :8], m[:, :8])
    assert not torch.equal(st8["U"], st["U"])
    # state after exactly 8 tokens == state with tokens 8, 9 masked
    m3 = m.clone()
    m3[0, 8:] = False
    _, st3 = lvl(u, m3)
    assert torch.allclose(st3["U"], st8["U"], atol=1e-12)


# --------------------------------------------------------------------- 6-8. padding, batching, chaining
def test_padding_invariance_with_garbage_in_pads():
    head = small_head(D64)
    randomize_gates(head.titans)
    lengths = (37, 64, 5)
    docs = [torch.randn(1, L, 24, dtype=D64) for L in lengths]
    alone = [head(x, torch.ones(1, x.shape[1], dtype=torch.bool), return_tokens=True) for x in docs]
    for side in ("right", "left"):
        X = torch.randn(3, 64, 24, dtype=D64) * 1e3  # garbage everywhere ...
        M = torch.zeros(3, 64, dtype=torch.bool)
        for b, x in enumerate(docs):
            L = x.shape[1]
            sl = slice(0, L) if side == "right" else slice(64 - L, 64)
            X[b, sl], M[b, sl] = x[0], True  # ... but the valid tokens
        out = head(X, M, return_tokens=True)
        for b, (x, ref) in enumerate(zip(docs, alone)):
            L = x.shape[1]
            sl = slice(0, L) if side == "right" else slice(64 - L, 64)
            assert torch.allclose(out.logits[b], ref.logits[0], atol=1e-10)
            assert torch.allclose(out.token_states[b, sl], ref.token_states[0], atol=1e-10)
            assert torch.all(out.token_states[b, ~M[b]] == 0)
            for key, val in ref.next_state.items():
                assert torch.allclose(out.next_state[key][b], val[0], atol=1e-10), key


def test_batch_invariance_and_no_state_leak():
    head = small_head()
    X, M = torch.randn(4, 30, 24), torch.ones(4, 30, dtype=torch.bool)
    ref = head(X, M).logits
    head(torch.randn(2, 50, 24), torch.ones(2, 50, dtype=torch.bool))  # another call in between
    assert torch.allclose(head(X, M).logits, ref, atol=1e-6)
    assert torch.allclose(head(X[2:3], M[2:3]).logits[0], ref[2], atol=1e-5)
    perm = torch.tensor([3, 1, 0, 2])
    assert torch.allclose(head(X[perm], M[perm]).logits, ref[perm], atol=1e-5)
    assert not any(b.requires_grad for b in head.buffers())
    assert list(head.buffers()) == []  # no hidden state anywhere


def test_segment_chaining_equals_one_pass():
    head = small_head(D64)
    randomize_gates(head.titans)
    X = torch.randn(2, 48, 24, dtype=D64)
    M = torch.ones(2, 48, dtype=torch.bool)
    M[1, 40:] = False
    full = head(X, M, return_tokens=True)
    a = head(X[:, :32], M[:, :32], return_tokens=True)  # 32 = a multiple of every chunk (4, 8, 16)
    b = head(X[:, 32:], M[:, 32:], state=a.next_state, return_tokens=True)
    for key, val in full.next_state.items():
        assert torch.allclose(b.next_state[key], val, atol=1e-10), key
    assert torch.allclose(torch.cat([a.token_states, b.token_states], 1), full.token_states, atol=1e-10)


# ------------------------------------------------------------------- 9-10. outer grads, self-modification
def test_outer_grad_through_inner_loop():
    head = small_head(D64)
    randomize_gates(head.titans)
    X, M = torch.randn(2, 24, 24, dtype=D64), torch.ones(2, 24, dtype=torch.bool)

    def loss_fn(h):
        out = h(X, M)
        # a loss on the final-state probe reads only: gradients reach outer params through the inner loop
        return out.pooled[:, 2 * 16:2 * 16 + 32].pow(2).sum()

    loss = loss_fn(head)
    loss.backward()
    t = head.titans
    for name, p in [("A_k0", t.A_k0), ("A_v0", t.A_v0), ("W_in0", t.W_in0), ("W_out0", t.W_out0),
                    ("b_rates", t.b_rates), ("a_rates0", t.a_rates0), ("cms.V0", head.cms[0].V0),
                    ("cms.U0", head.cms[0].U0), ("cms.b_theta", head.cms[1].b_theta)]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # finite difference through the unrolled loop for the θ gate bias
    eps = 1e-6
    with torch.no_grad():
        t.b_rates[0] += eps
        up = loss_fn(head).item()
        t.b_rates[0] -= 2 * eps
        down = loss_fn(head).item()
        t.b_rates[0] += eps
    fd = (up - down) / (2 * eps)
    assert fd == pytest.approx(t.b_rates.grad[0].item(), rel=1e-5)
    # first-order variant: the second-order path is dropped, so the gradient differs
    head_fo = small_head(D64, stopgrad=True)
    head_fo.load_state_dict(head.state_dict())
    loss_fn(head_fo).backward()
    assert not torch.allclose(head_fo.titans.b_rates.grad, t.b_rates.grad)


def test_selfmod_changes_projections():
    x = torch.randn(1, 8, 16)
    m = torch.ones(1, 8, dtype=torch.bool)
    for on in (True, False):
        torch.manual_seed(1)
        mod = SelfModTitans(16, 2, 4, MemoryOptions(selfmod=on))
        st0 = mod.init_state(1, "cpu")
        _, _, st1 = mod.chunk_step(x[:, :4], m[:, :4], st0)
        k_static, _, _ = mod.generate(x[:, 4:], st0)
        k_chunk2, _, _ = mod.generate(x[:, 4:], st1)
        if on:
            assert not torch.allclose(st1["A_k"], st0["A_k"]) and not torch.allclose(k_chunk2, k_static)
        else:
            assert torch.equal(st1["A_k"], st0["A_k"]) and torch.equal(k_chunk2, k_static)


# --------------------------------------------------------------------------------------- 11. numerics
def test_fp32_inner_under_autocast():
    head = small_head()
    X, M = torch.randn(2, 20, 24), torch.ones(2, 20, dtype=torch.bool)
    ref = head(X, M)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(X.bfloat16(), M)
    assert all(v.dtype == torch.float32 for v in out.next_state.values())
    assert torch.allclose(out.logits.float(), ref.logits, atol=1e-2)


def test_stability_extreme_inputs():
    head = small_head()
    with torch.no_grad():
        head.titans.b_rates[0] = 30.0  # θ at θ_max
    out = head(torch.randn(2, 64, 24) * 100, torch.ones(2, 64, dtype=torch.bool))
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.pooled).all()
    assert all(torch.isfinite(v).all() for v in out.next_state.values())


# ------------------------------------------------------------------------------ 12. on a tiny encoder
def test_head_on_tiny_encoder_learns():
    from transformers import BertConfig, BertModel

    enc = BertModel(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=64))
    head = HopeHead(32, d=16, n_heads=2, titans_chunk=4, cms_chunks=(8,), n_probes=2, dropout=0.0)
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (32,), generator=g)
    ids = torch.randint(5, 25, (32, 16), generator=g) + 20 * y.view(-1, 1) * (torch.rand(32, 16, generator=g) < 0.3)
    mask = torch.ones_like(ids)
    opt = torch.optim.AdamW(list(enc.parameters()) + list(head.parameters()), lr=3e-3)
    losses = []
    for _ in range(30):
        out = head(enc(input_ids=ids, attention_mask=mask).last_hidden_state, mask)
        loss = torch.nn.functional.cross_entropy(out.logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
