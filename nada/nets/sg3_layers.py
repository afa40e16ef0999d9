"""StyleGAN3's building blocks, written from "Alias-Free Generative Adversarial Networks" (Karras et al. 2021) with
NVIDIA's parameter and buffer names, so that a ``G_ema`` state dict of ``training/networks_stylegan3.py`` loads into
them unchanged: the fully connected layer with a learning-rate multiplier, the mapping network (``w_avg`` included),
the Fourier-feature synthesis input, and the modulated synthesis layer with its filtered leaky ReLU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from .autotune import ConvTuner
from .offsets import offset_styles
from .ops import conv3x3_paths, winograd_pays
from .sg3_filters import LayerPlan
from .sg3_ops import filtered_lrelu_ref
from .sg3_poly import filtered_lrelu

SQRT2 = math.sqrt(2.0)


class FullyConnected(nn.Module):
    """Linear layer with equalised learning rate: ``weight`` [out, in] is stored divided by ``lr_multiplier`` and
    used times ``lr_multiplier / sqrt(in)``, ``bias`` [out] times ``lr_multiplier``; optionally leaky ReLU (0.2) x
    sqrt(2)."""

    def __init__(self, in_features: int, out_features: int, activation: bool = False, lr_multiplier: float = 1.0,
                 weight_init: float = 1.0, bias_init: float | list[float] = 0.0):
        super().__init__()
        self.in_features, self.out_features, self.activation = in_features, out_features, activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) * (weight_init / lr_multiplier))
        bias = torch.as_tensor(bias_init, dtype=torch.float32).expand(out_features)
        self.bias = nn.Parameter(bias / lr_multiplier)
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, in] -> [N, out]."""
        b = self.bias * self.bias_gain if self.bias_gain != 1 else self.bias
        x = torch.addmm(b.unsqueeze(0), x, (self.weight * self.weight_gain).t())  # [N, out]
        return F.leaky_relu(x, 0.2) * SQRT2 if self.activation else x


class MappingNetwork(nn.Module):
    """z [N, z_dim] -> w [N, w_dim]: normalise z to unit mean square, then ``num_layers`` FC layers with leaky ReLU
    (learning rate x0.01). ``w_avg`` [w_dim] is the running mean of w from training: the truncation centre."""

    def __init__(self, z_dim: int = 512, w_dim: int = 512, num_layers: int = 2, lr_multiplier: float = 0.01):
        super().__init__()
        self.z_dim, self.w_dim, self.num_layers = z_dim, w_dim, num_layers
        dims = [z_dim] + [w_dim] * num_layers
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnected(dims[i], dims[i + 1], activation=True, lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z [N, z_dim] -> w [N, w_dim] (untruncated)."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"Expected z [N, {self.z_dim}], got {list(z.shape)}.")
        x = z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()  # [N, z_dim]
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        return x


class SynthesisInput(nn.Module):
    """Fourier features: ``channels`` sinusoids of frequencies ``freqs`` [C, 2] (drawn inside a disc of radius
    ``bandwidth``) and phases ``phases`` [C], sampled on a ``size`` x ``size`` grid at ``sampling_rate``, rotated and
    translated by the first W (``affine`` -> (cos, sin, tx, ty)) after the fixed ``transform`` [3, 3], faded out
    where a transform pushes a frequency past the band, then mixed by ``weight`` [C, C]."""

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float):
        super().__init__()
        self.w_dim, self.channels, self.size = w_dim, channels, int(size)
        self.sampling_rate, self.bandwidth = float(sampling_rate), float(bandwidth)
        freqs = torch.randn(channels, 2)  # uniform in the disc of radius ``bandwidth``, as the paper draws them
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth
        self.weight = nn.Parameter(torch.randn(channels, channels))
        self.affine = FullyConnected(w_dim, 4, weight_init=0.0, bias_init=[1.0, 0.0, 0.0, 0.0])
        self.register_buffer("transform", torch.eye(3))  # user transform, inverse, with respect to the image
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", torch.rand(channels) - 0.5)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """w [N, w_dim] (W+ row 0) -> features [N, C, size, size]."""
        n = w.shape[0]
        t = self.affine(w)  # [N, 4]: (r_c, r_s, t_x, t_y)
        t = t / t[:, :2].norm(dim=1, keepdim=True)  # a unit rotation
        eye = torch.eye(3, device=w.device, dtype=w.dtype)
        rot = eye.repeat(n, 1, 1)  # [N, 3, 3], inverse rotation
        rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
        shift = eye.repeat(n, 1, 1)  # [N, 3, 3], inverse translation
        shift[:, 0, 2], shift[:, 1, 2] = -t[:, 2], -t[:, 3]
        m = rot @ shift @ self.transform.to(w.dtype)  # [N, 3, 3]: rotate, then translate, then the user transform
        phases = self.phases + (self.freqs @ m[:, :2, 2:]).squeeze(2)  # [N, C]
        freqs = self.freqs @ m[:, :2, :2]  # [N, C, 2]
        amps = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        coords = (torch.arange(self.size, device=w.device, dtype=w.dtype) + 0.5 - self.size / 2) / self.sampling_rate
        # sin(2 pi (fx x + fy y + phase)), summed as x and y parts: [N, H, W, C]
        fx, fy = freqs[:, None, None, :, 0], freqs[:, None, None, :, 1]  # [N, 1, 1, C]
        x = coords.view(1, 1, -1, 1) * fx + coords.view(1, -1, 1, 1) * fy
        x = torch.sin((x + phases[:, None, None, :]) * (2 * math.pi)) * amps[:, None, None, :]
        x = x @ (self.weight / math.sqrt(self.channels)).t()  # [N, H, W, C]
        return x.permute(0, 3, 1, 2)  # [N, C, H, W]


def _nchw(x: torch.Tensor) -> torch.Tensor:
    """``x.contiguous()`` [N, C, H, W]; a channels-last map by a 2-D transpose per image (blocked in ATen, 2-3x
    faster than the generic strided copy)."""
    if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
        return x.contiguous()
    n, c, h, w = x.shape
    out = torch.empty(n, c, h, w, dtype=x.dtype, device=x.device)
    for i in range(n):
        out[i].view(c, h * w).copy_(x[i].permute(1, 2, 0).reshape(h * w, c).t())
    return out


class _ConvContiguousWgrad(torch.autograd.Function):
    """``F.conv2d(x, weight, bias, padding=padding)`` whose weight gradient runs on contiguous (NCHW) copies: on the
    CPU, oneDNN's weight gradient from a channels-last input was 2.5-4x slower (batch 2, 512 channels at 148 px: 7.6
    vs 2.7 s; 256 -> 181 channels at 276 px: 8.8 vs 2.0 s), while its forward and input gradient are as fast or
    faster in channels-last. Same values; not twice differentiable."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        return F.conv2d(x, weight, bias, padding=padding)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        args = ([1, 1], [ctx.padding] * 2, [1, 1], False, [0, 0], 1)  # stride, padding, dilation, transposed, ..
        gx = gw = None
        if need_x:
            gx = torch.ops.aten.convolution_backward(grad, x, weight, None, *args, [True, False, False])[0]
        if need_w:
            gw = torch.ops.aten.convolution_backward(_nchw(grad), _nchw(x), weight, None, *args,
                                                     [False, True, False])[1]
        return gx, gw, grad.sum(dim=(0, 2, 3)) if need_b else None, None


class SynthesisLayer(nn.Module):
    """One synthesis layer: a modulated convolution (demodulated, except ToRGB) of the input scaled by
    ``magnitude_ema ** -0.5``, then bias and the filtered leaky ReLU (ToRGB: bias and clamp only). ``magnitude_ema``
    (the input's mean square, tracked by NVIDIA's training with ``update_emas=True``) is read, never updated here:
    adaptation keeps it, as it keeps the filters.

    The style is ``affine(w)`` [N, in], then ``* (1 + style_offset)`` and ``+ style_delta`` where set (compact styles;
    non-persistent buffers [in], None by default). ``impl`` "grouped" runs NVIDIA's formulation literally
    (per-sample kernels as a grouped convolution, :func:`filtered_lrelu_ref`); the others modulate one image's kernel
    (a batch: scale the activations and share the kernel), run the polyphase filtered leaky ReLU
    (:func:`~nada.nets.sg3_poly.filtered_lrelu`), and differ in how a 3x3 convolution runs:
    "batched" directly, "winograd" by Winograd where :func:`~nada.nets.ops.winograd_pays`, "auto" by the path
    ``tuner`` timed fastest (as our StyleGAN2's ``set_conv_impl``)."""

    def __init__(self, plan: LayerPlan, w_dim: int = 512, conv_clamp: float | None = 256,
                 magnitude_ema_beta: float = 0.999):
        super().__init__()
        self.plan, self.w_dim = plan, w_dim
        self.is_torgb, self.conv_kernel = plan.is_torgb, plan.conv_kernel
        self.in_channels, self.out_channels = plan.in_channels, plan.out_channels
        self.conv_clamp, self.magnitude_ema_beta = conv_clamp, magnitude_ema_beta
        self.up, self.down, self.padding = plan.up, plan.down, plan.padding
        self.affine = FullyConnected(w_dim, plan.in_channels, bias_init=1.0)
        k = plan.conv_kernel
        self.weight = nn.Parameter(torch.randn(plan.out_channels, plan.in_channels, k, k))
        self.bias = nn.Parameter(torch.zeros(plan.out_channels))
        self.register_buffer("magnitude_ema", torch.ones([]))
        self.register_buffer("up_filter", plan.up_filter())  # None (ToRGB) is not a state-dict entry
        self.register_buffer("down_filter", plan.down_filter())
        self.register_buffer("style_offset", None, persistent=False)
        self.register_buffer("style_delta", None, persistent=False)
        self.style_index: torch.Tensor | None = None  # [N]: each sample's style when the offsets are [K, in]
        self.impl = "batched"  # "grouped" (the reference), "batched", "winograd" or "auto"
        self.tuner: ConvTuner | None = None  # the "auto" impl's per-shape choices

    @property
    def in_ch(self) -> int:
        """Input channels (the length of a style offset), as our StyleGAN2's modulated convolutions name it."""
        return self.in_channels

    def styles(self, w: torch.Tensor) -> torch.Tensor:
        """w [N, w_dim] -> s [N, in]: the affine layer, then the style offsets where set (for ToRGB, times the
        weight gain ``1 / sqrt(in)``)."""
        s = offset_styles(self, self.affine(w))  # [N, in]
        return s * (1 / math.sqrt(self.in_channels * self.conv_kernel ** 2)) if self.is_torgb else s

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """x [N, in, in_size, in_size], w [N, w_dim] -> [N, out, out_size, out_size]."""
        s = self.styles(w)  # [N, in]
        gain = self.magnitude_ema.rsqrt()
        if self.impl == "grouped":
            return self._reference(x, s, gain)
        weight = self.weight  # [out, in, k, k]
        if not self.is_torgb:  # demodulation cancels any per-sample scale of s and per-output scale of the weight:
            # normalising both first keeps the sums in range (NVIDIA normalises s over the whole batch, which
            # differs only in the 1e-8 epsilon; per sample keeps each image independent of its batch)
            weight = weight * weight.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()  # [out, in, k, k]
            s = s * s.square().mean(dim=1, keepdim=True).rsqrt()  # [N, in]
        demod = None if self.is_torgb else (s.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8).rsqrt()  # [N, out]
        grad = torch.is_grad_enabled() and (x.requires_grad or s.requires_grad or self.weight.requires_grad
                                            or self.bias.requires_grad)
        if x.shape[0] == 1:  # one image: modulate (and demodulate) the kernel, not the activations
            wk = weight * (s[0] * gain).view(1, -1, 1, 1)  # [out, in, k, k]
            y = self._conv(x, wk if demod is None else wk * demod[0].view(-1, 1, 1, 1), self.bias, grad)
        else:
            y = self._conv(x * (s * gain).view(*s.shape, 1, 1), weight, None, grad)  # [N, out, H + k - 1, W + k - 1]
            d = demod[:, :, None, None] if demod is not None else y.new_ones(())
            if grad:
                y = torch.addcmul(self.bias.view(1, -1, 1, 1), y, d)
            else:  # in place: the convolution's output is ours, and one map less is alive in the filter
                y = y.mul_(d).add_(self.bias.view(1, -1, 1, 1))
        if self.is_torgb:
            return y.clamp(-self.conv_clamp, self.conv_clamp) if self.conv_clamp is not None else y
        return filtered_lrelu(y, self.up_filter, self.down_filter, up=self.up, down=self.down, padding=self.padding,
                              gain=SQRT2, slope=0.2, clamp=self.conv_clamp)

    def _conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
              grad: bool = True) -> torch.Tensor:
        """The full convolution (padding ``k - 1``) of ``x`` [N, in, H, W] with the shared ``weight`` (plus ``bias``
        [out]); a 3x3 one by the path ``impl`` picks (Winograd takes padding 1: the input is padded by one more
        first). ``grad``: whether gradients are wanted (else the bias is added in place)."""
        k = self.conv_kernel
        if k != 3 or self.impl not in ("winograd", "auto"):
            if grad and x.device.type == "cpu" and weight.requires_grad and not torch.is_autocast_enabled("cpu") \
                    and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
                return _ConvContiguousWgrad.apply(x, weight, bias, k - 1)
            return F.conv2d(x, weight, bias, padding=k - 1)
        x = F.pad(x, (1, 1, 1, 1))
        paths = conv3x3_paths(x, weight)
        fixed = "winograd" if "winograd" in paths and winograd_pays(x, weight) else "direct"
        y = self.tuner.run("conv3x3", x, weight, paths, fixed) if self.impl == "auto" and self.tuner is not None \
            else paths[fixed](x, weight)
        if bias is None:
            return y
        return y + bias.view(1, -1, 1, 1) if grad else y.add_(bias.view(1, -1, 1, 1))

    def _reference(self, x: torch.Tensor, s: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        """NVIDIA's formulation, literally: per-sample modulated (and demodulated) kernels scaled by the input gain,
        as one grouped convolution, then :func:`filtered_lrelu_ref`."""
        n = x.shape[0]
        weight = self.weight  # [out, in, k, k]
        if not self.is_torgb:
            weight = weight * weight.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()
            s = s * s.square().mean(dim=1, keepdim=True).rsqrt()
        wk = weight.unsqueeze(0) * s.view(n, 1, -1, 1, 1)  # [N, out, in, k, k]
        if not self.is_torgb:
            wk = wk * (wk.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8).rsqrt()
        wk = wk * gain
        k = self.conv_kernel
        y = F.conv2d(x.reshape(1, -1, *x.shape[2:]), wk.reshape(-1, self.in_channels, k, k), padding=k - 1, groups=n)
        y = y.reshape(n, self.out_channels, *y.shape[2:])  # [N, out, H + k - 1, W + k - 1]
        return filtered_lrelu_ref(y, self.up_filter, self.down_filter, self.bias, up=self.up, down=self.down,
                                  padding=self.padding, gain=1.0 if self.is_torgb else SQRT2,
                                  slope=1.0 if self.is_torgb else 0.2, clamp=self.conv_clamp)


__all__ = ["FullyConnected", "MappingNetwork", "SynthesisInput", "SynthesisLayer"]
