"""The generator: checkpoint-format compatibility and numerical identity with the reference implementation."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from nada.nets.ops import fir_kernel, upfirdn2d, upfirdn2d_ref
from nada.nets.stylegan2 import Generator, mix_latents, truncate
from nada.render import render_seeds

from .fixtures import fixture_path

MANIFESTS = {"1024_cm2": (1024, 2), "512_cm2": (512, 2), "256_cm2": (256, 2), "256_cm1": (256, 1)}


@pytest.mark.parametrize("name", MANIFESTS)
def test_state_dict_matches_rosinality_manifest(name):
    manifest = json.loads(fixture_path("stylegan2", f"manifest_{name}.json").read_text())
    size, cm = MANIFESTS[name]
    g = Generator(size, channel_multiplier=cm)
    sd = g.state_dict()
    assert list(sd) == list(manifest)  # same keys, same order
    assert {k: list(v.shape) for k, v in sd.items()} == manifest
    assert g.n_latent == 2 * int(np.log2(size)) - 2


@pytest.fixture(scope="module")
def fixture_256(synth):
    d = dict(np.load(fixture_path("stylegan2", "fixture_256_cm2_seed1.npz")))
    manifest = json.loads(fixture_path("stylegan2", "manifest_256_cm2.json").read_text())
    g = Generator(256, channel_multiplier=2)
    g.load_state_dict(synth.synth_state_dict(manifest, int(d["weight_seed"])), strict=True)
    return g.eval(), {k: torch.from_numpy(v) for k, v in d.items()}


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


def test_fixture_256_plain_and_truncated(fixture_256):
    g, d = fixture_256
    with torch.no_grad():
        w = g.mapping(d["z"])
        assert _maxdiff(w, d["w"]) < 1e-5
        assert _maxdiff(g.synthesis(w, noise_mode="const"), d["img"]) < 1e-4
        assert _maxdiff(g(d["z"], truncation=0.7, w_avg=d["w_avg"]), d["img_trunc"]) < 1e-4
    assert d["img"].std() > 1.0  # the reference output is not degenerate


def test_fixture_256_wplus_noise_and_mixing(fixture_256):
    g, d = fixture_256
    with torch.no_grad():
        assert _maxdiff(g.synthesis(d["wplus"]), d["img_wplus"]) < 1e-4
        noise = [d[f"noise_{i}"] for i in range(g.num_layers)]
        w = g.mapping(d["z"])
        assert _maxdiff(g.synthesis(w, noise=noise), d["img_noise"]) < 1e-4
        lat = mix_latents(w, g.mapping(d["z2"]), int(d["inject_index"]), g.n_latent)
        assert _maxdiff(lat, d["latent_mix"]) < 1e-5
        assert _maxdiff(g.synthesis(lat), d["img_mix"]) < 1e-4


def test_mean_latent_is_seeded_and_truncation_interpolates(tiny_generator):
    g = tiny_generator
    with torch.no_grad():
        m1, m2 = g.mean_latent(256, seed=3), g.mean_latent(256, seed=3)
        assert m1.shape == (1, g.style_dim) and torch.equal(m1, m2)
        assert not torch.equal(m1, g.mean_latent(256, seed=4))
        z = torch.randn(3, g.style_dim, generator=torch.Generator().manual_seed(0))
        w = g.mapping(z)
        # psi = 0 collapses every sample onto the centre; psi = 1 is the plain output
        center = g.synthesis(m1.expand(3, -1))
        assert torch.allclose(g(z, truncation=0.0, w_avg=m1), center, atol=1e-6)
        assert torch.allclose(g(z, truncation=1.0), g.synthesis(w), atol=1e-6)
        # the same up to float32 rounding (the two formulas round differently near 0)
        assert torch.allclose(truncate(w, m1, 0.5), 0.5 * (w + m1), rtol=1e-5, atol=1e-6 * float(w.abs().max()))


def test_wplus_rows_reach_the_modules_named_for_them(tiny_generator):
    g = tiny_generator
    rows = g.latent_consumers()
    assert len(rows) == g.n_latent and rows[0] == ["conv1"] and rows[1] == ["convs.0", "to_rgb1"]
    assert rows[-1] == [f"to_rgbs.{len(g.to_rgbs) - 1}"]
    w = torch.randn(1, g.style_dim)
    with torch.no_grad():
        base = g.synthesis(w)
        for i in range(g.n_latent):  # changing any single row changes the image
            wp = g.to_wplus(w).clone()
            wp[:, i] += 1.0
            assert (g.synthesis(wp) - base).abs().max() > 1e-4, i


def test_noise_modes(tiny_generator):
    g = tiny_generator
    w = g.mapping(torch.randn(2, g.style_dim))
    with torch.no_grad():
        assert torch.equal(g.synthesis(w, "const"), g.synthesis(w, "const"))
        torch.manual_seed(0)
        r1 = g.synthesis(w, "random")
        r2 = g.synthesis(w, "random")
        assert not torch.equal(r1, r2)
    with pytest.raises(ValueError, match="noise_mode"):
        g.synthesis(w, "banana")
    with pytest.raises(ValueError, match="Expected w"):
        g.synthesis(torch.randn(2, 5, g.style_dim))


def test_seeds_render_the_same_images_in_any_batching(tiny_generator):
    with torch.no_grad():
        a = render_seeds(tiny_generator, [3, 4, 5], truncation=0.7, batch=1)
        b = render_seeds(tiny_generator, [3, 4, 5], truncation=0.7, batch=3)
        c = render_seeds(tiny_generator, [4], truncation=0.7)
    assert a.shape == (3, 3, 32, 32)
    assert torch.allclose(a, b, atol=1e-5) and torch.allclose(a[1:2], c, atol=1e-5)
    assert (a[0] - a[1]).abs().mean() > 1e-3  # different seeds, different images


@pytest.mark.parametrize("pad", [(2, 1), (1, 1), (0, 0), (1, 2)])
def test_fast_upsample_equals_reference(pad):
    x = torch.randn(2, 3, 8, 8)
    k = fir_kernel(gain=4.0)
    assert torch.allclose(upfirdn2d(x, k, up=2, pad=pad), upfirdn2d_ref(x, k, up=2, pad=pad), atol=1e-6)


def test_device_follows_the_module(tiny_generator):
    g = tiny_generator.to(torch.float64)
    out = g(torch.randn(1, g.style_dim, dtype=torch.float64), truncation=0.5)
    assert out.dtype == torch.float64 and out.shape == (1, 3, 32, 32)


@pytest.mark.slow
def test_real_size_1024_runs(synth):
    manifest = json.loads(fixture_path("stylegan2", "manifest_1024_cm2.json").read_text())
    g = Generator(1024)
    g.load_state_dict(synth.synth_state_dict(manifest, 0), strict=True)
    with torch.no_grad():
        img = g(torch.randn(1, 512), truncation=0.7)
    assert img.shape == (1, 3, 1024, 1024) and torch.isfinite(img).all()


def test_blur_fast_path_equals_reference():
    x = torch.randn(2, 4, 9, 9)
    k = fir_kernel(gain=4.0)
    assert torch.allclose(upfirdn2d(x, k, pad=(1, 1)), upfirdn2d_ref(x, k, pad=(1, 1)), atol=1e-6)
    xc = x.contiguous(memory_format=torch.channels_last)
    assert torch.allclose(upfirdn2d(xc, k, pad=(1, 1)), upfirdn2d_ref(x, k, pad=(1, 1)), atol=1e-6)


def test_batched_modulated_conv_equals_grouped_reference(fixture_256):
    """The default (activation modulation, channels-last) and its Winograd variant (what adaptation runs) against
    the reference grouped formulation: forward, and the gradients with respect to W+ and to the weights."""
    g, d = fixture_256
    g = copy.deepcopy(g)
    wplus = d["wplus"].clone()
    outs, grads = {}, {}
    for impl in ("grouped", "batched", "winograd", "auto"):
        g.set_conv_impl(impl)
        wp = wplus.clone().requires_grad_(True)
        g.zero_grad(set_to_none=True)
        out = g.synthesis(wp)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        outs[impl], grads[impl] = out.detach(), (wp.grad, g.convs[3].conv.weight.grad.clone())
    for impl in outs:
        assert _maxdiff(outs[impl], d["img_wplus"]) < 1e-4, impl
    assert not torch.equal(outs["winograd"], outs["batched"])  # the wide layers did take the Winograd path
    for fast in ("batched", "winograd", "auto"):  # auto: whichever paths the tuner timed fastest here
        for a, b in zip(grads[fast], grads["grouped"]):
            assert (a - b).abs().max() <= 1e-4 * b.abs().max(), fast


def test_upsampling_never_checks_its_kernel_per_call(tiny_generator, monkeypatch):
    """The kernel's symmetry is read once (at construction and on load), not per forward: on a GPU that check is a
    host sync in every 2x up-sampling."""
    from nada.nets import ops
    from nada.nets.stylegan2 import Upsample

    calls = []
    real = ops.is_symmetric
    monkeypatch.setattr(ops, "is_symmetric", lambda k: calls.append(1) or real(k))
    with torch.no_grad():
        tiny_generator(torch.randn(2, tiny_generator.style_dim))
    assert calls == []
    up = Upsample()
    lopsided = torch.outer(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([1.0, 2.0, 3.0, 4.0])) / 25
    up.load_state_dict({"kernel": lopsided})  # a checkpoint may carry another kernel: checked again on load
    assert up.symmetric is False
    x = torch.randn(1, 2, 5, 5)
    assert torch.allclose(up(x), upfirdn2d_ref(x, lopsided, up=2, pad=up.pad), atol=1e-6)


def test_make_noise_draws_from_a_generator_on_its_own_device(tiny_generator):
    draws = [tiny_generator.make_noise(2, generator=torch.Generator().manual_seed(5)) for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*draws))
    assert [tuple(n.shape) for n in draws[0]] == [(2, 1, *b.shape[-2:]) for b in tiny_generator.noise_buffers()]
    if torch.cuda.is_available():  # a CUDA generator draws on the GPU (a CPU draw with it fails)
        g = copy.deepcopy(tiny_generator).cuda()
        noise = g.make_noise(2, generator=torch.Generator(device="cuda").manual_seed(5))
        assert all(n.is_cuda for n in noise)
