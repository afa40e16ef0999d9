"""Polyphase resampling for StyleGAN3's filtered leaky ReLU, and its transpose (for the backward pass).

A resampling along one axis zero-inserts ``up``, pads (negative: crops), convolves with a FIR filter and keeps every
``down``-th sample, as :func:`~nada.nets.sg3_ops.upfirdn2d_ref` does per axis. Here it runs without the zero-filled
map and without decimating a full-rate convolution:

- along W (the innermost axis of a channels-last row), a depthwise transposed convolution of stride ``up`` (the
  zero-insertion and the filter in one) or a depthwise convolution of stride ``down`` (:func:`fir_w`);
- along H, a banded matrix product (:func:`resample_rows`): output rows come in blocks of ``block`` rows, and every
  block is the same small matrix (the filter's taps at each block position, :func:`block_matrix`) times a window of
  input rows; each row of a channels-last map is one contiguous ``W * C`` vector, so the blocks are one batched
  product over overlapping windows of the map itself (``unfold``, no copies).

The transpose of a resampling is a resampling by the flipped filter with ``up`` and ``down`` swapped
(:func:`adjoint` gives its padding), so backward passes reuse the same code.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

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
                  block: int | None = None, rows: tuple[int, int] | None = None) -> torch.Tensor:
    """Resample ``x`` [N, H, L] along H (rows of length L, unit stride): zero-insert ``up``, pad by ``pad``
    (negative: crop), convolve with ``f * gain`` [T], keep every ``down``-th row -> [N, H', L]; only output rows
    ``rows`` = (first, end) when given. Not differentiable (its adjoint is :func:`adjoint`'s resampling).

    Output block ``b`` reads input rows ``b * step + start`` onwards; the blocks whose rows all lie inside ``x`` read
    it in place (overlapping windows), only those at the two ends read a small zero-padded copy."""
    n, h, length = x.shape
    out = resample_size(h, f.shape[0], up, down, pad)
    if block is None:  # the measured default, rounded up to a size the blocks tile exactly (block * down / up whole)
        unit = up // math.gcd(up, down)
        block = -(-(UP_BLOCK if up > 1 else DOWN_BLOCK) // unit) * unit
    m, start, step = block_matrix(f, up, down, pad[0], block)
    mt = (m.to(x.dtype) * gain).t()  # [block, rows_in]
    rows_in = mt.shape[1]
    r0, r1 = rows or (0, out)
    first, end = r0 // block, -(-r1 // block)  # the blocks holding the rows asked for
    lo = min(max(-(-max(-start, 0) // step), first), end)  # from here, blocks start inside x
    hi = max(min((h - rows_in - start) // step + 1, end), lo) if h >= rows_in else lo  # ... and end inside it
    spans = [(b0, b1) for b0, b1 in ((first, lo), (lo, hi), (hi, end)) if b1 > b0]
    with torch.no_grad():
        y = x.new_empty(n, (end - first) * block, length)
        for i in range(n):
            for b0, b1 in spans:
                i0, i1 = b0 * step + start, (b1 - 1) * step + start + rows_in  # input rows these blocks read
                src = x[i, i0:i1] if (b0, b1) == (lo, hi) else _zero_padded(x[i], i0, i1)  # [i1 - i0, L]
                windows = src.unfold(0, rows_in, step).transpose(1, 2)  # [b1 - b0, rows_in, L], overlapping views
                torch.bmm(mt.expand(b1 - b0, block, rows_in), windows,
                          out=y[i, (b0 - first) * block: (b1 - first) * block].view(b1 - b0, block, length))
    return y[:, r0 - first * block: r1 - first * block]


def resample_size(size: int, taps: int, up: int, down: int, pad: tuple[int, int]) -> int:
    """Output length of :func:`resample_rows` (and of the reference) along one axis."""
    return (size * up + pad[0] + pad[1] - taps + 1 + down - 1) // down


def _zero_padded(x: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
    """Rows ``r0`` to ``r1`` of ``x`` [H, L], zero where outside it -> [r1 - r0, L]."""
    a, b = max(r0, 0), min(r1, x.shape[0])
    if b <= a:
        return x.new_zeros(r1 - r0, x.shape[1])
    return F.pad(x[a:b], (0, 0, a - r0, r1 - b))


def fir_w(x: torch.Tensor, f: torch.Tensor, up: int, down: int, pad: tuple[int, int], gain: float) -> torch.Tensor:
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


def fir_h(x: torch.Tensor, f: torch.Tensor, up: int, down: int, pad: tuple[int, int], gain: float,
          rows: tuple[int, int] | None = None) -> torch.Tensor:
    """Resample ``x`` [N, C, H, W] along H by :func:`resample_rows` on its channels-last rows (output ``rows`` only,
    when given) -> channels-last."""
    n, c, h, w = x.shape
    flat = x.permute(0, 2, 3, 1).reshape(n, h, w * c)  # [N, H, W*C] (a view when x is channels-last)
    y = resample_rows(flat, f, up, down, pad, gain, rows=rows)  # [N, H', W*C]
    return y.reshape(n, y.shape[1], w, c).permute(0, 3, 1, 2)  # [N, C, H', W] channels-last


def adjoint(size_in: int, size_out: int, taps: int, up: int, down: int, pad0: int, offset: int = 0,
            ) -> tuple[int, int, tuple[int, int]]:
    """The transpose of a resampling (``up``, ``down``, ``pad0`` in front, ``taps`` taps) of a ``size_in`` signal,
    whose output rows ``offset`` to ``offset + size_out`` are given, as a resampling of those rows by the flipped
    filter: (its up, its down, its padding), giving exactly ``size_in`` samples."""
    p0 = taps - 1 - pad0 + offset * down
    return down, up, (p0, (size_in - 1) * up + taps - size_out * down - p0)


__all__ = ["resample_rows", "resample_size", "block_matrix", "fir_w", "fir_h", "adjoint", "UP_BLOCK", "DOWN_BLOCK"]
