"""StyleGAN2 generator, weight-compatible with the rosinality ``g_ema`` state dict (keys, shapes, buffers).

Written from the StyleGAN2 paper's formulas: an 8-layer mapping MLP with equalised learning rate, modulated
3x3 convolutions with demodulation, per-layer noise, 2x up-sampling via a transposed convolution followed by a
[1,3,3,1] blur, and skip-connected ToRGB outputs. Outputs are unclamped (real checkpoints give roughly [-1, 1]).

W+ row ``i`` is read by ``conv1`` (i=0) or ``convs[i-1]`` (i>=1), and additionally by ``to_rgb1`` (i=1) or
``to_rgbs[(i-3)//2]`` (odd i>=3); see :meth:`Generator.latent_consumers`.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .autotune import ConvTuner
from .offsets import OFFSET_FORMS, assign_offsets, fold_offsets, offset_styles
from .ops import (
    SQRT2,
    conv3x3_paths,
    fir_kernel,
    fixed_up_path,
    fused_leaky_relu,
    is_symmetric,
    up_paths,
    upfirdn2d,
    winograd_pays,
)

NOISE_MODES = ("const", "random")
CONV_IMPLS = ("batched", "winograd", "auto", "grouped")


def channels_for(size: int, channel_multiplier: int = 2, channel_max: int = 512,
                 channel_base: int | None = None) -> dict[int, int]:
    """Feature-map channels per resolution for a StyleGAN2 config (``channel_max`` < 512 only for tiny test models);
    with ``channel_base`` NVIDIA's rule ``min(channel_base // r, channel_max)`` instead (its multiplier is moot)."""
    if channel_base is not None:
        return {2 ** i: min(int(channel_base) // 2 ** i, channel_max) for i in range(2, int(math.log2(size)) + 1)}
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
    return {r: min(channel_max, c if r <= 32 else c * channel_multiplier) for r, c in base.items() if r <= size}


class PixelNorm(nn.Module):
    """Normalise each latent to unit root-mean-square."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate (weights stored as N/lr_mul, rescaled at run time)."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class Blur(nn.Module):
    """Low-pass FIR filter with fixed padding (the kernel is a state-dict buffer, as in the checkpoints)."""

    def __init__(self, pad: tuple[int, int], gain: float = 1.0):
        super().__init__()
        self.register_buffer("kernel", fir_kernel(gain=gain))
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x FIR up-sampling used on the RGB skip path."""

    def __init__(self, factor: int = 2):
        super().__init__()
        self.register_buffer("kernel", fir_kernel(gain=factor * factor))
        self.factor = factor
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)
        self.symmetric = True  # fir_kernel is symmetric by construction; checked again on load, never per call
        #                        (a host sync on a GPU; it also keeps the module buildable on the meta device)
        self.register_load_state_dict_post_hook(Upsample._recheck)

    @staticmethod
    def _recheck(module: Upsample, _incompatible) -> None:
        module.symmetric = is_symmetric(module.kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad, symmetric=self.symmetric)


class ModulatedConv2d(nn.Module):
    """Convolution whose weights are scaled per sample by a style, optionally demodulated and 2x up-sampling."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, style_dim: int, demodulate: bool = True,
                 upsample: bool = False):
        super().__init__()
        self.in_ch, self.out_ch, self.kernel_size = in_ch, out_ch, kernel_size
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel_size, kernel_size))
        self.upsample = upsample
        if upsample:
            # transposed conv (k=3, stride 2) gives 2H+1; the blur with pad (1, 1) and a 4-tap kernel brings it to 2H.
            self.blur = Blur(pad=(1, 1), gain=4.0)
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)
        self.scale = 1.0 / math.sqrt(in_ch * kernel_size * kernel_size)
        self.demodulate = demodulate
        self.impl = "batched"  # "batched" (default), "winograd" (Winograd where it pays), "auto" (timed) or "grouped"
        self.tuner: ConvTuner | None = None  # the "auto" impl's per-shape path choices (Generator.set_conv_impl)
        # Compact styles (AdaptConfig.params): optional per-input-channel offsets [in] on the style vector s (the
        # affine layer's output), in StyleDomain's two forms (SimilarDomains/core/stylegan_patches.py): "modulation"
        # (its s_mod) s * (1 + style_offset), and "style_delta" (its s_delta) s + style_delta; with both set,
        # s * (1 + style_offset) + style_delta. None by default; non-persistent, so state_dict() stays rosinality's
        # g_ema exactly. See Generator.set_style_offsets.
        self.register_buffer("style_offset", None, persistent=False)
        self.register_buffer("style_delta", None, persistent=False)
        self.style_index: torch.Tensor | None = None  # [N]: each sample's style when the offsets are [K, in]

    def styles(self, w: torch.Tensor) -> torch.Tensor:
        """The style vector ``w`` [N, style_dim] -> s [N, in]: the affine layer, times ``1 + style_offset`` and plus
        ``style_delta`` where set (with neither, exactly the affine layer's output)."""
        return offset_styles(self, self.modulation(w))  # [N, in]

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``x`` [N, in, H, W], ``w`` [N, style_dim] -> [N, out, H', W']."""
        s = self.styles(w)  # [N, in]
        return self._grouped(x, s) if self.impl == "grouped" else self._batched(x, s)

    def _grouped(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Reference: one modulated (and demodulated) kernel per sample, run as a grouped convolution."""
        n, c, h, wd = x.shape
        weight = self.scale * self.weight * s.view(n, 1, c, 1, 1)  # [N, out, in, k, k]
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        k = self.kernel_size
        x = x.reshape(1, n * c, h, wd)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(n * c, self.out_ch, k, k)  # [N*in, out, k, k]
            out = F.conv_transpose2d(x, weight, stride=2, padding=0, groups=n)
            return self.blur(out.reshape(n, self.out_ch, *out.shape[-2:]))
        out = F.conv2d(x, weight.reshape(n * self.out_ch, c, k, k), padding=k // 2, groups=n)
        return out.reshape(n, self.out_ch, *out.shape[-2:])

    def _batched(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Same result, faster: scale the activations by the style, convolve with the shared kernel, and apply
        demodulation as a per-sample, per-output-channel factor (the blur is linear, so it commutes)."""
        out, demod = self.conv_and_demod(x, s)
        return out if demod is None else out * demod[:, :, None, None]

    def _run(self, op: str, x: torch.Tensor, weight: torch.Tensor, paths: dict, fixed: str) -> torch.Tensor:
        """``op`` by the path the tuner chose under the "auto" impl, else by the ``fixed`` one."""
        if self.impl == "auto" and self.tuner is not None:
            return self.tuner.run(op, x, weight, paths, fixed)
        return paths[fixed](x, weight)

    def conv_and_demod(self, x: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The batched formulation in two parts: the convolution of ``x * s`` with the shared kernel
        [N, out, H', W'], and the demodulation factor [N, out] (None without demodulation)."""
        n, c = x.shape[:2]
        weight = self.scale * self.weight.squeeze(0)  # [out, in, k, k]; a view (select's backward would copy)
        x = x * s.view(n, c, 1, 1)
        if self.upsample:
            wt = weight.transpose(0, 1)  # [in, out, k, k]
            out = self.blur(self._run("up", x, wt, up_paths(x, wt), fixed_up_path(x, wt)))
        elif self.impl in ("winograd", "auto") and self.kernel_size == 3:
            paths = conv3x3_paths(x, weight)
            fixed = "winograd" if "winograd" in paths and winograd_pays(x, weight) else "direct"
            out = self._run("conv3x3", x, weight, paths, fixed)
        else:
            out = F.conv2d(x, weight, padding=self.kernel_size // 2)
        if not self.demodulate:
            return out, None
        wsq = weight.pow(2).sum(dim=(2, 3))  # [out, in]
        return out, torch.rsqrt(s.pow(2) @ wsq.t() + 1e-8)  # [N, out]


class NoiseInjection(nn.Module):
    """Adds per-pixel noise scaled by a learned strength."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x + self.weight * noise


class FusedLeakyReLU(nn.Module):
    """Per-channel bias followed by leaky ReLU (0.2) and a sqrt(2) gain."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class StyledConv(nn.Module):
    """Modulated conv, noise, bias and activation: one synthesis layer."""

    def __init__(self, in_ch: int, out_ch: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_ch)
        self.conv_clamp: float | None = None  # NVIDIA's: outputs clamped to +-conv_clamp (None: not clamped)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        if self.conv.impl == "grouped":  # the reference: conv, + noise, + bias, leaky ReLU, x sqrt(2)
            return self._clamped(self.activate(self.noise(self.conv(x, w), noise)))
        # Fused: leaky_relu(a * y) == a * leaky_relu(y) for a > 0, so the sqrt(2) gain moves into the affine terms,
        # and demodulation, bias and noise take two passes over the activations instead of five, plus one in place.
        out, demod = self.conv.conv_and_demod(x, self.conv.styles(w))
        out = torch.addcmul((self.activate.bias * SQRT2).view(1, -1, 1, 1), out, (demod * SQRT2)[:, :, None, None])
        out = out.add_(noise * (self.noise.weight * SQRT2))
        return self._clamped(F.leaky_relu_(out, 0.2))

    def _clamped(self, out: torch.Tensor) -> torch.Tensor:
        return out if self.conv_clamp is None else out.clamp(-self.conv_clamp, self.conv_clamp)


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB (no demodulation), plus the up-sampled skip from the previous resolution."""

    def __init__(self, in_ch: int, style_dim: int, upsample: bool = True):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        if upsample:
            self.upsample = Upsample()
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.conv_clamp: float | None = None  # NVIDIA's: this layer's output clamped to +-conv_clamp before the skip

    def forward(self, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.conv.impl != "grouped":
            # A 1x1 conv to 3 channels is a per-sample matrix product: modulate the [3, C] kernel rather than the
            # [C, H, W] activations (no full-size temporary). Channels-last x makes [N, H*W, C] a free view.
            n, c, h, wd = x.shape
            kernel = self.conv.scale * self.conv.weight[0, :, :, 0, 0] * self.conv.styles(w)[:, None, :]  # [N, 3, C]
            pixels = x.permute(0, 2, 3, 1).reshape(n, h * wd, c)  # [N, H*W, C]
            out = torch.baddbmm(self.bias.view(1, 1, 3), pixels, kernel.transpose(1, 2))  # [N, H*W, 3]
            out = out.view(n, h, wd, 3).permute(0, 3, 1, 2)  # [N, 3, H, W], channels-last
        else:
            out = self.conv(x, w) + self.bias
        if self.conv_clamp is not None:
            out = out.clamp(-self.conv_clamp, self.conv_clamp)
        return out if skip is None else out + self.upsample(skip)


class ConstantInput(nn.Module):
    """The learned 4x4 starting tensor."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class Generator(nn.Module):
    """StyleGAN2 generator: ``mapping`` (z -> w), ``synthesis`` (w or W+ -> image), ``forward`` (both, truncated)."""

    def config(self) -> dict:
        """Constructor arguments that rebuild this architecture (NVIDIA's settings only where they are not the
        defaults, so a rosinality generator's config is what it always was)."""
        extra = {"channel_base": self.channel_base, "conv_clamp": self.conv_clamp,
                 "mapping_lr": None if self.mapping_lr == 0.01 else self.mapping_lr}
        return {"size": self.size, "style_dim": self.style_dim, "n_mlp": self.n_mlp,
                "channel_multiplier": self.channel_multiplier, "channel_max": self.channel_max,
                **{k: v for k, v in extra.items() if v is not None}}

    def __init__(self, size: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2,
                 channel_max: int = 512, channel_base: int | None = None, mapping_lr: float = 0.01,
                 conv_clamp: float | None = None):
        super().__init__()
        log_size = int(math.log2(size))
        if 2 ** log_size != size or not 8 <= size <= 1024:
            raise ValueError(f"Generator size must be a power of two in 8..1024, got {size}.")
        self.size, self.style_dim, self.n_mlp, self.channel_multiplier = size, style_dim, n_mlp, channel_multiplier
        self.channel_max = channel_max
        # NVIDIA's StyleGAN2-ADA settings (nada.nets.nvidia_sg2): channels min(channel_base // r, channel_max), the
        # mapping's learning-rate multiplier, and the clamp of every synthesis layer's output (None: rosinality's)
        self.channel_base, self.mapping_lr, self.conv_clamp = channel_base, float(mapping_lr), conv_clamp
        self.log_size = log_size
        self.num_layers = 2 * log_size - 3  # noise inputs: conv1 + two per resolution above 4
        self.n_latent = 2 * log_size - 2
        ch = channels_for(size, channel_multiplier, channel_max, channel_base)
        self.channels = ch

        self.style = nn.Sequential(PixelNorm(), *[
            EqualLinear(style_dim, style_dim, lr_mul=self.mapping_lr, activation=True) for _ in range(n_mlp)])
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], style_dim)
        self.to_rgb1 = ToRGB(ch[4], style_dim, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_ch = ch[4]
        for lvl in range(3, log_size + 1):
            out_ch = ch[2 ** lvl]
            self.convs.append(StyledConv(in_ch, out_ch, style_dim, upsample=True))
            self.convs.append(StyledConv(out_ch, out_ch, style_dim))
            self.to_rgbs.append(ToRGB(out_ch, style_dim))
            in_ch = out_ch
        for m in self.modules():
            if isinstance(m, (StyledConv, ToRGB)):
                m.conv_clamp = None if conv_clamp is None else float(conv_clamp)
        # W mean stored by converted checkpoints ("latent_avg", NVIDIA's "w_avg"); not part of the g_ema state dict.
        self.register_buffer("latent_avg", None, persistent=False)
        self.grad_checkpointing = False  # trade compute for memory when training at 1024 on small GPUs
        self.channels_last = True  # synthesis in channels-last memory format (faster convolutions; batched impl)
        self.noises = nn.Module()  # registered last: the checkpoints list the noise buffers at the end
        for i in range(self.num_layers):
            r = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, r, r))

    def set_conv_impl(self, impl: str, tuner: ConvTuner | None = None) -> Generator:
        """Choose how modulated convolutions run: "batched" (default: activations scaled by the style, one shared
        kernel, channels-last), "winograd" (batched, with Winograd F(4x4, 3x3) for the wide 3x3 convolutions on the
        CPU where measured faster on AVX-512: ~2x there, float32 rounding ~4x the direct one's), "auto" (batched,
        each convolution shape timing its CPU paths on first use: ``tuner``, a new :class:`ConvTuner` when None;
        what adaptation and the app use on a CPU) or "grouped" (the reference: per-sample kernels as a grouped
        convolution)."""
        if impl not in CONV_IMPLS:
            raise ValueError(f"conv impl must be one of {CONV_IMPLS}, got {impl!r}.")
        if impl == "auto" and tuner is None:
            tuner = ConvTuner()
        for m in self.modules():
            if isinstance(m, ModulatedConv2d):
                m.impl, m.tuner = impl, tuner
        self.channels_last = impl != "grouped"
        return self

    @property
    def conv_impl(self) -> str:
        """The current convolution formulation (see :meth:`set_conv_impl`)."""
        return self.conv1.conv.impl

    @property
    def conv_tuner(self) -> ConvTuner | None:
        """The "auto" impl's tuner (None under the other impls)."""
        return self.conv1.conv.tuner

    def shared_copy(self) -> Generator:
        """A new module tree on the same parameter and buffer tensors (no memory copied): its settings, such as
        :meth:`set_conv_impl`, can change without touching this generator; its weights are this one's."""
        memo = {id(t): t for t in (*self.parameters(), *self.buffers())}
        return copy.deepcopy(self, memo)

    # ------------------------------------------------------------------------------------- compact styles
    # Per-channel offsets on the style vectors (AdaptConfig.params "modulation" and "style_delta", StyleDomain's s_mod
    # and s_delta): each modulated convolution may hold an offset [in] of either form or both. Keys are
    # "<module>.style_offset" (s * (1 + offset)) and "<module>.style_delta" (s + delta), as in named_buffers(); they
    # never appear in state_dict(). Numbers per generator (channel multiplier 2), synthesis convolutions only (what
    # training uses; + ToRGB in brackets): 256 px 5,760 (+2,944), 512 px 5,952 (+3,008), 1024 px 6,048 (+3,040).
    def modulated_convs(self, to_rgb: bool = True) -> dict[str, ModulatedConv2d]:
        """Every modulated convolution by module name ("conv1.conv", "convs.3.conv", "to_rgbs.0.conv", ...), in
        module order; ``to_rgb=False`` leaves out the ToRGB layers."""
        return {name: m for name, m in self.named_modules() if isinstance(m, ModulatedConv2d)
                and (to_rgb or not name.startswith("to_rgb"))}

    def style_offsets(self) -> dict[str, torch.Tensor]:
        """The style offsets that are set: "<module>.style_offset" / "<module>.style_delta" -> [in] (the tensors
        themselves, not copies)."""
        return {f"{name}.{form}": getattr(m, form) for name, m in self.modulated_convs().items()
                for form in OFFSET_FORMS if getattr(m, form) is not None}

    def set_style_offsets(self, offsets: dict[str, torch.Tensor] | None, index: torch.Tensor | None = None
                          ) -> Generator:
        """Replace every style offset by ``offsets`` ("<module>.style_offset" or "<module>.style_delta" -> [in];
        moved to the layer's device and dtype); offsets not named are cleared. ``None`` or ``{}`` clears them all.
        Several styles in one batch: offsets [K, in] and ``index`` [N], the style each sample renders with.
        Checked before anything changes: unknown keys and wrong shapes raise ``ValueError``."""
        assign_offsets(self.modulated_convs(), offsets, index)
        return self

    @torch.no_grad()
    def fold_style_offsets(self) -> Generator:
        """Fold the style offsets into the affine (modulation) layers, in place, and clear them: each layer's weight
        rows are scaled by ``1 + style_offset`` and its bias becomes ``bias * (1 + style_offset) + style_delta``
        (in float64), so the output stays the same up to float rounding and ``state_dict()`` is a plain rosinality
        g_ema that any StyleGAN2 tool loads."""
        for m in self.modulated_convs().values():
            fold_offsets(m, m.modulation, m.modulation.lr_mul)
        return self

    # ----------------------------------------------------------------------------------------------- latents
    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z [N, 512] -> w [N, 512]."""
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, seed: int = 0) -> torch.Tensor:
        """Mean of ``n`` mapped latents drawn from a seeded CPU generator (same on every device) -> [1, 512]."""
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.style_dim, generator=gen).to(self.input.input)  # [n, 512], module device/dtype
        return self.mapping(z).mean(0, keepdim=True)

    def to_wplus(self, w: torch.Tensor) -> torch.Tensor:
        """w [N, 512] or W+ [N, n_latent, 512] -> W+ [N, n_latent, 512] (checked)."""
        if w.ndim == 2:
            return w[:, None, :].expand(-1, self.n_latent, -1)
        if w.ndim != 3 or w.shape[1] != self.n_latent or w.shape[2] != self.style_dim:
            raise ValueError(f"Expected w [N, {self.style_dim}] or [N, {self.n_latent}, {self.style_dim}], "
                             f"got {list(w.shape)}.")
        return w

    @property
    def device(self) -> torch.device:
        """Where the generator's weights are."""
        return self.input.input.device

    @property
    def dtype(self) -> torch.dtype:
        """The generator's weight dtype."""
        return self.input.input.dtype

    def input_layers(self) -> list[str]:
        """The synthesis input's module names (the learned 4x4 constant)."""
        return ["input"]

    def conv_layers(self) -> list[str]:
        """Every synthesis convolution layer's module name, in order ("conv1", "convs.0", ...)."""
        return ["conv1"] + [f"convs.{i}" for i in range(len(self.convs))]

    def rgb_layers(self) -> list[str]:
        """Every ToRGB layer's module name, in order ("to_rgb1", "to_rgbs.0", ...)."""
        return ["to_rgb1"] + [f"to_rgbs.{i}" for i in range(len(self.to_rgbs))]

    def latent_consumers(self) -> list[list[str]]:
        """For each W+ row, the module names that read it (conv first, then ToRGB)."""
        rows: list[list[str]] = [["conv1"]]
        for i in range(1, self.n_latent):
            names = [f"convs.{i - 1}"] if i - 1 < len(self.convs) else []
            if i == 1:
                names.append("to_rgb1")
            elif i % 2 == 1:
                names.append(f"to_rgbs.{(i - 3) // 2}")
            rows.append(names)
        return rows

    # ------------------------------------------------------------------------------------------------ noise
    def make_noise(self, batch: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Fresh per-sample noise maps for every layer: list of [N, 1, r, r] (drawn from ``generator`` if given)."""
        ref = self.input.input
        if generator is None:
            return [torch.randn(batch, 1, *b.shape[-2:], device=ref.device, dtype=ref.dtype)
                    for b in self.noise_buffers()]
        return [torch.randn(batch, 1, *b.shape[-2:], generator=generator, device=generator.device).to(ref)
                for b in self.noise_buffers()]

    def noise_buffers(self) -> list[torch.Tensor]:
        """The stored constant noise maps, [1, 1, r, r] each, in layer order."""
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    # -------------------------------------------------------------------------------------------- synthesis
    def synthesis(self, w: torch.Tensor, noise_mode: str = "const",
                  noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        """w [N, 512] or W+ [N, n_latent, 512] -> image [N, 3, size, size], unclamped.

        ``noise_mode`` "const" uses the stored buffers, "random" draws fresh noise; an explicit ``noise`` list
        (one [N or 1, 1, r, r] per layer) overrides both."""
        latent = self.to_wplus(w)  # [N, n_latent, 512]
        n = latent.shape[0]
        if noise is None:
            if noise_mode not in NOISE_MODES:
                raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}.")
            noise = self.noise_buffers() if noise_mode == "const" else self.make_noise(n)
        elif len(noise) != self.num_layers:
            raise ValueError(f"Expected {self.num_layers} noise maps, got {len(noise)}.")
        x = self.input(n)  # [N, 512, 4, 4]
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.conv1(x, latent[:, 0], noise[0])
        skip = self.to_rgb1(x, latent[:, 1])  # [N, 3, 4, 4]
        use_ckpt = self.grad_checkpointing and torch.is_grad_enabled()
        for j, to_rgb in enumerate(self.to_rgbs):
            i = 2 * j + 1
            for conv, row in ((self.convs[2 * j], i), (self.convs[2 * j + 1], i + 1)):
                if use_ckpt:  # recompute activations in backward instead of storing them (same values)
                    x = checkpoint(conv, x, latent[:, row], noise[row], use_reentrant=False)
                else:
                    x = conv(x, latent[:, row], noise[row])
            skip = to_rgb(x, latent[:, i + 2], skip)
        return skip

    def forward(self, z: torch.Tensor, truncation: float = 1.0, w_avg: torch.Tensor | None = None,
                noise_mode: str = "const") -> torch.Tensor:
        """z [N, 512] -> image [N, 3, size, size]: mapping, truncation ``w_avg + psi (w - w_avg)``, synthesis.

        Without ``w_avg`` the centre is :meth:`truncation_center`."""
        w = self.mapping(z)  # [N, 512]
        if truncation != 1.0:
            w = truncate(w, w_avg if w_avg is not None else self.truncation_center(), truncation)
        return self.synthesis(w, noise_mode=noise_mode)

    def truncation_center(self) -> torch.Tensor:
        """The checkpoint's ``latent_avg`` when it has one, else :meth:`mean_latent` (seeded) -> [1, 512]."""
        return self.latent_avg if self.latent_avg is not None else self.mean_latent()


def truncate(w: torch.Tensor, w_avg: torch.Tensor, psi: float) -> torch.Tensor:
    """Pull latents towards the centre: ``w_avg + psi * (w - w_avg)``; works for w and W+."""
    return w_avg + psi * (w - w_avg)


def mix_latents(w1: torch.Tensor, w2: torch.Tensor, inject_index: int, n_latent: int) -> torch.Tensor:
    """Style mixing: rows ``[0, inject_index)`` from ``w1``, the rest from ``w2``; w [N, 512] -> [N, n_latent, 512]."""
    if not 0 < inject_index < n_latent:
        raise ValueError(f"inject_index must be in 1..{n_latent - 1}, got {inject_index}.")
    a = w1[:, None, :].expand(-1, inject_index, -1) if w1.ndim == 2 else w1[:, :inject_index]
    b = w2[:, None, :].expand(-1, n_latent - inject_index, -1) if w2.ndim == 2 else w2[:, inject_index:]
    return torch.cat([a, b], dim=1)


def seeded_z(seeds: list[int], dim: int = 512, device: torch.device | str = "cpu") -> torch.Tensor:
    """One z [len(seeds), dim] per integer seed, identical on every device (drawn on the CPU)."""
    return torch.stack([torch.randn(dim, generator=torch.Generator().manual_seed(int(s))) for s in seeds]).to(device)


__all__ = ["Generator", "truncate", "mix_latents", "seeded_z", "channels_for", "SQRT2"]
