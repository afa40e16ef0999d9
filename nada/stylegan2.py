"""Old import path of :mod:`nada.nets.stylegan2` (the StyleGAN2 generator), kept for one release."""

import warnings

from .nets.stylegan2 import (
    CONV_IMPLS,
    NOISE_MODES,
    OFFSET_FORMS,
    SQRT2,
    Blur,
    ConstantInput,
    EqualLinear,
    FusedLeakyReLU,
    Generator,
    ModulatedConv2d,
    NoiseInjection,
    PixelNorm,
    StyledConv,
    ToRGB,
    Upsample,
    channels_for,
    mix_latents,
    seeded_z,
    truncate,
)

warnings.warn("nada.stylegan2 moved to nada.nets.stylegan2; the old path works for one release",
              DeprecationWarning, stacklevel=2)

__all__ = [
    "CONV_IMPLS", "NOISE_MODES", "OFFSET_FORMS", "SQRT2", "Blur", "ConstantInput", "EqualLinear", "FusedLeakyReLU",
    "Generator", "ModulatedConv2d", "NoiseInjection", "PixelNorm", "StyledConv", "ToRGB", "Upsample", "channels_for",
    "mix_latents", "seeded_z", "truncate",
]
