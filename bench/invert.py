"""Inversion cases at the real sizes: e4e encode (IR-SE50 body, 18 codes), encode + 1024px decode, face alignment.

The e4e encoder has seeded random weights (``nada.invert.random_e4e``) and the generator is a randomly initialised
1024px StyleGAN2: speed does not depend on the values. Alignment uses the real dlib detector and landmark model
on scikit-image's astronaut photo (512x512); loading the predictor happens in setup and is not timed.

Run alone: ``python -m bench --cases e4e_enc,e4e_encdec,align``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from nada.align import FaceAligner
from nada.invert import encode_face, invert, random_e4e
from nada.model_store import serving_impl
from nada.nets.stylegan2 import Generator

from .common import tuner_figures


def _face() -> Image.Image:
    """A 256x256 RGB stand-in for an aligned face (the encoder's cost does not depend on the pixels)."""
    gen = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (256, 256, 3), generator=gen, dtype=torch.uint8)
    return Image.fromarray(pixels.numpy(), "RGB")


def _encoder(device: torch.device):
    encoder = random_e4e(n_latent=18, seed=0).to(device)
    latent_avg = torch.zeros(18, 512, device=device)
    return encoder, latent_avg


def e4e_enc(device: torch.device) -> Callable[[], object]:
    """Encode one aligned 256px face into W+ [1, 18, 512] (the face -> tensor step included)."""
    encoder, latent_avg = _encoder(device)
    face = _face()

    def run() -> torch.Tensor:
        return encode_face(face, encoder, latent_avg)

    return run


def e4e_encdec(device: torch.device) -> tuple[Callable[[], object], Callable[[], dict]]:
    """``invert(face, align=False)``: encode, then 1024px synthesis of the codes rendered to a PIL image."""
    encoder, latent_avg = _encoder(device)
    torch.manual_seed(0)
    generator = serving_impl(Generator(1024).to(device).eval().requires_grad_(False), device)  # as the app's
    face = _face()

    def run() -> object:
        return invert(face, encoder, latent_avg, generator, align=False)

    return run, lambda: tuner_figures(generator)


def _astronaut() -> Image.Image:
    try:
        from skimage import data

        return Image.fromarray(data.astronaut())
    except ImportError:  # the same photo, as stored with the reference fixtures ($NADA_FIXTURES, as in the tests)
        fixtures = os.environ.get("NADA_FIXTURES") or Path(__file__).resolve().parents[2] / "shared" / "fixtures"
        return Image.open(Path(fixtures) / "align" / "astronaut.png").convert("RGB")


def align(device: torch.device) -> Callable[[], object]:
    """FFHQ alignment of the astronaut photo at 256 (detector, landmarks, warp); CPU work whatever the device."""
    aligner = FaceAligner.load()
    photo = _astronaut()

    def run() -> Image.Image:
        return aligner.align(photo, 256)

    return run


CASES = {
    "e4e_enc": e4e_enc,
    "e4e_encdec": e4e_encdec,
    "align": align,
}
