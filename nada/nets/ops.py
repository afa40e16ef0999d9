"""StyleGAN2 low-level ops in plain PyTorch: FIR resampling (upfirdn2d) and the fused bias + leaky ReLU.

Nothing compiles at import. ``upfirdn2d_ref`` is the literal definition (zero-insert, pad, convolve, decimate)
and stays the reference that the faster paths are tested against.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

SQRT2 = math.sqrt(2.0)


def fir_kernel(taps: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0), gain: float = 1.0) -> torch.Tensor:
    """Separable 2-D FIR kernel ``outer(k, k)``, normalised to sum 1 and multiplied by ``gain``."""
    k = torch.tensor(taps, dtype=torch.float32)
    k2 = torch.outer(k, k)  # [K, K]
    return k2 / k2.sum() * gain


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None = None, negative_slope: float = 0.2,
                     scale: float = SQRT2) -> torch.Tensor:
    """``leaky_relu(x + bias) * scale`` with the bias broadcast over dim 1 (channels)."""
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope) * scale


def upfirdn2d_ref(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
                  pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Reference FIR resampling: insert ``up-1`` zeros, pad both axes by ``pad``, convolve (true, flipped
    kernel), keep every ``down``-th sample. ``x`` [N, C, H, W]; negative pads crop."""
    n, c, h, w = x.shape
    p0, p1 = pad
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))  # [N, C, H, up, W, up]
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, (max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)))
    if p0 < 0 or p1 < 0:
        hh, ww = x.shape[-2:]
        x = x[:, :, max(-p0, 0): hh - max(-p1, 0), max(-p0, 0): ww - max(-p1, 0)]
    k = torch.flip(kernel, [0, 1]).to(x.dtype)[None, None].expand(c, 1, *kernel.shape)  # [C, 1, K, K]
    x = F.conv2d(x, k, groups=c)
    return x[:, :, ::down, ::down] if down > 1 else x


def is_symmetric(kernel: torch.Tensor) -> bool:
    """True when a 2-D FIR kernel equals itself flipped on both axes (reads it on the host: a device sync)."""
    return bool(torch.equal(kernel, torch.flip(kernel, [0, 1])))


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0), symmetric: bool | None = None) -> torch.Tensor:
    """FIR resampling; 2x up-sampling of a symmetric kernel runs as one transposed convolution (no zero-filled
    temporary) and a symmetric-padded blur as one padded convolution; everything else uses :func:`upfirdn2d_ref`.
    ``symmetric``: whether ``kernel`` is (pass it when known: checking costs a device sync)."""
    k = kernel.shape[-1]
    if up == 2 and down == 1 and pad[0] >= 0 and pad[1] >= 0 and \
            (is_symmetric(kernel) if symmetric is None else symmetric):
        # Transposed conv with stride 2 == zero-insertion followed by a full convolution (padding k-1).
        c = x.shape[1]
        wt = kernel.to(x.dtype)[None, None].expand(c, 1, k, k)  # [C, 1, K, K]
        y = F.conv_transpose2d(x, wt, stride=2, groups=c)  # [N, C, 2H-2+K, 2W-2+K] = zero-insert + pad (K-1)
        # y corresponds to padding the (2H-1)-long zero-inserted signal by K-1 on each side; ref pads the 2H-long one
        # (which has one extra trailing zero) by p0, p1.
        start = (k - 1) - pad[0]
        end_total = 2 * x.shape[-1] + pad[0] + pad[1] - k + 1  # ref output length
        if start >= 0 and pad[1] <= k - 2:
            return y[:, :, start:start + end_total, start:start + end_total]
    if up == 1 and down == 1 and pad[0] == pad[1] >= 0:  # plain blur: the convolution pads by itself
        c = x.shape[1]
        wt = torch.flip(kernel, [0, 1]).to(x.dtype)[None, None].expand(c, 1, k, k)  # [C, 1, K, K]
        return F.conv2d(x, wt, padding=pad[0], groups=c)
    return upfirdn2d_ref(x, kernel, up=up, down=down, pad=pad)


class _ConvTranspose2x(torch.autograd.Function):
    """Stride-2 transposed convolution whose weight gradient runs on contiguous (NCHW) copies.

    On the CPU, oneDNN's channels-last weight gradient of a strided transposed convolution is 2-3x slower than
    the contiguous one (measured in ``bench/README.md``), while its forward and input gradient are faster in
    channels-last. Same values as ``F.conv_transpose2d``; not twice differentiable."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return F.conv_transpose2d(x, weight, stride=2)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        x, weight = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad
        args = ([2, 2], [0, 0], [1, 1], True, [0, 0], 1)  # stride, padding, dilation, transposed, out-pad, groups
        grad_x = grad_w = None
        if need_x:
            grad_x = torch.ops.aten.convolution_backward(grad, x, weight, None, *args, [True, False, False])[0]
        if need_w:
            grad_w = torch.ops.aten.convolution_backward(grad.contiguous(), x.contiguous(), weight.contiguous(),
                                                         None, *args, [False, True, False])[1]
        return grad_x, grad_w


def _contiguous_wgrad_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether :class:`_ConvTranspose2x` can run: CPU, channels-last input, a weight gradient wanted, no autocast."""
    return (x.device.type == "cpu" and weight.requires_grad and torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu")
            and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())


def conv_transpose2x(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.conv_transpose2d(x, weight, stride=2)`` (``x`` [N, in, H, W], ``weight`` [in, out, k, k]); on the CPU,
    for channels-last input with at least 256 channels (where it was measured faster), a trainable weight and no
    autocast, the weight gradient takes the contiguous layout."""
    return UP_PATHS[fixed_up_path(x, weight)](x, weight)


def conv_transpose2x_phases(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.conv_transpose2d(x, weight, stride=2)`` for a 3x3 ``weight`` [in, out, 3, 3] as four ordinary
    convolutions, one per output phase (even/odd row and column): 2x2, 2x1, 1x2 and 1x1 taps of the flipped
    kernel on ``x`` [N, in, H, W], interleaved into [N, out, 2H+1, 2W+1]. The same products as the transposed
    convolution, by kernels oneDNN runs faster on narrow layers; plain autograd ops."""
    n, _, h, w = x.shape
    wf = torch.flip(weight.transpose(0, 1), [2, 3])  # [out, in, 3, 3]: correlation taps
    y = torch.empty(n, wf.shape[0], 2 * h + 1, 2 * w + 1, dtype=x.dtype, device=x.device,
                    memory_format=torch.channels_last if x.is_contiguous(memory_format=torch.channels_last)
                    else torch.contiguous_format)
    y[:, :, 0::2, 0::2] = F.conv2d(x, wf[:, :, 0::2, 0::2], padding=1)  # [N, out, H+1, W+1]
    y[:, :, 0::2, 1::2] = F.conv2d(x, wf[:, :, 0::2, 1:2], padding=(1, 0))  # [N, out, H+1, W]
    y[:, :, 1::2, 0::2] = F.conv2d(x, wf[:, :, 1:2, 0::2], padding=(0, 1))  # [N, out, H, W+1]
    y[:, :, 1::2, 1::2] = F.conv2d(x, wf[:, :, 1:2, 1:2])  # [N, out, H, W]
    return y


# The paths a tuner (nada.nets.autotune) may choose between; each computes the same function as the first one.
UP_PATHS = {
    "transposed": lambda x, w: F.conv_transpose2d(x, w, stride=2),
    "transposed-contiguous-wgrad": lambda x, w: _ConvTranspose2x.apply(x, w),
    "phases": conv_transpose2x_phases,
}
CONV3X3_PATHS = {
    "direct": lambda x, w: F.conv2d(x, w, padding=1),
    "winograd": lambda x, w: winograd_conv3x3(x, w),
}


def up_paths(x: torch.Tensor, weight: torch.Tensor) -> dict:
    """The stride-2 transposed-convolution paths worth trying for ``x`` and ``weight`` [in, out, k, k] here. With
    a weight gradient in channels-last from 256 channels, the contiguous-gradient path alone: it beat the plain
    transposed convolution (1.1-3x, AVX-512 and emulated AVX2) and the phases (1.2-1.9x, emulated AVX2) at every
    such shape measured (bench/README.md)."""
    paths = {"transposed": UP_PATHS["transposed"]}
    if _contiguous_wgrad_applies(x, weight):
        if x.shape[1] >= 256:
            return {"transposed-contiguous-wgrad": UP_PATHS["transposed-contiguous-wgrad"]}
        paths["transposed-contiguous-wgrad"] = UP_PATHS["transposed-contiguous-wgrad"]
    if weight.shape[-1] == 3 and weight.shape[-2] == 3 and x.device.type == "cpu":
        paths["phases"] = UP_PATHS["phases"]
    return paths


def fixed_up_path(x: torch.Tensor, weight: torch.Tensor) -> str:
    """The untimed choice: the contiguous weight gradient from 256 input channels (measured on AVX-512); always
    one of :func:`up_paths`."""
    return "transposed-contiguous-wgrad" if x.shape[1] >= 256 and _contiguous_wgrad_applies(x, weight) \
        else "transposed"


# Narrower layers never gain from Winograd (its transforms cost more than the products they save), so it is not
# tried there: 2-4x slower at 32 and 64 channels, on AVX2 and AVX-512 alike; without gradients also at 128 channels
# (a 256 px map: 1.2-1.9x slower at batch 1, 6x at batch 4, where its temporaries outgrow the caches).
WINOGRAD_MIN_CHANNELS = 96
WINOGRAD_MIN_CHANNELS_NO_GRAD = 256


def conv3x3_paths(x: torch.Tensor, weight: torch.Tensor) -> dict:
    """The 3x3 convolution paths worth trying: Winograd only in float32/64 on the CPU without autocast, from
    ``WINOGRAD_MIN_CHANNELS`` channels in and out (``WINOGRAD_MIN_CHANNELS_NO_GRAD`` without gradients)."""
    grads = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and not torch.is_autocast_enabled("cpu") \
            and min(x.shape[1], weight.shape[0]) >= (WINOGRAD_MIN_CHANNELS if grads else WINOGRAD_MIN_CHANNELS_NO_GRAD):
        return dict(CONV3X3_PATHS)
    return {"direct": CONV3X3_PATHS["direct"]}


# Winograd F(4x4, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks"): with interpolation
# points 0, +-1, +-2 and infinity, a 6x6 input tile and a 3x3 kernel give a 4x4 output tile from 36 products instead
# of 144, so the channel-mixing matrix products cost 1/4 of a direct convolution's. The 2-D transforms are the
# Kronecker squares of the 1-D ones (B^T d B, G g G^T, A^T m A on flattened tiles), stored in float64.
_WINO_BT = torch.tensor([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                         [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=torch.float64)
_WINO_G = torch.tensor([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                        [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=torch.float64)
_WINO_AT = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
                        dtype=torch.float64)
_WINO_2D = tuple(torch.kron(m, m) for m in (_WINO_BT, _WINO_G, _WINO_AT))  # [36, 36], [36, 9], [16, 36]


def winograd_pays(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether :func:`winograd_conv3x3` beats the direct convolution of ``x`` [N, C, H, W] with ``weight``
    [K, C, 3, 3], by the crossovers measured on the CPU (``bench/README.md``): 1024+ output pixels and 128+
    channels in and out, or 256+ when only the input gradient is wanted (the layer probe); never on other
    devices or under autocast (the transforms need float32)."""
    n, c, h, w = x.shape
    input_grad_only = torch.is_grad_enabled() and x.requires_grad and not weight.requires_grad
    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and not torch.is_autocast_enabled("cpu") and n * h * w >= 1024
            and min(c, weight.shape[0]) >= (256 if input_grad_only else 128))


def winograd_conv3x3(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.conv2d(x, weight, padding=1)`` for a 3x3 kernel by Winograd F(4x4, 3x3): ``x`` [N, C, H, W] (best in
    channels-last), ``weight`` [K, C, 3, 3] -> [N, K, H, W] channels-last. Same result up to float rounding
    (about 4x the direct convolution's, ~1e-5 relative in float32); differentiable with plain autograd ops."""
    n, c, h, w = x.shape
    k = weight.shape[0]
    th, tw = -(-h // 4), -(-w // 4)  # 4x4 output tiles per column and row
    bt2, g2, at2 = (m.to(x) for m in _WINO_2D)
    xp = F.pad(x, (1, 4 * tw + 1 - w, 1, 4 * th + 1 - h)).permute(0, 2, 3, 1)  # [N, 4th+2, 4tw+2, C]
    tiles = xp.unfold(1, 6, 4).unfold(2, 6, 4)  # [N, th, tw, C, 6, 6], overlapping views
    tiles = tiles.permute(4, 5, 0, 1, 2, 3).reshape(36, n * th * tw * c)  # [36, P*C]
    v = (bt2 @ tiles).view(36, n * th * tw, c)  # [36, P, C]: B^T d B per tile
    u = (g2 @ weight.reshape(k * c, 9).t()).view(36, k, c).transpose(1, 2)  # [36, C, K]: G g G^T
    m = torch.bmm(v, u)  # [36, P, K]
    y = (at2 @ m.view(36, -1)).view(4, 4, n, th, tw, k)  # [4, 4, N, th, tw, K]: A^T m A
    y = y.permute(2, 3, 0, 4, 1, 5).reshape(n, 4 * th, 4 * tw, k)[:, :h, :w]  # [N, H, W, K]
    return y.permute(0, 3, 1, 2)  # [N, K, H, W], channels-last memory
