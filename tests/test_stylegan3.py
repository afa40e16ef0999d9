"""StyleGAN3-T and -R as our own network (``nada.nets.stylegan3``): NVIDIA's images and key manifest, the filter
designs, the fast filtered leaky ReLU against the literal one, and the StyleGAN2 generator's interface.

Real-size networks appear only as meta tensors (shapes, no memory); the numerics run on the NVIDIA fixtures (256 px,
small channel counts) and on a 32 px tiny StyleGAN3 (``nada.tiny.tiny_stylegan3``)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from nada.nets import sg3_poly
from nada.nets.nvidia_pickle import read_generator
from nada.nets.sg3_filters import lowpass_filter, plan_synthesis
from nada.nets.sg3_ops import filtered_lrelu_ref
from nada.nets.sg3_poly import filtered_lrelu
from nada.nets.sg3_resample import resample_rows
from nada.nets.stylegan3 import StyleGAN3Generator
from nada.tiny import TINY_STYLEGAN3, tiny_stylegan3
from nada.weights import load_generator

from .fixtures import fixture_path

TOL = 1e-4  # of the image's range (the fixture README's suggestion)
FIXTURES = ("sg3t_256", "sg3r_256")


def _io(name: str) -> dict[str, torch.Tensor]:
    return load_file(fixture_path("nvidia", f"{name}.safetensors"))


@pytest.fixture(scope="module", params=FIXTURES)
def nvidia(request) -> tuple[str, StyleGAN3Generator]:
    module = read_generator(fixture_path("nvidia", f"{request.param}.pkl"))
    return request.param, StyleGAN3Generator.from_nvidia(module.init_kwargs, module.state_dict)


def _rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    return (a - ref).abs().max().item() / (ref.max() - ref.min()).item()


# ----------------------------------------------------------------------------------------------- NVIDIA's numbers
def test_nvidias_images_at_truncation_1_and_07(nvidia):
    name, g = nvidia
    io = _io(name)
    z = io["io/z"]  # [2, 512]
    with torch.no_grad():
        img = g(z)  # truncation 1: its centre does not matter
        w = g.mapping(z)  # [2, 512]
        ws = g.truncation_center() + 0.7 * (w - g.truncation_center())  # the file's w_avg is the centre
        img07 = g.synthesis(io["io/ws_psi07"])  # NVIDIA's W+ [2, 16, 512]
    assert (ws[:, None] - io["io/ws_psi07"]).abs().max() < 1e-5
    assert _rel_err(img, io["io/img_psi1"]) < TOL
    assert _rel_err(img07, io["io/img_psi07"]) < TOL


@pytest.mark.slow
def test_nvidias_images_by_the_reference_path(nvidia):
    """The literal formulation (per-sample kernels, the filtered leaky ReLU step by step): slow, tens of seconds."""
    name, g = nvidia
    io = _io(name)
    with torch.no_grad():
        img = g.shared_copy().set_conv_impl("grouped")(io["io/z"])
    assert _rel_err(img, io["io/img_psi1"]) < TOL


@pytest.mark.parametrize("name", FIXTURES)
def test_load_generator_reads_stylegan3_pickles(name):
    g = load_generator(fixture_path("nvidia", f"{name}.pkl"))
    assert isinstance(g, StyleGAN3Generator) and g.arch == ("stylegan3-r" if name == "sg3r_256" else "stylegan3-t")
    assert not any(p.requires_grad for p in g.parameters()) and not g.training


@pytest.mark.parametrize("name", FIXTURES)
def test_our_manifest_at_the_public_1024_config_is_nvidias(name):
    info = json.loads(fixture_path("nvidia", f"{name}.json").read_text())
    with torch.device("meta"):
        g = StyleGAN3Generator(img_resolution=info["full_resolution"], **info["public_kwargs"])
    ours = {k: list(v.shape) for k, v in g.state_dict().items()}
    assert ours == info["manifest_full"]
    assert list(ours) == list(info["manifest_full"])  # NVIDIA's order too
    assert g.n_latent == info["num_ws"] == 16


@pytest.mark.parametrize("name", FIXTURES)
def test_the_designed_filters_are_the_files(name):
    """Our filter designs (float64 formulas) give the filters NVIDIA stored (so a random-init network is NVIDIA's)."""
    module = read_generator(fixture_path("nvidia", f"{name}.pkl"))
    g = StyleGAN3Generator(**module.init_kwargs)
    ours = {k: v for k, v in g.state_dict().items() if k.endswith("_filter")}
    assert ours and set(ours) == {k for k in module.state_dict if k.endswith("_filter")}
    for key, value in ours.items():
        assert torch.allclose(value, module.state_dict[key], atol=1e-7, rtol=0), key


def test_from_nvidia_reads_the_resolution_off_the_state_dict_and_refuses_what_does_not_fit():
    module = read_generator(fixture_path("nvidia", "sg3t_256.pkl"))
    kwargs = {k: v for k, v in module.init_kwargs.items() if k != "img_resolution"}
    g = StyleGAN3Generator.from_nvidia(kwargs, module.state_dict)
    assert g.size == 256 and g.config()["init_kwargs"]["img_resolution"] == 256
    assert g.synthesis.input.weight.data_ptr() != module.state_dict["synthesis.input.weight"].data_ptr()  # a copy
    sd = dict(module.state_dict)
    sd.pop("synthesis.L3_52_64.magnitude_ema")
    with pytest.raises(ValueError, match="does not fit"):
        StyleGAN3Generator.from_nvidia(module.init_kwargs, sd)
    with pytest.raises(ValueError, match="unknown constructor arguments.*'frobnicate'"):
        StyleGAN3Generator.from_nvidia({**module.init_kwargs, "frobnicate": 1}, module.state_dict)
    with pytest.raises(ValueError, match="Class-conditional"):
        StyleGAN3Generator(**{**TINY_STYLEGAN3, "c_dim": 10})


# ---------------------------------------------------------------------------------------------------- filters
def test_lowpass_filters_are_scipys_kaiser_designs():
    signal = pytest.importorskip("scipy.signal")
    special = pytest.importorskip("scipy.special")
    import numpy as np

    for taps, cutoff, width, fs in ((12, 2.0, 6.4, 32), (24, 11.3, 10.2, 128), (12, 128.0, 90.5, 2048)):
        ref = signal.firwin(numtaps=taps, cutoff=cutoff, width=width, fs=fs)
        assert np.allclose(lowpass_filter(taps, cutoff, width, fs).numpy(), ref, atol=1e-7)
        x = (np.arange(taps) - (taps - 1) / 2) / fs  # NVIDIA's radial design, written with scipy
        r = np.hypot(*np.meshgrid(x, x))
        f = special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
        beta = signal.kaiser_beta(signal.kaiser_atten(taps, width / (fs / 2)))
        f *= np.outer(np.kaiser(taps, beta), np.kaiser(taps, beta))
        assert np.allclose(lowpass_filter(taps, cutoff, width, fs, radial=True).numpy(), f / f.sum(), atol=1e-7)
    assert lowpass_filter(1, 2.0, 1.0, 16) is None


def _resample_1d(x: torch.Tensor, f: torch.Tensor, up: int, down: int, pad: tuple[int, int]) -> torch.Tensor:
    """The definition along H, step by step: x [N, H, L] -> zero-insert, pad (negative: crop), convolve, decimate."""
    n, h, length = x.shape
    z = torch.zeros(n, h * up, length, dtype=x.dtype)
    z[:, ::up] = x
    z = torch.nn.functional.pad(z, (0, 0, max(pad[0], 0), max(pad[1], 0)))
    z = z[:, max(-pad[0], 0): z.shape[1] - max(-pad[1], 0)]
    taps = f.shape[0]
    y = torch.stack([sum(z[:, j + t] * f[taps - 1 - t] for t in range(taps)) for j in range(z.shape[1] - taps + 1)], 1)
    return y[:, ::down]


@pytest.mark.parametrize("up,down,pad,taps", [(4, 1, (-6, -9), 24), (2, 1, (9, 8), 12), (2, 1, (-11, -12), 12),
                                              (1, 2, (0, 0), 12), (1, 2, (3, -2), 12), (3, 2, (1, 5), 9)])
@pytest.mark.parametrize("block", [None, 4, 12])
def test_resample_rows_is_the_definition(up, down, pad, taps, block):
    if block is not None and (block * down) % up:
        pytest.skip("block * down must be a multiple of up")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 37, 5, dtype=torch.float64, generator=gen)
    f = torch.randn(taps, dtype=torch.float64, generator=gen)
    out = resample_rows(x, f, up, down, pad, block=block)
    ref = _resample_1d(x, f, up, down, pad)
    assert out.shape == ref.shape and torch.allclose(out, ref, atol=1e-12)


@pytest.mark.parametrize("radial", [False, True])
def test_the_fast_filtered_lrelu_is_the_reference_at_every_layer(radial):
    """Every layer geometry of a StyleGAN3 plan, float64, values large enough that the clamp acts; values and
    gradients (input, bias and demodulation)."""
    _, plans = plan_synthesis(64, 3, 1024, 16, conv_kernel=1 if radial else 3, use_radial_filters=radial)
    gen = torch.Generator().manual_seed(1)
    for p in plans[:-1]:
        size = p.in_size + p.conv_kernel - 1
        x = (300 * torch.randn(2, 3, size, size, dtype=torch.float64, generator=gen)).requires_grad_(True)
        d = (0.5 + torch.rand(2, 3, dtype=torch.float64, generator=gen)).requires_grad_(True)
        b = torch.randn(3, dtype=torch.float64, generator=gen).requires_grad_(True)
        fu, fd = p.up_filter().double(), p.down_filter().double()
        args = dict(up=p.up, down=p.down, padding=p.padding, gain=math.sqrt(2), slope=0.2, clamp=256.0)
        ref = filtered_lrelu_ref(x * d[:, :, None, None], fu, fd, b, **args)
        out = filtered_lrelu(x, fu, fd, demod=d, bias=b, **args)
        assert out.shape == ref.shape == (2, 3, p.out_size, p.out_size), p.name
        unclamped = filtered_lrelu_ref(x * d[:, :, None, None], fu, fd, b, **{**args, "clamp": None})
        assert not torch.allclose(ref, unclamped), "the clamp should act somewhere"
        assert torch.allclose(out, ref, atol=1e-10), p.name
        probe = torch.randn(ref.shape, dtype=torch.float64, generator=gen)
        g_ref = torch.autograd.grad((ref * probe).sum(), (x, d, b))
        g_out = torch.autograd.grad((out * probe).sum(), (x, d, b))
        # float64, yet not to rounding: where the full-rate map is zero (up-sampled zero padding) the two sides of the
        # leaky ReLU's kink are a matter of rounding, and either slope is a valid gradient there
        assert all(torch.allclose(a, r, atol=1e-7 * r.abs().max().item()) for a, r in zip(g_out, g_ref)), p.name
        with torch.no_grad():  # the in-place path
            assert torch.allclose(filtered_lrelu(x, fu, fd, demod=d, bias=b, **args), ref, atol=1e-10)


@pytest.mark.parametrize("radial", [False, True])
def test_many_bands_give_the_same_values_and_gradients(monkeypatch, radial):
    """The full-rate map is made a band of rows at a time, forward and backward: tiny bands (8 output rows) give the
    reference's values and gradients."""
    monkeypatch.setattr(sg3_poly, "BAND_BYTES", 1)
    _, plans = plan_synthesis(64, 3, 1024, 16, conv_kernel=1 if radial else 3, use_radial_filters=radial)
    gen = torch.Generator().manual_seed(2)
    for p in (plans[3], plans[4], plans[-2]):  # up 4, up 2, critically sampled
        size = p.in_size + p.conv_kernel - 1
        x = (300 * torch.randn(2, 3, size, size, dtype=torch.float64, generator=gen)).requires_grad_(True)
        fu, fd = p.up_filter().double(), p.down_filter().double()
        args = dict(up=p.up, down=p.down, padding=p.padding, gain=math.sqrt(2), slope=0.2, clamp=256.0)
        ref = filtered_lrelu_ref(x, fu, fd, **args)
        with torch.no_grad():
            assert torch.allclose(filtered_lrelu(x, fu, fd, **args), ref, atol=1e-10), p.name
        out = filtered_lrelu(x, fu, fd, **args)
        assert p.out_size > 16 and out.is_contiguous(memory_format=torch.channels_last)
        probe = torch.randn(ref.shape, dtype=torch.float64, generator=gen)
        g_ref, = torch.autograd.grad((ref * probe).sum(), x)
        g_out, = torch.autograd.grad((out * probe).sum(), x)
        assert torch.allclose(g_out, g_ref, atol=1e-7 * g_ref.abs().max().item()), p.name


# ------------------------------------------------------------------------------------------------ the network
@pytest.mark.parametrize("radial", [False, True])
@pytest.mark.parametrize("batch", [1, 2])  # one image modulates the kernel, several the activations
def test_the_fast_path_is_the_reference_path_with_gradients(radial, batch):
    g = tiny_stylegan3(radial=radial).requires_grad_(True)
    ref_g = g.shared_copy().set_conv_impl("grouped")
    w = g.mapping(torch.randn(batch, 32, generator=torch.Generator().manual_seed(0))).detach()
    wp = (g.to_wplus(w) + 0.1 * torch.randn(batch, 16, 32, generator=torch.Generator().manual_seed(1)))
    outs, grads = [], []
    for net in (g, ref_g):
        x = wp.clone().requires_grad_(True)
        img = net.synthesis(x)
        probe = torch.linspace(-1, 1, img.numel()).view_as(img)
        layers = net.synthesis.layers()
        params = [layers[3].weight, layers[-1].affine.weight, net.synthesis.input.weight]
        gr = torch.autograd.grad((img * probe).sum(), [x, *params])
        outs.append(img.detach())
        grads.append(gr)
    assert torch.allclose(outs[0], outs[1], atol=1e-5 * outs[1].abs().max().item())
    for a, r in zip(*grads):  # by norm: in float32 a value within rounding of the leaky ReLU's kink may take either
        assert (a - r).norm() <= 1e-4 * r.norm()  # slope on either path, a rare local difference of the gradient
    assert grads[0][0].abs().sum(dim=(0, 2)).min() > 0  # every W+ row (the input's row 0 too) moves the image


def test_each_image_is_independent_of_its_batch():
    g = tiny_stylegan3()
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        together = g(z, truncation=0.7)
        alone = torch.cat([g(z[i:i + 1], truncation=0.7) for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-6)


def test_the_interface_of_our_stylegan2():
    g = tiny_stylegan3()
    assert (g.n_latent, g.size, g.style_dim, g.z_dim) == (16, 32, 32, 32)
    assert g.noise_buffers() == [] and g.make_noise(2) == []
    assert g.device == torch.device("cpu") and g.dtype == torch.float32
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        w = g.mapping(z)  # [2, 32]
        assert w.shape == (2, 32)
        img = g.synthesis(w)
        assert img.shape == (2, 3, 32, 32)
        assert torch.equal(g.synthesis(g.to_wplus(w)), img)
        assert torch.equal(g.synthesis(w, noise_mode="random", noise=[]), img)  # no noise in StyleGAN3
        assert torch.equal(g(z, truncation=0.5), g.synthesis(g.truncation_center() + 0.5 * (w - g.truncation_center())))
        other = torch.zeros(1, 32)
        assert torch.equal(g(z, truncation=0.5, w_avg=other), g.synthesis(0.5 * w))
    assert torch.equal(g.truncation_center(), g.mapping.w_avg[None])
    assert g.mean_latent(64).shape == (1, 32)
    with pytest.raises(ValueError, match="Expected w"):
        g.synthesis(torch.zeros(2, 15, 32))
    with pytest.raises(ValueError, match="noise_mode"):
        g.synthesis(w, noise_mode="nope")


def test_latent_consumers_name_the_modules_reading_each_row():
    g = tiny_stylegan3()
    rows = g.latent_consumers()
    assert len(rows) == g.n_latent
    assert rows[0] == ["synthesis.input"] and rows[1] == ["synthesis.L0_36_16"] and rows[-1] == ["synthesis.L14_32_3"]
    for names in rows:
        for name in names:
            g.get_submodule(name)  # exists
    # Changing row i changes only what module i reads: the images differ, and only that module's inputs do.
    wp = g.to_wplus(g.mapping(torch.randn(1, 32, generator=torch.Generator().manual_seed(4)))).clone()
    seen = {}
    hooks = [g.get_submodule(rows[i][0]).register_forward_pre_hook(
        lambda m, args, i=i: seen.__setitem__(i, args[-1].clone())) for i in range(g.n_latent)]
    with torch.no_grad():
        g.synthesis(wp)
        before = dict(seen)
        wp2 = wp.clone()
        wp2[:, 5] += 1.0
        g.synthesis(wp2)
    for h in hooks:
        h.remove()
    assert [i for i in range(g.n_latent) if not torch.equal(seen[i], before[i])] == [5]


def test_modulated_layers_and_both_forms_of_style_offsets_fold_exactly():
    g = tiny_stylegan3()
    layers = g.modulated_convs()
    assert len(layers) == 15 and len(g.modulated_convs(to_rgb=False)) == 14
    assert list(layers)[-1] == "synthesis.L14_32_3" and all(m.in_ch == m.in_channels for m in layers.values())
    gen = torch.Generator().manual_seed(5)
    offsets = {}
    for name, m in layers.items():
        offsets[f"{name}.style_offset"] = 0.2 * torch.randn(m.in_ch, generator=gen)
        offsets[f"{name}.style_delta"] = 0.2 * torch.randn(m.in_ch, generator=gen)
    z = torch.randn(2, 32, generator=gen)
    with torch.no_grad():
        plain = g(z)
        g.set_style_offsets(offsets)
        assert set(g.style_offsets()) == set(offsets)
        styled = g(z)
        assert not torch.allclose(styled, plain, atol=1e-3)
        keys = set(g.state_dict())
        g.fold_style_offsets()
        assert g.style_offsets() == {} and set(g.state_dict()) == keys
        assert torch.allclose(g(z), styled, atol=1e-5)
    with pytest.raises(ValueError, match="not a style offset"):
        g.set_style_offsets({"synthesis.input.style_offset": torch.zeros(16)})
    with pytest.raises(ValueError, match="must have shape"):
        g.set_style_offsets({"synthesis.L0_36_16.style_delta": torch.zeros(3)})
    assert g.set_style_offsets(None).style_offsets() == {}


def test_shared_copy_config_and_settings():
    g = tiny_stylegan3()
    c = g.shared_copy().set_conv_impl("grouped")
    assert c.conv_impl == "grouped" and g.conv_impl == "batched"
    assert all(a.data_ptr() == b.data_ptr() for a, b in zip(g.parameters(), c.parameters()))
    cfg = json.loads(json.dumps(g.config()))
    assert cfg["arch"] == "stylegan3-t" and cfg["size"] == 32 and cfg["n_latent"] == 16
    rebuilt = StyleGAN3Generator(**cfg["init_kwargs"])
    rebuilt.load_state_dict(g.state_dict(), strict=True)
    assert tiny_stylegan3(radial=True).config()["arch"] == "stylegan3-r"
    with pytest.raises(ValueError, match="conv impl"):
        g.set_conv_impl("nope")


def test_gradient_checkpointing_gives_the_same_gradients():
    g = tiny_stylegan3().requires_grad_(True)
    w = g.mapping(torch.randn(2, 32, generator=torch.Generator().manual_seed(6))).detach()
    grads = []
    for flag in (False, True):
        g.grad_checkpointing = flag
        g.zero_grad(set_to_none=True)
        g.synthesis(w).square().mean().backward()
        grads.append(g.synthesis.layers()[5].weight.grad.clone())
    assert g.synthesis.grad_checkpointing and torch.allclose(*grads, atol=1e-7)
