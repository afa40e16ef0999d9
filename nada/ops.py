"""StyleGAN2 low-level ops in plain PyTorch: FIR resampling (upfirdn2d) and the fused bias + leaky ReLU.

Nothing compiles at import. ``upfirdn2d_ref`` is the literal definition (zero-insert, pad, convolve, decimate)
and stays the reference that the faster paths are tested against.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

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


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """FIR resampling; 2x up-sampling of a symmetric kernel runs as one transposed convolution (no zero-filled
    temporary) and a symmetric-padded blur as one padded convolution; everything else uses :func:`upfirdn2d_ref`."""
    k = kernel.shape[-1]
    if up == 2 and down == 1 and pad[0] >= 0 and pad[1] >= 0 and torch.equal(kernel, torch.flip(kernel, [0, 1])):
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
