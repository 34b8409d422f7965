"""facecore.nn.Attention / TransformerBlock and the learned relative-position biases."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import facecore.reference as ref
from facecore.nn import Attention, RelativePositionBias1d, RelativePositionBias2d, TransformerBlock


def manual_attention(m: Attention, x, context=None, key_padding_mask=None, bias=None):
    """The module's maths written with the reference op (same weights)."""
    B, Lq, _ = x.shape
    src = x if context is None else context
    q = m.q(x).view(B, Lq, m.num_heads, m.head_dim).transpose(1, 2)
    k, v = m.kv(src).view(B, src.shape[1], 2, m.num_kv_heads, m.head_dim).permute(2, 0, 3, 1, 4)
    if m.rel_bias is not None:
        rel = m.rel_bias(Lq, src.shape[1]) if isinstance(m.rel_bias, RelativePositionBias1d) else m.rel_bias()
        bias = rel if bias is None else bias + rel
    out = ref.attention(q, k, v, bias, m.causal, key_padding_mask)
    return m.proj(out.transpose(1, 2).reshape(B, Lq, -1))


def randomize(module: torch.nn.Module, gen):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)
    return module


@pytest.mark.parametrize("kw", [
    dict(num_kv_heads=2, rel_pos="1d", max_distance=5, causal=True),
    dict(num_kv_heads=4, qkv_bias=True),
    dict(num_kv_heads=1, rel_pos="1d", max_distance=64),
], ids=["gqa-rel1d-causal", "mha", "mqa-rel1d"])
def test_attention_module_matches_manual(kw, gen):
    m = randomize(Attention(64, 4, **kw).double(), gen)
    x = torch.randn(2, 13, 64, generator=gen, dtype=torch.float64)
    kpm = torch.zeros(2, 13, dtype=torch.bool)
    kpm[1, -3:] = True
    torch.testing.assert_close(m(x, key_padding_mask=kpm), manual_attention(m, x, key_padding_mask=kpm))
    # gradients reach the relative-bias table through the kernel's bias gradient
    out = m(x, key_padding_mask=kpm)
    grads = torch.autograd.grad(out.square().sum(), list(m.parameters()))
    want_out = manual_attention(m, x, key_padding_mask=kpm)
    want = torch.autograd.grad(want_out.square().sum(), list(m.parameters()))
    for a, b in zip(grads, want):
        torch.testing.assert_close(a, b)


def test_cross_attention_with_kv_cache_alignment(gen):
    m = randomize(Attention(32, 4, num_kv_heads=2, context_dim=24, causal=True, rel_pos="1d",
                            max_distance=8).double(), gen)
    x = torch.randn(2, 3, 32, generator=gen, dtype=torch.float64)
    ctx = torch.randn(2, 10, 24, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(m(x, context=ctx), manual_attention(m, x, context=ctx))


def test_relative_bias_1d_depends_on_offset_only(gen):
    rb = randomize(RelativePositionBias1d(3, max_distance=4), gen)
    b = rb(6, 9)                               # queries sit at positions 3..8 (bottom-right)
    assert b.shape == (3, 6, 9)
    for i in range(6):
        for j in range(9):
            off = max(-3, min(3, j - (i + 3)))
            torch.testing.assert_close(b[:, i, j], rb.table[:, off + 3])


def test_relative_bias_2d_depends_on_2d_offset_only(gen):
    rb = randomize(RelativePositionBias2d(2, (3, 4), num_prefix_tokens=1), gen)
    b = rb()
    assert b.shape == (2, 13, 13)
    pos = [(y, x) for y in range(3) for x in range(4)]
    for p, (y1, x1) in enumerate(pos):
        for q, (y2, x2) in enumerate(pos):
            idx = (y1 - y2 + 2) * 7 + (x1 - x2 + 3)
            torch.testing.assert_close(b[:, 1 + p, 1 + q], rb.table[:, idx])
    torch.testing.assert_close(b[:, 0, 1:], rb.prefix[:, 0, None].expand(2, 12))
    torch.testing.assert_close(b[:, 1:, 0], rb.prefix[:, 1, None].expand(2, 12))
    torch.testing.assert_close(b[:, 0, 0], rb.prefix[:, 2])


def test_patch_grid_attention_trains_its_bias(gen):
    m = Attention(32, 4, rel_pos="2d", grid=(3, 5), num_prefix_tokens=1)
    x = torch.randn(2, 16, 32, generator=gen)
    torch.testing.assert_close(m(x), manual_attention(m, x))
    m(x).square().sum().backward()
    assert m.rel_bias.table.grad.abs().sum() > 0 and m.rel_bias.prefix.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="covers 16 tokens"):
        m(x[:, :15])


def test_transformer_block_pre_norm(gen):
    blk = randomize(TransformerBlock(32, 4, mlp_ratio=2.0, num_kv_heads=2, causal=True, rel_pos="1d",
                                     max_distance=6).double(), gen)
    x = torch.randn(2, 9, 32, generator=gen, dtype=torch.float64, requires_grad=True)
    h = x + manual_attention(blk.attn, blk.norm1(x))
    want = h + blk.fc2(F.gelu(blk.fc1(blk.norm2(h))))
    out = blk(x)
    torch.testing.assert_close(out, want)
    (gx,) = torch.autograd.grad(out.sum(), x)
    (wx,) = torch.autograd.grad(want.sum(), x)
    torch.testing.assert_close(gx, wx)


def test_transformer_block_traces_under_torch_compile(gen):
    blk = TransformerBlock(32, 4, num_kv_heads=2, rel_pos="1d", max_distance=8)
    x = torch.randn(2, 7, 32, generator=gen)
    compiled = torch.compile(blk, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), blk(x))


def test_module_argument_errors():
    with pytest.raises(ValueError, match="num_heads=4 must be a positive multiple of num_kv_heads=3"):
        Attention(32, 4, num_kv_heads=3)
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        Attention(30, 4)
    with pytest.raises(ValueError, match="rel_pos must be None, '1d' or '2d'"):
        Attention(32, 4, rel_pos="3d")
    with pytest.raises(ValueError, match="needs grid"):
        Attention(32, 4, rel_pos="2d")
