"""NVIDIA's StyleGAN2-ADA generator (``training/networks_stylegan2.py``, read as data by :mod:`.nvidia_pickle`) as our
StyleGAN2 :class:`~.stylegan2.Generator` in rosinality's layout, and back.

The two compute the same function; only the names and shapes of the tensors differ:

- NVIDIA's block ``b4`` holds the constant and the first layer (``conv1``, ``torgb``); each block ``b{r}`` above holds
  the up-sampling ``conv0``, ``conv1`` and ``torgb``. Ours: ``input``, ``conv1``, ``to_rgb1``, then ``convs.{2j}``,
  ``convs.{2j+1}``, ``to_rgbs.{j}`` for ``r = 2 ** (j + 3)``. The W+ rows are read in the same order.
- Layer ``affine`` = our ``conv.modulation``; ``noise_strength`` [] = ``noise.weight`` [1]; ``noise_const`` [r, r] =
  ``noises.noise_i`` [1, 1, r, r]; weights gain a leading 1; ToRGB's bias [3] is ours [1, 3, 1, 1].
- The up-sampling convolution is a transposed convolution with the unflipped kernel, then the [1, 3, 3, 1] filter
  (gain 4, pad 1), as ours. NVIDIA's ``resample_filter`` buffers are that filter normalised: they are checked, not
  loaded (ours are rosinality's ``blur.kernel`` / ``upsample.kernel``, the same filter times 4).
- ``mapping.w_avg`` (the W mean tracked in training) becomes ``Generator.latent_avg``, the truncation centre.
- NVIDIA clamps each synthesis layer's output to +-``conv_clamp`` (after bias, activation and gain) and each ToRGB's
  output before the skip sum; ours does when built with ``conv_clamp``. Its fp16 layers run in float32 here, as they
  do in NVIDIA's code off CUDA.
"""

from __future__ import annotations

import math
import re

import torch

from .nvidia_pickle import NvidiaModule, UnsupportedNetworkError, describe_generator
from .ops import fir_kernel
from .stylegan2 import Generator, channels_for

RESAMPLE = "resample_filter"  # NVIDIA's fixed FIR buffers (checked, not loaded)
CHANNEL_MULTIPLIERS = (2, 1, 4)  # rosinality configs tried first, so that a public config reads as one


def nvidia_layout(size: int, n_mlp: int = 8, noise: bool = True) -> dict[str, str | None]:
    """Every NVIDIA ``G_ema.state_dict()`` name, in its order, -> our name (``None`` for the fixed
    ``resample_filter`` buffers; ``mapping.w_avg`` -> ``latent_avg``, which is not a state-dict key of ours)."""
    out: dict[str, str | None] = {}

    def layer(nv: str, ours: str, noise_index: int) -> None:  # parameters, buffers, then the affine submodule
        out[f"{nv}.weight"] = f"{ours}.conv.weight"
        if noise:
            out[f"{nv}.noise_strength"] = f"{ours}.noise.weight"
        out[f"{nv}.bias"] = f"{ours}.activate.bias"
        out[f"{nv}.{RESAMPLE}"] = None
        if noise:
            out[f"{nv}.noise_const"] = f"noises.noise_{noise_index}"
        out[f"{nv}.affine.weight"] = f"{ours}.conv.modulation.weight"
        out[f"{nv}.affine.bias"] = f"{ours}.conv.modulation.bias"

    def torgb(nv: str, ours: str) -> None:
        out.update({f"{nv}.weight": f"{ours}.conv.weight", f"{nv}.bias": f"{ours}.bias",
                    f"{nv}.affine.weight": f"{ours}.conv.modulation.weight",
                    f"{nv}.affine.bias": f"{ours}.conv.modulation.bias"})

    out["synthesis.b4.const"] = "input.input"
    out[f"synthesis.b4.{RESAMPLE}"] = None
    layer("synthesis.b4.conv1", "conv1", 0)
    torgb("synthesis.b4.torgb", "to_rgb1")
    for j in range(int(math.log2(size)) - 2):
        block = f"synthesis.b{2 ** (j + 3)}"
        out[f"{block}.{RESAMPLE}"] = None
        layer(f"{block}.conv0", f"convs.{2 * j}", 2 * j + 1)
        layer(f"{block}.conv1", f"convs.{2 * j + 1}", 2 * j + 2)
        torgb(f"{block}.torgb", f"to_rgbs.{j}")
    out["mapping.w_avg"] = "latent_avg"
    for i in range(n_mlp):
        out.update({f"mapping.fc{i}.weight": f"style.{i + 1}.weight", f"mapping.fc{i}.bias": f"style.{i + 1}.bias"})
    return out


def nvidia_key_map(size: int, n_mlp: int = 8, noise: bool = True) -> dict[str, str]:
    """NVIDIA name -> our name for every tensor that carries weights (:func:`nvidia_layout` less its filters)."""
    return {nv: ours for nv, ours in nvidia_layout(size, n_mlp, noise).items() if ours is not None}


def _refuse(name: str, why: str) -> UnsupportedNetworkError:
    return UnsupportedNetworkError(f"{name}: this StyleGAN2-ADA generator {why}, which nada's StyleGAN2 does not "
                                   "have; it reads the configurations NVIDIA's train.py makes.")


def nvidia_config(module: NvidiaModule, name: str = "the file") -> dict:
    """Our :class:`Generator` arguments for an NVIDIA StyleGAN2-ADA generator, read off its tensors and attributes
    (``channel_base`` only when no rosinality channel multiplier gives the same channels). Refuses variants ours
    cannot run (another architecture than 'skip', other activations or filters, z_dim != w_dim, not RGB)."""
    info, sd = describe_generator(module), module.state_dict
    if info.architecture != "StyleGAN2-ADA":
        raise UnsupportedNetworkError(f"{name} holds {info.summary()}, not a StyleGAN2-ADA generator.")
    synthesis, mapping = module.submodules["synthesis"], module.submodules["mapping"]
    size, w_dim = info.resolution, info.w_dim
    if size is None or size < 8 or 2 ** int(math.log2(size)) != size or size > 1024:
        raise _refuse(name, f"makes {size} px images (nada's StyleGAN2 makes 8 to 1024 px)")
    if info.z_dim != w_dim or w_dim is None:
        raise _refuse(name, f"has z_dim {info.z_dim} and w_dim {w_dim} (ours has one size for both)")
    if module.attribute("img_channels", 3) != 3:
        raise _refuse(name, f"makes {module.attribute('img_channels')}-channel images (not RGB)")
    blocks = synthesis.submodules
    if any(b.attribute("architecture", "skip") != "skip" for b in blocks.values()):
        raise _refuse(name, "uses the 'orig' or 'resnet' synthesis architecture (not 'skip')")
    fcs = sorted(k for k in mapping.submodules if re.fullmatch(r"fc\d+", k))
    if "embed" in mapping.submodules or not fcs:
        raise _refuse(name, "has a label embedding or no mapping layers")
    lr = {float(mapping.submodules[k].attribute("bias_gain", 0.01)) for k in fcs}
    acts = {mapping.submodules[k].attribute("activation", "lrelu") for k in fcs}
    layers = [m for b in blocks.values() for k, m in b.submodules.items() if k in ("conv0", "conv1")]
    acts |= {m.attribute("activation", "lrelu") for m in layers}
    if acts != {"lrelu"} or len(lr) != 1:
        raise _refuse(name, f"uses activations {sorted(map(str, acts))} or several mapping learning rates")
    clamps = {m.attribute("conv_clamp") for b in blocks.values() for m in b.submodules.values()
              if m.class_name in ("SynthesisLayer", "ToRGBLayer")}
    if len(clamps) != 1:
        raise _refuse(name, f"clamps its layers differently ({sorted(map(str, clamps))})")
    filt = fir_kernel() / fir_kernel().sum()  # [4, 4]: setup_filter([1, 3, 3, 1])
    for key, value in sd.items():
        if key.endswith(RESAMPLE) and (value.shape != filt.shape or not torch.allclose(value.float(), filt)):
            raise _refuse(name, f"resamples with another filter ({key})")
    found = {4: int(sd["synthesis.b4.conv1.weight"].shape[0])}
    found.update({r: int(sd[f"synthesis.b{r}.conv1.weight"].shape[0]) for r in (2 ** i for i in
                                                                               range(3, int(math.log2(size)) + 1))})
    kw = {**synthesis.init_kwargs, **module.init_kwargs}
    cmax = int(kw.get("channel_max", 512))
    cfg = {"size": size, "style_dim": w_dim, "n_mlp": len(fcs), "channel_max": cmax}
    for cm in CHANNEL_MULTIPLIERS:
        if channels_for(size, cm, cmax) == found:
            cfg["channel_multiplier"] = cm
            break
    else:
        cbase = int(kw.get("channel_base", 32768))
        if channels_for(size, 2, cmax, cbase) != found:
            raise _refuse(name, f"has channels {found} per resolution, not min({cbase} // r, {cmax})")
        cfg.update(channel_multiplier=2, channel_base=cbase)
    cfg["mapping_lr"] = lr.pop()
    clamp = clamps.pop()
    if clamp is not None:
        cfg["conv_clamp"] = float(clamp)
    return cfg


def generator_from_nvidia(module: NvidiaModule, name: str = "the file") -> Generator:
    """Our StyleGAN2 :class:`Generator` (eval mode, CPU, float32) computing what NVIDIA's StyleGAN2-ADA generator
    ``module`` computes, with its ``w_avg`` as the truncation centre; ``name`` names the file in refusals."""
    cfg = nvidia_config(module, name)
    g = Generator(**cfg)
    sd = module.state_dict
    noise = "synthesis.b4.conv1.noise_const" in sd
    mine = g.state_dict()
    new: dict[str, torch.Tensor] = {}
    for nv, ours in nvidia_key_map(g.size, g.n_mlp, noise).items():
        if nv not in sd:
            if nv == "mapping.w_avg":
                continue
            raise _refuse(name, f"lacks '{nv}'")
        value = sd[nv].detach().float()
        target = (1, g.style_dim) if ours == "latent_avg" else tuple(mine[ours].shape)
        if value.numel() != math.prod(target):
            raise _refuse(name, f"has '{nv}' of shape {list(value.shape)}, where ours is {list(target)}")
        new[ours] = value.reshape(target).clone()
    latent_avg = new.pop("latent_avg", None)
    if not noise:  # use_noise=False: no noise inputs (strength 0, maps kept at zero)
        new.update({k: torch.zeros_like(v) for k, v in mine.items() if k.startswith("noises.") or
                    k.endswith("noise.weight")})
    new.update({k: v for k, v in mine.items() if k not in new})  # the fixed blur / up-sampling kernels
    g.load_state_dict(new, strict=True)
    g.latent_avg = latent_avg  # [1, 512] or None (then truncation_center() draws a seeded mean)
    return g.eval()


def nvidia_state_dict(g: Generator) -> dict[str, torch.Tensor]:
    """The inverse: our generator's tensors under NVIDIA's names and shapes, in NVIDIA's ``state_dict()`` order
    (its fixed ``resample_filter`` buffers included; ``mapping.w_avg`` from :meth:`Generator.truncation_center`)."""
    mine = g.state_dict()
    filt = (fir_kernel() / fir_kernel().sum()).to(g.input.input)  # [4, 4]
    out: dict[str, torch.Tensor] = {}
    for nv, ours in nvidia_layout(g.size, g.n_mlp).items():
        if ours is None:
            out[nv] = filt
        elif ours == "latent_avg":
            out[nv] = g.truncation_center().reshape(-1)  # [512]
        else:
            out[nv] = mine[ours].reshape(_nvidia_shape(ours, mine[ours]))
    return out


def _nvidia_shape(ours: str, value: torch.Tensor) -> tuple[int, ...]:
    """NVIDIA's shape of our tensor ``ours``: noise maps [1, 1, r, r] -> [r, r], the constant and the convolution
    weights lose their leading 1, noise strengths [1] -> [], ToRGB biases [1, 3, 1, 1] -> [3]."""
    if ours.startswith("noises."):
        return tuple(value.shape[2:])
    if ours == "input.input" or ours.endswith("conv.weight"):
        return tuple(value.shape[1:])
    if ours.endswith("noise.weight"):
        return ()
    if re.fullmatch(r"to_rgbs?\d*(\.\d+)?\.bias", ours):
        return (value.numel(),)
    return tuple(value.shape)


__all__ = ["nvidia_layout", "nvidia_key_map", "nvidia_config", "generator_from_nvidia", "nvidia_state_dict"]
