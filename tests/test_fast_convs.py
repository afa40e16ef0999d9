"""The CPU fast paths of the generator's convolutions against the plain PyTorch convolutions they replace."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nada.nets.ops import conv_transpose2x, winograd_conv3x3, winograd_pays
from nada.tiny import tiny_generator

from .helpers import synthesis_and_wplus_grad

CL = torch.channels_last


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def test_winograd_equals_direct_convolution_with_gradients():
    """Odd sizes (partial tiles), either memory layout: output, input and weight gradients."""
    torch.manual_seed(0)
    for shape in [(2, 24, 13, 10), (1, 8, 4, 4), (3, 16, 9, 17)]:
        for fmt in (CL, torch.contiguous_format):
            x = torch.randn(shape).contiguous(memory_format=fmt).requires_grad_(True)
            w = torch.randn(20, shape[1], 3, 3, requires_grad=True)
            gy = torch.randn(shape[0], 20, *shape[2:])
            out = winograd_conv3x3(x, w)
            ref = F.conv2d(x.double(), w.double(), padding=1)
            assert out.shape == ref.shape and _rel(out, ref) < 2e-5
            gx, gw = torch.autograd.grad(out, (x, w), gy)
            rx, rw = torch.autograd.grad(ref, (x, w), gy.double())
            assert _rel(gx, rx) < 2e-5 and _rel(gw, rw) < 2e-5


def test_winograd_is_used_only_where_it_was_measured_faster():
    def pays(n, c, size, x_grad=False, w_grad=False, dtype=torch.float32):
        x = torch.empty(n, c, size, size, dtype=dtype).requires_grad_(x_grad)
        return winograd_pays(x, torch.empty(c, c, 3, 3, dtype=dtype).requires_grad_(w_grad))

    assert pays(2, 512, 64) and pays(1, 256, 32) and pays(2, 128, 256) and pays(2, 128, 256, True, True)
    assert pays(8, 256, 128, x_grad=True)
    assert not pays(8, 128, 256, x_grad=True)  # input gradient only (the probe): narrow layers lose
    assert not pays(2, 64, 512)  # narrow: the transforms cost more than they save
    assert not pays(2, 512, 16)  # small maps
    assert not pays(2, 512, 64, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not pays(2, 512, 64)


def test_transposed_conv_fast_weight_gradient_equals_plain():
    torch.manual_seed(0)
    x = torch.randn(2, 256, 5, 4).contiguous(memory_format=CL).requires_grad_(True)
    w = torch.randn(256, 8, 3, 3, requires_grad=True)
    out = conv_transpose2x(x, w)
    assert type(out.grad_fn).__name__ == "_ConvTranspose2xBackward"  # the fast path is the one under test
    ref = F.conv_transpose2d(x, w, stride=2)
    assert torch.equal(out, ref)
    gy = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(out, (x, w), gy), torch.autograd.grad(ref, (x, w), gy)):
        assert _rel(a, b) < 1e-5
    with torch.no_grad():  # nothing to differentiate: the plain convolution
        assert torch.equal(conv_transpose2x(x, w), ref)
    # narrow layers keep the plain convolution (the contiguous copies cost more there)
    narrow = torch.randn(2, 128, 5, 4).contiguous(memory_format=CL)
    assert type(conv_transpose2x(narrow, w[:128]).grad_fn).__name__ != "_ConvTranspose2xBackward"


def test_winograd_generator_matches_batched_and_shares_nothing_but_tensors():
    g = tiny_generator(0, size=32, channel_max=256)
    fast = g.shared_copy().set_conv_impl("winograd")
    assert g.conv_impl == "batched" and fast.conv_impl == "winograd"
    assert fast.convs[0].conv.weight is g.convs[0].conv.weight  # same tensors, no copy
    wp = torch.randn(2, g.n_latent, g.style_dim)
    outs, grads = zip(*(synthesis_and_wplus_grad(gen, wp) for gen in (g, fast)), strict=True)
    assert not torch.equal(outs[0], outs[1])  # the 32 px layers did run by Winograd
    assert _rel(outs[1], outs[0]) < 1e-5 and _rel(grads[1], grads[0]) < 1e-4
