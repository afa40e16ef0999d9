"""StyleGAN3's layer plan and its windowed-sinc filters, from the formulas of "Alias-Free Generative Adversarial
Networks" (Karras et al. 2021, section 3 and appendix F) as NVIDIA's public configs set them.

Every synthesis layer ``i`` has a cutoff ``f_c[i]`` and a minimum stopband ``f_t[i]`` on a geometric progression from
the first layer (2 and 2^2.1 cycles per image) to the last (half the image resolution, and that times 2^0.3), flat for
the last ``num_critical`` layers; its sampling rate is the power of two at or above ``2 f_t`` (at most the image
resolution), its transition half-width ``max(f_t, s/2) - f_c``, its size the sampling rate plus a 10-pixel margin on
each side (the last two: the image size), its channels ``min(channel_base / 2 / f_c, channel_max)``. A layer runs its
leaky ReLU at twice the larger of its input and output rates: it up-samples by ``up`` and down-samples by ``down``
with low-pass FIR filters of ``6 * factor`` taps: Kaiser-windowed sinc filters (separable, applied along each axis),
or for StyleGAN3-R's down-sampling a radially symmetric Kaiser-windowed jinc (a 2-D filter).

Filters are designed in float64 and returned as float32, as NVIDIA stores them (the state dict holds them as
buffers, so a loaded network uses the file's own filters).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def kaiser_atten(numtaps: int, width: float) -> float:
    """Stopband attenuation (dB) of a Kaiser-windowed filter of ``numtaps`` taps and transition ``width`` (a fraction
    of the Nyquist rate): Kaiser's empirical formula."""
    return 2.285 * (numtaps - 1) * math.pi * width + 7.95


def kaiser_beta(atten: float) -> float:
    """The Kaiser window's shape parameter for a stopband attenuation ``atten`` (dB): Kaiser's empirical formula."""
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    if atten > 21:
        return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    return 0.0


def kaiser_window(numtaps: int, beta: float) -> torch.Tensor:
    """The symmetric Kaiser window of ``numtaps`` samples, float64 [numtaps]: ``I0(beta sqrt(1 - t^2)) / I0(beta)``
    with ``t`` from -1 to 1."""
    t = torch.linspace(-1.0, 1.0, numtaps, dtype=torch.float64) if numtaps > 1 else torch.zeros(1, dtype=torch.float64)
    arg = beta * torch.sqrt((1 - t * t).clamp_min(0))
    return torch.special.i0(arg) / torch.special.i0(torch.tensor(beta, dtype=torch.float64))


def lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False) -> torch.Tensor | None:
    """A low-pass FIR filter, float32: ``numtaps`` taps, cutoff and transition ``width`` in the units of the sampling
    rate ``fs``. Separable ([numtaps]: a Kaiser-windowed sinc scaled to unit DC gain, as ``scipy.signal.firwin``
    designs it) or ``radial`` ([numtaps, numtaps]: a Kaiser-windowed jinc normalised to sum 1). None for one tap
    (the identity)."""
    if numtaps < 1:
        raise ValueError(f"numtaps must be at least 1, got {numtaps}.")
    if numtaps == 1:
        return None
    nyq = fs / 2
    beta = kaiser_beta(kaiser_atten(numtaps, width / nyq))
    window = kaiser_window(numtaps, beta)  # [T]
    if not radial:
        c = cutoff / nyq  # cutoff as a fraction of Nyquist
        m = torch.arange(numtaps, dtype=torch.float64) - (numtaps - 1) / 2
        h = c * torch.sinc(c * m) * window  # [T]
        return (h / h.sum()).to(torch.float32)
    x = (torch.arange(numtaps, dtype=torch.float64) - (numtaps - 1) / 2) / fs
    r = torch.hypot(x[None, :], x[:, None])  # [T, T]; never 0 for an even tap count
    f = torch.special.bessel_j1(2 * cutoff * math.pi * r) / (math.pi * r)
    f = f * torch.outer(window, window)
    return (f / f.sum()).to(torch.float32)


@dataclass(frozen=True)
class LayerPlan:
    """One synthesis layer's geometry: what the paper's formulas give for it."""

    name: str  # NVIDIA's attribute name, "L{idx}_{out_size}_{out_channels}"
    is_torgb: bool  # the final 1x1 layer to RGB (linear, no filters, no demodulation)
    is_critically_sampled: bool  # the last layers: cutoff at Nyquist (never a radial filter)
    in_channels: int
    out_channels: int
    in_size: int  # input feature map side, pixels
    out_size: int  # output feature map side, pixels
    in_sampling_rate: int
    out_sampling_rate: int
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    conv_kernel: int  # 3 (T) or 1 (R); 1 for ToRGB
    up: int  # up-sampling factor to the leaky ReLU's rate
    down: int  # down-sampling factor from it
    up_taps: int  # 1 = no filter
    down_taps: int
    down_radial: bool  # the down-sampling filter is radial (2-D)
    padding: tuple[int, int, int, int]  # x0, x1, y0, y1 on the up-sampled map (negative: crop)

    def up_filter(self) -> torch.Tensor | None:
        """The up-sampling filter [up_taps] (None for one tap)."""
        return lowpass_filter(self.up_taps, self.in_cutoff, self.in_half_width * 2, self.tmp_sampling_rate)

    def down_filter(self) -> torch.Tensor | None:
        """The down-sampling filter, [down_taps] or radial [down_taps, down_taps] (None for one tap)."""
        return lowpass_filter(self.down_taps, self.out_cutoff, self.out_half_width * 2, self.tmp_sampling_rate,
                              radial=self.down_radial)

    @property
    def tmp_sampling_rate(self) -> int:
        """The sampling rate the leaky ReLU runs at."""
        return self.in_sampling_rate * self.up


def plan_synthesis(img_resolution: int, img_channels: int = 3, channel_base: int = 32768, channel_max: int = 512,
                   num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2, first_stopband: float = 2**2.1,
                   last_stopband_rel: float = 2**0.3, margin_size: int = 10, conv_kernel: int = 3,
                   filter_size: int = 6, lrelu_upsampling: int = 2, use_radial_filters: bool = False,
                   ) -> tuple[dict, list[LayerPlan]]:
    """The Fourier input's settings (``channels``, ``size``, ``sampling_rate``, ``bandwidth``) and the plan of the
    ``num_layers + 1`` synthesis layers (the last is ToRGB), by the paper's formulas (NVIDIA's argument names)."""
    n = num_layers
    last_cutoff = img_resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    cutoffs, stopbands, rates, half_widths, sizes, channels = [], [], [], [], [], []
    for i in range(n + 1):
        e = min(i / (n - num_critical), 1.0)
        fc = first_cutoff * (last_cutoff / first_cutoff) ** e
        ft = first_stopband * (last_stopband / first_stopband) ** e
        s = 2.0 ** math.ceil(math.log2(min(ft * 2, img_resolution)))
        cutoffs.append(fc)
        stopbands.append(ft)
        rates.append(s)
        half_widths.append(max(ft, s / 2) - fc)
        sizes.append(int(s + margin_size * 2) if i < n - 1 else img_resolution)
        channels.append(int(round(min((channel_base / 2) / fc, channel_max))) if i < n else img_channels)
    source = {"channels": channels[0], "size": sizes[0], "sampling_rate": rates[0], "bandwidth": cutoffs[0]}
    layers = []
    for i in range(n + 1):
        p = max(i - 1, 0)
        torgb = i == n
        critical = i >= n - num_critical
        in_rate, out_rate = int(rates[p]), int(rates[i])
        tmp_rate = max(in_rate, out_rate) * (1 if torgb else lrelu_upsampling)
        up, down = tmp_rate // in_rate, tmp_rate // out_rate
        up_taps = filter_size * up if up > 1 and not torgb else 1
        down_taps = filter_size * down if down > 1 and not torgb else 1
        k = 1 if torgb else conv_kernel
        # Output size before down-sampling, less the up-sampled input after the full convolution, plus what the
        # two filters take off; split so that samples sit symmetrically (the paper's appendix C.3).
        total = (sizes[i] - 1) * down + 1 - (sizes[p] + k - 1) * up + up_taps + down_taps - 2
        lo = (total + up) // 2
        layers.append(LayerPlan(
            name=f"L{i}_{sizes[i]}_{channels[i]}", is_torgb=torgb, is_critically_sampled=critical,
            in_channels=channels[p], out_channels=channels[i], in_size=sizes[p], out_size=sizes[i],
            in_sampling_rate=in_rate, out_sampling_rate=out_rate, in_cutoff=cutoffs[p], out_cutoff=cutoffs[i],
            in_half_width=half_widths[p], out_half_width=half_widths[i], conv_kernel=k, up=up, down=down,
            up_taps=up_taps, down_taps=down_taps, down_radial=use_radial_filters and not critical,
            padding=(lo, total - lo, lo, total - lo)))
    return source, layers


__all__ = ["lowpass_filter", "kaiser_window", "kaiser_beta", "kaiser_atten", "LayerPlan", "plan_synthesis"]
