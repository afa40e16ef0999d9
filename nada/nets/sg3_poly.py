"""The filtered leaky ReLU computed fast: polyphase resampling as matrix products, in channels-last memory.

Same function as :func:`~nada.nets.sg3_ops.filtered_lrelu_ref` (tests compare them), computed without the
zero-filled up-sampled map and without decimating a full-rate convolution:

- along W (the innermost axis of a channels-last row), a depthwise transposed convolution of stride ``up`` (the
  zero-insertion and the filter in one) or a depthwise convolution of stride ``down``;
- along H, a banded matrix product: output rows come in blocks of ``block`` rows, and every block is the same small
  matrix (the filter's taps at each block position, :func:`block_matrix`) times a window of input rows; each row of a
  channels-last map is one contiguous ``W * C`` vector, so all blocks of all images are one batched product over
  overlapping windows (``unfold``, no copies);
- the gains (``up ** 2`` and the activation's ``gain``) ride on the filters: ``leaky_relu(a y) = a leaky_relu(y)``
  for ``a > 0``, and the clamp follows the gain in both;
- a radial (2-D) down-sampling filter runs as one depthwise convolution of stride ``down``.

Without gradients the activation and the clamp run in place.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from .sg3_ops import Padding, filtered_lrelu_ref

UP_BLOCK, DOWN_BLOCK = 16, 4  # output rows per block: the fastest measured on the CPU (bench/README.md)


@functools.lru_cache(maxsize=256)
def _band(taps: int, up: int, down: int, pad0: int, block: int) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Which filter tap each entry of :func:`block_matrix` holds: (tap index [rows_in, block], in-range mask, start,
    step); pure integers, cached."""
    if (block * down) % up:
        raise ValueError(f"block * down must be a multiple of up, got block={block}, down={down}, up={up}.")
    step = block * down // up
    start = -(pad0 // up)  # first input sample any output of block 0 reads: ceil(-pad0 / up)
    rows_in = ((block - 1) * down - pad0 + taps - 1) // up - start + 1
    tap = (start + torch.arange(rows_in)[:, None]) * up + pad0 - torch.arange(block)[None, :] * down  # correlation tap
    inside = (tap >= 0) & (tap < taps)
    return (taps - 1 - tap).clamp(0, taps - 1), inside, start, step  # as an index into the (unflipped) filter


def block_matrix(f: torch.Tensor, up: int, down: int, pad0: int, block: int) -> tuple[torch.Tensor, int, int]:
    """The banded resampling (zero-insert ``up``, pad ``pad0`` in front, convolve with ``f`` [T], keep every
    ``down``-th) as blocks: output ``b * block + c`` = sum over ``r`` of ``M[r, c] * x[start + b * step + r]``.
    Returns (M [rows_in, block] on ``f``'s device and dtype, start, step); ``block * down`` must be a multiple of
    ``up``."""
    index, inside, start, step = _band(f.shape[0], up, down, pad0, block)
    m = f.detach()[index.to(f.device)] * inside.to(f.device, f.dtype)  # [rows_in, block]
    return m, start, step


def resample_rows(x: torch.Tensor, f: torch.Tensor, up: int, down: int, pad: tuple[int, int], gain: float = 1.0,
                  block: int | None = None) -> torch.Tensor:
    """Resample ``x`` [N, H, L] along H (rows of length L): zero-insert ``up``, pad by ``pad`` (negative: crop),
    convolve with ``f * gain`` [T], keep every ``down``-th row -> [N, H', L]."""
    n, h, length = x.shape
    taps = f.shape[0]
    out = (h * up + pad[0] + pad[1] - taps + 1 + down - 1) // down
    if block is None:  # the measured default, rounded up to a size the blocks tile exactly (block * down / up whole)
        unit = up // math.gcd(up, down)
        block = -(-(UP_BLOCK if up > 1 else DOWN_BLOCK) // unit) * unit
    m, start, step = block_matrix(f, up, down, pad[0], block)
    mt = (m.to(x.dtype) * gain).t()  # [block, rows_in]
    rows_in = mt.shape[1]
    nb = -(-out // block)  # blocks per image
    per_image = -(-((nb - 1) * step + rows_in) // step) * step  # padded rows per image: a whole number of steps
    lo = -start  # zero rows in front (negative: rows cropped)
    src = x[:, max(-lo, 0):]
    keep = min(src.shape[1], per_image - max(lo, 0))
    buf = x.new_zeros(n * per_image + rows_in, length)  # images one after another, each padded with zero rows
    buf[: n * per_image].view(n, per_image, length)[:, max(lo, 0): max(lo, 0) + keep] = src[:, :keep]
    windows = buf.unfold(0, rows_in, step).transpose(1, 2)  # [n * per_image / step, rows_in, L], overlapping views
    windows = windows[: n * per_image // step]
    y = torch.matmul(mt, windows)  # [n * blocks per image, block, L]
    return y.view(n, per_image // step * block, length)[:, :out]


def _fir_w(x: torch.Tensor, f: torch.Tensor, up: int, down: int, pad: tuple[int, int], gain: float) -> torch.Tensor:
    """Resample ``x`` [N, C, H, W] along W by a depthwise (transposed) convolution: same steps as
    :func:`resample_rows`."""
    c, taps = x.shape[1], f.shape[0]
    k = (f * gain).to(x.dtype)
    if up > 1:  # zero-insertion + full convolution: the input padded by taps - 1 on both sides
        y = F.conv_transpose2d(x, k.view(1, 1, 1, taps).expand(c, 1, 1, taps), stride=(1, up), groups=c)
        out = x.shape[3] * up + pad[0] + pad[1] - taps + 1
        first = taps - 1 - pad[0]
        extra = (max(-first, 0), max(first + out - y.shape[3], 0))
        if any(extra):
            y = F.pad(y, (*extra, 0, 0))
        y = y[:, :, :, first + extra[0]: first + extra[0] + out]
        return y[:, :, :, ::down] if down > 1 else y
    if pad != (0, 0):
        x = F.pad(x, (*pad, 0, 0))
    return F.conv2d(x, torch.flip(k, [0]).view(1, 1, 1, taps).expand(c, 1, 1, taps), stride=(1, down), groups=c)


def _fir_h(x: torch.Tensor, f: torch.Tensor, up: int, down: int, pad: tuple[int, int], gain: float) -> torch.Tensor:
    """Resample ``x`` [N, C, H, W] along H by :func:`resample_rows` on its channels-last rows -> channels-last."""
    n, c, _, w = x.shape
    rows = x.permute(0, 2, 3, 1).reshape(n, x.shape[2], w * c)  # [N, H, W*C] (a view when x is channels-last)
    y = resample_rows(rows, f, up, down, pad, gain)  # [N, H', W*C]
    return y.reshape(n, -1, w, c).permute(0, 3, 1, 2)  # [N, C, H', W] channels-last


def filtered_lrelu(x: torch.Tensor, fu: torch.Tensor | None, fd: torch.Tensor | None,
                   demod: torch.Tensor | None = None, bias: torch.Tensor | None = None, up: int = 1, down: int = 1,
                   padding: Padding = (0, 0, 0, 0), gain: float = 2 ** 0.5, slope: float = 0.2,
                   clamp: float | None = None) -> torch.Tensor:
    """:func:`~nada.nets.sg3_ops.filtered_lrelu_ref` of ``x * demod + bias`` (``x`` [N, C, H, W], ``demod``
    [N, C], ``bias`` [C]), by polyphase products -> [N, C, H', W'] channels-last. Cases it does not cover (a 2-D
    up-sampling filter, a missing filter with resampling) run the reference."""
    if demod is not None or bias is not None:
        d = demod[:, :, None, None] if demod is not None else x.new_ones(())
        b = bias.view(1, -1, 1, 1).to(x.dtype) if bias is not None else x.new_zeros(())
        x = torch.addcmul(b, x, d)  # [N, C, H, W]
    separable_up = fu is not None and fu.ndim == 1
    if not separable_up or fd is None or slope <= 0:
        return filtered_lrelu_ref(x, fu, fd, None, up, down, padding, gain, slope, clamp)
    x = x.contiguous(memory_format=torch.channels_last)
    x = _fir_w(x, fu, up, 1, (padding[0], padding[1]), float(up))  # [N, C, H, W up]
    x = _fir_h(x, fu, up, 1, (padding[2], padding[3]), float(up) * gain)  # [N, C, H up, W up]: the activation's rate
    if torch.is_grad_enabled() and x.requires_grad:
        if clamp is not None:
            x = x.clamp(-clamp / slope, clamp)  # = clamp after the leaky ReLU, for slope > 0
        x = F.leaky_relu(x, slope)
    else:
        if clamp is not None:
            x.clamp_(-clamp / slope, clamp)
        F.leaky_relu_(x, slope)
    if fd.ndim == 2:  # radial: one depthwise 2-D convolution
        c, taps = x.shape[1], fd.shape[0]
        k = torch.flip(fd, [0, 1]).to(x.dtype)[None, None].expand(c, 1, taps, taps)
        return F.conv2d(x, k, stride=down, groups=c)
    x = _fir_w(x, fd, 1, down, (0, 0), 1.0)
    return _fir_h(x, fd, 1, down, (0, 0), 1.0)


__all__ = ["filtered_lrelu", "resample_rows", "block_matrix", "UP_BLOCK", "DOWN_BLOCK"]
