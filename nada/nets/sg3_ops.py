"""StyleGAN3's filtered leaky ReLU, as the formulas define it (the reference) and as a faster polyphase computation.

The filtered leaky ReLU of "Alias-Free Generative Adversarial Networks" (section 3.2, appendix D) takes a feature
map ``x`` [N, C, H, W] and, per channel: adds the bias; up-samples by ``up`` (inserts ``up - 1`` zeros after each
sample, pads by ``padding`` (negative: crops) and convolves with the up-sampling filter ``fu`` times ``up**2``);
applies ``leaky_relu(slope) * gain``; clamps to ``[-clamp, clamp]``; convolves with the down-sampling filter ``fd``;
keeps every ``down``-th sample. A 1-D filter [T] filters both axes (separable); a 2-D one [T, T] is applied as is.
:func:`filtered_lrelu_ref` is that sequence, literally; :func:`filtered_lrelu` computes the same by polyphase
matrix products (:mod:`~nada.nets.sg3_poly`), tested against it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Padding = tuple[int, int, int, int]  # x0, x1, y0, y1: before/after along W, then along H (negative: crop)


def upfirdn2d_ref(x: torch.Tensor, f: torch.Tensor | None, up: int = 1, down: int = 1,
                  padding: Padding = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Reference FIR resampling of ``x`` [N, C, H, W]: zero-insert ``up``, pad/crop by ``padding``, convolve with
    ``f * gain`` ([T] separable: along both axes, each with ``sqrt(gain)``; [T, T]; None: identity), keep every
    ``down``-th sample -> [N, C, H', W']."""
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1)).reshape(n, c, h * up, w * up)  # zeros after each sample
    x0, x1, y0, y1 = padding
    x = F.pad(x, (max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)))
    x = x[:, :, max(-y0, 0): x.shape[2] - max(-y1, 0), max(-x0, 0): x.shape[3] - max(-x1, 0)]
    if f is not None:
        f = f.to(x.dtype) * gain ** (f.ndim / 2)
        k = torch.flip(f, list(range(f.ndim)))  # convolution, not correlation
        if f.ndim == 1:
            t = k.numel()
            x = F.conv2d(x, k.view(1, 1, 1, t).expand(c, 1, 1, t), groups=c)  # along W
            x = F.conv2d(x, k.view(1, 1, t, 1).expand(c, 1, t, 1), groups=c)  # along H
        else:
            x = F.conv2d(x, k[None, None].expand(c, 1, *k.shape), groups=c)
    elif gain != 1:
        x = x * gain
    return x[:, :, ::down, ::down] if down > 1 else x


def filtered_lrelu_ref(x: torch.Tensor, fu: torch.Tensor | None, fd: torch.Tensor | None,
                       b: torch.Tensor | None = None, up: int = 1, down: int = 1,
                       padding: Padding = (0, 0, 0, 0), gain: float = 2 ** 0.5, slope: float = 0.2,
                       clamp: float | None = None) -> torch.Tensor:
    """The filtered leaky ReLU, step by step as defined (see the module docstring): ``x`` [N, C, H, W], bias ``b``
    [C] -> [N, C, H', W']."""
    if b is not None:
        x = x + b.to(x.dtype).view(1, -1, 1, 1)
    x = upfirdn2d_ref(x, fu, up=up, padding=padding, gain=up ** 2)  # [N, C, up H + pads - taps + 1, ...]
    x = F.leaky_relu(x, slope) * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return upfirdn2d_ref(x, fd, down=down)


def output_size(size: int, up: int, down: int, pad: tuple[int, int], up_taps: int, down_taps: int) -> int:
    """Side of the filtered leaky ReLU's output for an input side ``size`` (one axis)."""
    return (size * up + pad[0] + pad[1] - (up_taps - 1) - (down_taps - 1) + down - 1) // down


__all__ = ["filtered_lrelu_ref", "upfirdn2d_ref", "output_size", "Padding"]
