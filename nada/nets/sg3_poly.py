"""The filtered leaky ReLU computed fast, forward and backward: polyphase resampling (:mod:`~nada.nets.sg3_resample`)
in channels-last memory, a band of output rows at a time.

Same function as :func:`~nada.nets.sg3_ops.filtered_lrelu_ref` (tests compare values and gradients):

- the gains (``up ** 2`` and the activation's ``gain``) ride on the up-sampling filters, since
  ``leaky_relu(a y) = a leaky_relu(y)`` for ``a > 0`` and the clamp follows the gain in both; the clamp then acts
  before the activation, at ``[-clamp / slope, clamp]``, which is the same for ``slope > 0``;
- a band of output rows needs a band of the full-rate (activation) map, which needs a band of input rows: each band runs
  the whole chain (up along W, up along H, activation, down along W and H, or one depthwise convolution for a radial
  down-sampling filter), so the full-rate map, the largest tensor of the network, never exists whole;
- the backward pass is written out (:class:`_FilteredLReLU`): it keeps only the input, recomputes a band of the
  full-rate map for the activation's slope, and runs the transposed resamplings (the same code, flipped filters);
- on the CPU the clamp is skipped when the input's peak times the up-sampling filters' gain bounds every value below it
  (one pass over the small input instead of one over the largest map).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .sg3_ops import Padding, filtered_lrelu_ref
from .sg3_resample import adjoint, fir_h, fir_w, resample_size

BAND_BYTES = 64 << 20  # the full-rate map is made this much at a time (rows of all channels and images)


class _Plan:
    """The geometry of one filtered leaky ReLU: sizes along each axis and the bands of output rows."""

    def __init__(self, x: torch.Tensor, fu: torch.Tensor, fd: torch.Tensor, up: int, down: int, padding: Padding):
        self.n, self.c, self.h, self.w = x.shape
        self.up, self.down, self.tu, self.td = up, down, fu.shape[0], fd.shape[0]
        self.px, self.py = (padding[0], padding[1]), (padding[2], padding[3])
        self.w_up = resample_size(self.w, self.tu, up, 1, self.px)  # columns at the activation's rate
        self.h_up = resample_size(self.h, self.tu, up, 1, self.py)  # rows at the activation's rate
        self.out_h = (self.h_up - self.td + down) // down
        self.out_w = (self.w_up - self.td + down) // down
        self.band = max(8, BAND_BYTES // (4 * self.n * self.w_up * self.c * down) // 8 * 8)

    def bands(self):
        """(o0, o1, t0, t1, i0, i1) per band: output rows, the activation rows they read, the input rows those read."""
        for o0 in range(0, self.out_h, self.band):
            o1 = min(o0 + self.band, self.out_h)
            t0, t1 = o0 * self.down, min((o1 - 1) * self.down + self.td, self.h_up)
            i0 = min(max(0, -((self.py[0] - t0) // self.up)), self.h - 1)
            i1 = max(min(self.h, (t1 - 1 - self.py[0] + self.tu - 1) // self.up + 1), i0 + 1)
            yield o0, o1, t0, t1, i0, i1

    def pad_h(self, i0: int, i1: int) -> tuple[int, int]:
        """The up-sampling's padding along H for input rows ``i0`` to ``i1`` standing alone."""
        return self.py[0] + i0 * self.up, self.py[1] + (self.h - i1) * self.up


def _up(x: torch.Tensor, fu: torch.Tensor, p: _Plan, gain: float, band: tuple) -> torch.Tensor:
    """Activation rows ``t0:t1`` before the activation (gains applied): [N, C, t1 - t0, W up] channels-last."""
    _, _, t0, t1, i0, i1 = band
    u = fir_w(x[:, :, i0:i1], fu, p.up, 1, p.px, float(p.up))  # [N, C, i1 - i0, W up]
    return fir_h(u, fu, p.up, 1, p.pad_h(i0, i1), float(p.up) * gain, rows=(t0, t1))


def _down(t: torch.Tensor, fd: torch.Tensor, p: _Plan) -> torch.Tensor:
    """Activation rows [N, C, rows, W up] -> the output rows they give [N, C, rows', W']."""
    if fd.ndim == 2:  # radial: one depthwise 2-D convolution
        k = torch.flip(fd, [0, 1]).to(t.dtype)[None, None].expand(p.c, 1, p.td, p.td)
        return F.conv2d(t, k, stride=p.down, groups=p.c)
    return fir_h(fir_w(t, fd, 1, p.down, (0, 0), 1.0), fd, 1, p.down, (0, 0), 1.0)


def _forward(x: torch.Tensor, fu: torch.Tensor, fd: torch.Tensor, p: _Plan, gain: float, slope: float,
             clamp: float | None) -> torch.Tensor:
    """The banded forward pass (no autograd): x [N, C, H, W] channels-last -> [N, C, H', W'] channels-last."""
    out = None
    with torch.no_grad():
        for band in p.bands():
            o0, o1 = band[:2]
            t = _up(x, fu, p, gain, band)  # [N, C, t1 - t0, W up]
            if clamp is not None:
                t.clamp_(-clamp / slope, clamp)
            y = _down(F.leaky_relu_(t, slope), fd, p)  # [N, C, o1 - o0, W']
            del t
            if o1 - o0 == p.out_h:
                return y
            if out is None:
                out = torch.empty(p.n, p.c, p.out_h, y.shape[3], dtype=y.dtype, device=y.device,
                                  memory_format=torch.channels_last)
            out[:, :, o0:o1] = y
    return out


def _backward(x: torch.Tensor, gy: torch.Tensor, fu: torch.Tensor, fd: torch.Tensor, p: _Plan, gain: float,
              slope: float, clamp: float | None) -> torch.Tensor:
    """The gradient with respect to ``x`` of the sum of ``gy *`` the output, band by band: the transposed down-sampling
    of ``gy``, times the activation's slope at the recomputed activation rows, then the transposed up-sampling."""
    gx = torch.zeros_like(x, memory_format=torch.channels_last)
    gy = gy.contiguous(memory_format=torch.channels_last)
    fu_t, fd_t = torch.flip(fu, [0]), torch.flip(fd, list(range(fd.ndim)))
    for band in p.bands():
        o0, o1, t0, t1, i0, i1 = band
        g = gy[:, :, o0:o1]  # [N, C, o1 - o0, W']
        if fd.ndim == 2:  # transposed strided convolution, then zeros for the rows and columns no window reached
            k = fd_t.flip([0, 1]).to(g.dtype)[None, None].expand(p.c, 1, p.td, p.td)
            ga = F.conv_transpose2d(g, k, stride=p.down, groups=p.c)
            ga = F.pad(ga, (0, p.w_up - ga.shape[3], 0, t1 - t0 - ga.shape[2]))
        else:
            up_, down_, pad = adjoint(t1 - t0, o1 - o0, p.td, 1, p.down, 0)
            ga = fir_h(g, fd_t, up_, down_, pad, 1.0)  # [N, C, t1 - t0, W']
            up_, down_, pad = adjoint(p.w_up, p.out_w, p.td, 1, p.down, 0)
            ga = fir_w(ga, fd_t, up_, down_, pad, 1.0)  # [N, C, t1 - t0, W up]
        t = _up(x, fu, p, gain, band)  # the activation rows again, for the slope of each
        if clamp is not None:
            ga = ga * ((t >= -clamp / slope) & (t <= clamp))
        gt = torch.ops.aten.leaky_relu_backward(ga, t, slope, False)  # [N, C, t1 - t0, W up]
        del t, ga
        up_, down_, pad = adjoint(i1 - i0, t1 - t0, p.tu, p.up, 1, p.pad_h(i0, i1)[0], offset=t0)
        gu = fir_h(gt, fu_t, up_, down_, pad, float(p.up) * gain)  # [N, C, i1 - i0, W up]
        up_, down_, pad = adjoint(p.w, p.w_up, p.tu, p.up, 1, p.px[0])
        gx[:, :, i0:i1] += fir_w(gu, fu_t, up_, down_, pad, float(p.up))  # [N, C, i1 - i0, W]
    return gx


class _FilteredLReLU(torch.autograd.Function):
    """The banded filtered leaky ReLU with its written-out backward: keeps the input only (not the full-rate map)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, fu: torch.Tensor, fd: torch.Tensor, up: int, down: int, padding: Padding,
                gain: float, slope: float, clamp: float | None) -> torch.Tensor:
        p = _Plan(x, fu, fd, up, down, padding)
        ctx.save_for_backward(x, fu, fd)
        ctx.args = (p, gain, slope, clamp)
        return _forward(x, fu, fd, p, gain, slope, clamp)

    @staticmethod
    @once_differentiable
    def backward(ctx, gy: torch.Tensor):
        x, fu, fd = ctx.saved_tensors
        return (_backward(x, gy, fu, fd, *ctx.args),) + (None,) * 8


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
    [N, C], ``bias`` [C]), by polyphase products in bands -> [N, C, H', W'] channels-last; differentiable with
    respect to ``x``, ``demod`` and ``bias`` (not the filters). Cases it does not cover (a 2-D up-sampling filter, a
    missing filter, ``slope <= 0``) run the reference."""
    if demod is not None or bias is not None:
        d = demod[:, :, None, None] if demod is not None else x.new_ones(())
        b = bias.view(1, -1, 1, 1).to(x.dtype) if bias is not None else x.new_zeros(())
        x = torch.addcmul(b, x, d)  # [N, C, H, W]
    if fu is None or fu.ndim != 1 or fd is None or slope <= 0:
        return filtered_lrelu_ref(x, fu, fd, None, up, down, padding, gain, slope, clamp)
    if clamp is not None and x.device.type == "cpu" and slope <= 1 and \
            _peak(x) * up * up * gain * float(fu.abs().sum()) ** 2 <= clamp:
        clamp = None  # the up-sampled values cannot reach the clamp: skip a pass over the largest map
    x = x.contiguous(memory_format=torch.channels_last)
    fu, fd = fu.to(x.dtype), fd.to(x.dtype)
    if torch.is_grad_enabled() and x.requires_grad:
        return _FilteredLReLU.apply(x, fu, fd, up, down, tuple(padding), float(gain), float(slope), clamp)
    return _forward(x, fu, fd, _Plan(x, fu, fd, up, down, padding), gain, slope, clamp)


__all__ = ["filtered_lrelu", "BAND_BYTES"]
