"""The e4e encoder (encoder4editing): a 256x256 face in [-1, 1] -> W+ codes [N, n_latent, 512].

An IR-SE50 body (shared with :mod:`nada.nets.irse`) gives three feature maps; a small feature pyramid feeds
one ``GradualStyleBlock`` per W+ row. Row 0 is a base code ``w0`` and every other row is ``w0`` plus its
own delta (at inference all deltas are active). ``latent_avg`` from the checkpoint is *not* added by
the encoder: callers add it, ``codes + latent_avg``, as the released model was trained to expect.
Reading a checkpoint file into an encoder is the library's job: :func:`nada.weights.load_e4e`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .irse import build_body, build_input_layer
from .stylegan2 import EqualLinear  # the e4e map-to-style head uses the same equalised linear layer

INPUT_SIZE = 256
# Body unit indices whose outputs feed the pyramid (IR-SE50): c1 128ch @64, c2 256ch @32, c3 512ch @16.
_TAPS_50 = (6, 20, 23)
_COARSE_END = 3  # rows [0, 3) read c3 (16x16)
_MIDDLE_END = 7  # rows [3, 7) read p2 (32x32); the rest read p1 (64x64)


class GradualStyleBlock(nn.Module):
    """log2(spatial) stride-2 conv + LeakyReLU(0.01) steps down to 1x1, then an EqualLinear: -> [N, 512]."""

    def __init__(self, in_channels: int, out_channels: int, spatial: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        layers: list[nn.Module] = []
        for i in range(int(math.log2(spatial))):
            layers += [
                nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, kernel_size=3, stride=2, padding=1),
                nn.LeakyReLU(0.01),
            ]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, spatial, spatial] -> [N, out_channels]."""
        x = self.convs(x)  # [N, out, 1, 1]
        return self.linear(x.reshape(-1, self.out_channels))


def _upsample_add(x: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    """Bilinear (align_corners=True) upsampling of ``x`` to ``lateral``'s size, plus ``lateral``."""
    return F.interpolate(x, size=lateral.shape[2:], mode="bilinear", align_corners=True) + lateral


class Encoder4Editing(nn.Module):
    """e4e encoder; ``state_dict()`` keys equal the checkpoint's ``encoder.*`` keys without the prefix."""

    def __init__(self, n_latent: int = 18, num_layers: int = 50, mode: str = "ir_se") -> None:
        super().__init__()
        if n_latent < 1:
            raise ValueError(f"n_latent must be positive, got {n_latent}.")
        if num_layers != 50:
            # The pyramid taps are defined for the 50-layer body only (the released encoders use it).
            raise ValueError(f"Encoder4Editing supports the 50-layer IR-SE body only, got num_layers={num_layers}.")
        self.n_latent = n_latent
        self.input_layer = build_input_layer()
        self.body = build_body(num_layers, mode)
        self.styles = nn.ModuleList(
            GradualStyleBlock(512, 512, 16 if i < _COARSE_END else 32 if i < _MIDDLE_END else 64)
            for i in range(n_latent)
        )
        self.latlayer1 = nn.Conv2d(256, 512, kernel_size=1)
        self.latlayer2 = nn.Conv2d(128, 512, kernel_size=1)

    def body_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The three body outputs the pyramid reads: c1 [N,128,64,64], c2 [N,256,32,32], c3 [N,512,16,16]."""
        if x.ndim != 4 or x.shape[1:] != (3, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"e4e expects aligned faces [N, 3, 256, 256] in [-1, 1], got {list(x.shape)}.")
        feats = self.input_layer(x)  # [N, 64, 256, 256]
        taps: list[torch.Tensor] = []
        for i, unit in enumerate(self.body):
            feats = unit(feats)
            if i in _TAPS_50:
                taps.append(feats)
        c1, c2, c3 = taps
        return c1, c2, c3

    def forward(self, x: torch.Tensor, stage: int | None = None) -> torch.Tensor:
        """W+ codes [N, n_latent, 512] of faces ``x`` [N, 3, 256, 256] in [-1, 1], before adding latent_avg.

        ``stage`` is e4e's progressive training stage: only deltas 1..stage are added (``None``: all, as at
        inference; 0: every row equals ``w0``).
        """
        c1, c2, c3 = self.body_features(x)  # [N,128,64,64], [N,256,32,32], [N,512,16,16]
        w0 = self.styles[0](c3)  # [N, 512]
        codes = w0.unsqueeze(1).repeat(1, self.n_latent, 1)  # [N, n_latent, 512]
        last = self.n_latent if stage is None else min(stage + 1, self.n_latent)
        deltas = [torch.zeros_like(w0)]
        features = c3
        p2 = None
        for i in range(1, last):
            if i == _COARSE_END:
                p2 = _upsample_add(c3, self.latlayer1(c2))  # [N, 512, 32, 32]
                features = p2
            elif i == _MIDDLE_END:
                features = _upsample_add(p2, self.latlayer2(c1))  # p1: [N, 512, 64, 64]
            deltas.append(self.styles[i](features))
        if last > 1:
            delta = torch.stack(deltas, dim=1)  # [N, last, 512]
            codes = torch.cat([codes[:, :last] + delta, codes[:, last:]], dim=1)
        return codes
