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

Without gradients the activation and the clamp run in place; on the CPU the clamp is skipped when the input's peak
times the up-sampling filters' gain bounds every value below it (one pass over the small input instead of one over
the largest map).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from .sg3_ops import Padding, filtered_lrelu_ref

UP_BLOCK, DOWN_BLOCK = 16, 4  # output rows per block: the fastest measured on the CPU (bench/README.md)
BAND_BYTES = 64 << 20  # without gradients, the full-rate map is made this much at a time (rows of all channels)


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
    ``rows`` = (first, end) when given.

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
    grad = torch.is_grad_enabled() and x.requires_grad
    y = None if grad else x.new_empty(n, (end - first) * block, length)
    images = []
    for i in range(n):
        pieces = []
        for b0, b1 in spans:
            i0, i1 = b0 * step + start, (b1 - 1) * step + start + rows_in  # input rows these blocks read
            src = x[i, i0:i1] if (b0, b1) == (lo, hi) else _zero_padded(x[i], i0, i1)  # [i1 - i0, L]
            windows = src.unfold(0, rows_in, step).transpose(1, 2)  # [b1 - b0, rows_in, L], overlapping views
            if grad:
                pieces.append(torch.matmul(mt, windows).reshape((b1 - b0) * block, length))
            else:
                torch.bmm(mt.expand(b1 - b0, block, rows_in), windows,
                          out=y[i, (b0 - first) * block: (b1 - first) * block].view(b1 - b0, block, length))
        if grad:
            images.append(torch.cat(pieces) if len(pieces) > 1 else pieces[0])
    y = torch.stack(images) if grad else y
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


def _peak(x: torch.Tensor) -> float:
    """max |x| [N, C, H, W] (one pass, read on the host; a channels-last map as its flat memory: ``aminmax`` would
    copy it to NCHW first)."""
    x = x.detach()
    flat = x.permute(0, 2, 3, 1).reshape(-1) if x.is_contiguous(memory_format=torch.channels_last) else x.reshape(-1)
    lo, hi = torch.aminmax(flat)
    return max(-float(lo), float(hi))


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
    if clamp is not None and x.device.type == "cpu" and slope <= 1 and \
            _peak(x) * up * up * gain * float(fu.abs().sum()) ** 2 <= clamp:
        clamp = None  # the up-sampled values cannot reach the clamp: skip a pass over the largest map
    x = x.contiguous(memory_format=torch.channels_last)
    grad = torch.is_grad_enabled() and x.requires_grad
    n, c, h, _ = x.shape
    tu, td = fu.shape[0], fd.shape[0]
    px, py = (padding[0], padding[1]), (padding[2], padding[3])
    w_up = resample_size(x.shape[3], tu, up, 1, px)  # columns at the activation's rate
    tmp_h = resample_size(h, tu, up, 1, py)  # rows at the activation's rate
    out_h = (tmp_h - td + down) // down
    # Without gradients, bands of output rows run the whole chain in turn: neither the full-rate map nor the map
    # up-sampled along W ever exists whole (input rows a band needs are up-sampled again by the next: a few rows).
    band = out_h if grad else max(8, BAND_BYTES // (4 * n * w_up * c * down) // 8 * 8)
    out = None
    for o0 in range(0, out_h, band):
        o1 = min(o0 + band, out_h)
        t0, t1 = o0 * down, min((o1 - 1) * down + td, tmp_h)  # the activation rows these output rows read
        i0 = min(max(0, -((py[0] - t0) // up)), h - 1)  # ... and the input rows those read
        i1 = max(min(h, (t1 - 1 - py[0] + tu - 1) // up + 1), i0 + 1)
        u = _fir_w(x[:, :, i0:i1], fu, up, 1, px, float(up))  # [N, C, i1 - i0, W up]
        rows = u.permute(0, 2, 3, 1).reshape(n, i1 - i0, w_up * c)  # [N, rows, W up * C], a view
        t = resample_rows(rows, fu, up, 1, (py[0] + i0 * up, py[1] + (h - i1) * up), float(up) * gain,
                          rows=(t0, t1))  # [N, t1 - t0, W up * C]
        del u, rows
        t = t.reshape(n, t1 - t0, w_up, c).permute(0, 3, 1, 2)  # [N, C, t1 - t0, W up] channels-last
        if grad:
            if clamp is not None:
                t = t.clamp(-clamp / slope, clamp)  # = clamp after the leaky ReLU, for slope > 0
            t = F.leaky_relu(t, slope)
        else:
            if clamp is not None:
                t.clamp_(-clamp / slope, clamp)
            F.leaky_relu_(t, slope)
        if fd.ndim == 2:  # radial: one depthwise 2-D convolution
            k = torch.flip(fd, [0, 1]).to(t.dtype)[None, None].expand(c, 1, td, td)
            y = F.conv2d(t, k, stride=down, groups=c)  # [N, C, o1 - o0, W']
        else:
            y = _fir_h(_fir_w(t, fd, 1, down, (0, 0), 1.0), fd, 1, down, (0, 0), 1.0)
        del t
        if o1 - o0 == out_h:
            return y
        if out is None:
            out = torch.empty(n, c, out_h, y.shape[3], dtype=y.dtype, device=y.device,
                              memory_format=torch.channels_last)
        out[:, :, o0:o1] = y
    return out


__all__ = ["filtered_lrelu", "resample_rows", "block_matrix", "UP_BLOCK", "DOWN_BLOCK", "BAND_BYTES", "resample_size"]
