"""Real photos into W+: align the face (FFHQ crop), encode it with e4e, reconstruct it, render it in any style.

``invert`` returns an :class:`Inversion` (aligned face, W+ codes, reconstruction). The reconstruction and every
styled image go through :func:`render_codes`, i.e. ``generator.synthesis(codes, noise_mode="const")`` and
``nada.render.to_pil``: the same generator path as Generate. ``stylize`` renders the codes through an adapted
generator, blending source and adapted *weights* by ``strength`` (reusing :mod:`nada.styles`).

Name note: :func:`nada.styles.apply_style` turns (source generator, Style) into a styled generator. Rendering an
inversion in a style is :func:`stylize` here; ``nada.invert.apply_style(inversion, style_generator, strength)`` is
kept as an alias of it, for callers that know it by that name.

Devices: the encoder runs where its weights are, the generator where its weights are; nothing picks a device.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from PIL import Image

from . import render
from . import styles as _styles
from .align import FaceAligner
from .images import ImageInputError, ImageSource, load_image
from .nets.e4e import INPUT_SIZE, Encoder4Editing
from .nets.stylegan2 import Generator
from .tiny import tiny_generator

STYLE_DIM = 512  # e4e codes are 512-d W vectors
SQUARE_TOLERANCE = 0.1  # --no-align input may be up to 10% off square (it is resized to 256x256)


@dataclass
class Inversion:
    """One inverted photo."""

    aligned: Image.Image  # the 256x256 RGB face the encoder saw (FFHQ-aligned unless align=False)
    codes: torch.Tensor  # [1, n_latent, 512] W+ codes, latent_avg added, detached, on the generator's device
    reconstruction: Image.Image  # render_codes(generator, codes): the photo as the generator draws it


# ------------------------------------------------------------------------------------------------ helpers
def face_tensor(face: Image.Image) -> torch.Tensor:
    """A 256x256 RGB face -> [1, 3, 256, 256] float32 in [-1, 1], computed as e4e does: (u8 / 255 - 0.5) / 0.5."""
    if face.mode != "RGB" or face.size != (INPUT_SIZE, INPUT_SIZE):
        raise ValueError(f"Expected a {INPUT_SIZE}x{INPUT_SIZE} RGB face, got {face.size[0]}x{face.size[1]} "
                         f"{face.mode}.")
    u8 = torch.from_numpy(np.array(face, dtype=np.uint8))  # [256, 256, 3]
    x = u8.permute(2, 0, 1).unsqueeze(0).float()  # [1, 3, 256, 256]
    return (x / 255.0 - 0.5) / 0.5


def prepare_face(image: ImageSource | Image.Image, aligner: FaceAligner | None = None, align: bool = True
                 ) -> Image.Image:
    """The encoder's input image: FFHQ-aligned at 256, or (align=False) the given face crop resized to 256."""
    if align:
        aligner = aligner if aligner is not None else FaceAligner.load()
        return aligner.align(image, output_size=INPUT_SIZE)
    face = load_image(image)
    w, h = face.size
    if abs(w - h) > SQUARE_TOLERANCE * max(w, h):
        raise ImageInputError(
            f"Without alignment the photo must already be a square, FFHQ-aligned face crop; this one is {w}x{h}. "
            "Turn alignment on (drop --no-align) to find and crop the face automatically.")
    if face.size != (INPUT_SIZE, INPUT_SIZE):  # what e4e's Resize((256, 256)) does to a PIL image
        face = face.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR)
    return face


def _check_models(encoder: Encoder4Editing, latent_avg: torch.Tensor, generator: Generator) -> torch.Tensor:
    """Check that encoder, latent_avg and generator fit together; latent_avg as [1, n_latent, 512]."""
    n_enc = int(getattr(encoder, "n_latent", -1))
    if n_enc != generator.n_latent:
        raise ValueError(
            f"The e4e encoder gives {n_enc} W+ codes per face, but this {generator.size}px generator reads "
            f"{generator.n_latent}. Use an encoder trained for this generator (e4e-ffhq is for the 1024px FFHQ "
            "generator, 18 codes).")
    if generator.style_dim != STYLE_DIM:
        raise ValueError(f"e4e gives {STYLE_DIM}-d codes, but the generator's style dimension is "
                         f"{generator.style_dim}.")
    if not isinstance(latent_avg, torch.Tensor):
        raise ValueError(f"latent_avg must be a tensor, got a {type(latent_avg).__name__}.")
    shape = tuple(latent_avg.shape)
    if shape in ((STYLE_DIM,), (1, STYLE_DIM)):
        return latent_avg.reshape(1, 1, STYLE_DIM).expand(1, n_enc, STYLE_DIM)
    if shape in ((n_enc, STYLE_DIM), (1, n_enc, STYLE_DIM)):
        return latent_avg.reshape(1, n_enc, STYLE_DIM)
    raise ValueError(f"latent_avg has shape {list(shape)}; expected [{n_enc}, {STYLE_DIM}] (or one [512] row).")


def _param(module: torch.nn.Module) -> torch.Tensor:
    """Any parameter of ``module``: tells its device and dtype."""
    return next(module.parameters())


@torch.no_grad()
def encode_face(face: Image.Image, encoder: Encoder4Editing, latent_avg: torch.Tensor) -> torch.Tensor:
    """W+ codes of a 256x256 aligned face: ``encoder(x) + latent_avg`` -> [1, n_latent, 512] on the encoder's device.

    The encoder runs in eval mode (its previous mode is restored afterwards) without gradients."""
    ref = _param(encoder)
    x = face_tensor(face).to(ref.device, ref.dtype)  # [1, 3, 256, 256]
    was_training = encoder.training
    encoder.eval()
    try:
        codes = encoder(x)  # [1, n_latent, 512]
    finally:
        encoder.train(was_training)
    avg = latent_avg.to(codes.device, codes.dtype)
    if avg.ndim == 2:
        avg = avg.unsqueeze(0)  # [1, n_latent, 512]
    return codes + avg


@torch.no_grad()
def render_codes(generator: Generator, codes: torch.Tensor) -> Image.Image:
    """W+ codes [1, n_latent, 512] -> PIL image via ``generator.synthesis(codes, noise_mode="const")`` and to_pil."""
    ref = next(generator.parameters())  # the generator's device and dtype
    img = generator.synthesis(codes.to(ref.device, ref.dtype), noise_mode="const")  # [1, 3, size, size]
    return render.to_pil(img)[0]


# ----------------------------------------------------------------------------------------------- inversion
def invert(image: ImageSource | Image.Image, encoder: Encoder4Editing, latent_avg: torch.Tensor, generator: Generator,
           aligner: FaceAligner | None = None, align: bool = True) -> Inversion:
    """Align the face in ``image`` (``aligner``, loaded if None), encode it into W+ and reconstruct it.

    ``latent_avg`` is the e4e checkpoint's own [n_latent, 512] tensor. ``align=False`` takes ``image`` as an
    already aligned square face crop. Raises ``ImageInputError`` (not an image), ``NoFaceError``/``FaceTooSmallError``
    (no usable face) and ``ValueError`` (encoder, latent_avg and generator do not fit together)."""
    avg = _check_models(encoder, latent_avg, generator)  # before the (slower) alignment
    face = prepare_face(image, aligner, align)
    codes = encode_face(face, encoder, avg)  # [1, n_latent, 512]
    codes = codes.to(generator.device).detach()
    return Inversion(aligned=face, codes=codes, reconstruction=render_codes(generator, codes))


# ------------------------------------------------------------------------------------------------- styles
def _check_strength(strength: float) -> float:
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 <= float(strength) <= 1.0:
        raise ValueError(f"Style strength must be between 0 (source) and 1 (full style), got {strength!r}.")
    return float(strength)


def blend_generators(source: Generator, adapted: Generator, strength: float) -> Generator:
    """A copy of ``source`` whose weights are ``source + strength * (adapted - source)`` (0 = source, 1 = adapted).

    Built with :func:`nada.styles.style_from_generators` and :func:`nada.styles.apply_style`; neither input changes."""
    strength = _check_strength(strength)
    style = _styles.style_from_generators(source, adapted, {"source": "inversion source"})
    return _styles.apply_style(source, style, strength, check_source=False)


def stylize(inversion: Inversion, style_generator: Generator | _styles.Style, strength: float = 1.0,
            source: Generator | None = None) -> Image.Image:
    """The inverted photo drawn by an adapted generator (or a ``Style`` applied to ``source``).

    ``strength`` interpolates the generator *weights* between ``source`` (0) and the adapted one (1); below 1 the
    source generator (the one the photo was inverted with) must be given. With a ``Style`` it always must."""
    strength = _check_strength(strength)
    if isinstance(style_generator, _styles.Style):
        if source is None:
            raise ValueError("Rendering a Style needs the source generator it was trained from (source=...).")
        return render_codes(_styles.apply_style(source, style_generator, strength), inversion.codes)
    if not isinstance(style_generator, Generator):
        raise TypeError(f"Expected a Generator or a Style, got a {type(style_generator).__name__}.")
    if strength == 1.0:
        return render_codes(style_generator, inversion.codes)
    if source is None:
        raise ValueError(f"Style strength {strength} blends source and adapted weights, so the source generator "
                         "is needed (source=...).")
    return render_codes(blend_generators(source, style_generator, strength), inversion.codes)


def apply_style(inversion: Inversion, style_generator: Generator | _styles.Style, strength: float = 1.0,
                source: Generator | None = None) -> Image.Image:
    """Alias of :func:`stylize` (another name for it; not to be confused with :func:`nada.styles.apply_style`)."""
    return stylize(inversion, style_generator, strength, source)


# ---------------------------------------------------------------------------------------- offline stand-ins
TINY_INVERT_GENERATOR = {"size": 256, "style_dim": STYLE_DIM}  # n_latent 14, 16 channels (nada.tiny's width)


def random_e4e(n_latent: int = 14, seed: int = 0) -> Encoder4Editing:
    """The real e4e architecture with seeded random weights (no checkpoint), eval mode and frozen.

    Weights follow fan-in scaling so that activations stay O(1): BatchNorm near identity, PReLU 0.25, convs
    ``N / sqrt(fan_in)``, EqualLinear ``N`` (it rescales itself), biases ``0.1 N``. ~1 s to build on a CPU."""
    gen = torch.Generator().manual_seed(seed)
    with torch.device("meta"):  # skip the default init; every tensor is drawn below
        encoder = Encoder4Editing(n_latent=n_latent)
    shapes = {k: (tuple(v.shape), v.dtype) for k, v in encoder.state_dict().items()}
    state: dict[str, torch.Tensor] = {}
    for key, (shape, dtype) in shapes.items():
        parent, _, name = key.rpartition(".")
        batchnorm = f"{parent}.running_mean" in shapes
        n = partial(torch.randn, shape, generator=gen)  # N: a fresh standard-normal draw of this tensor's shape
        if name == "num_batches_tracked":
            state[key] = torch.zeros(shape, dtype=dtype)
        elif name == "running_mean" or (batchnorm and name == "bias"):
            state[key] = 0.1 * n()
        elif name == "running_var":
            state[key] = 1.0 + 0.1 * n().abs()
        elif batchnorm and name == "weight":
            state[key] = 1.0 + 0.1 * n()
        elif name == "weight" and len(shape) == 1:  # PReLU slopes
            state[key] = torch.full(shape, 0.25)
        elif name == "bias":
            state[key] = 0.1 * n()
        elif key.endswith(".linear.weight"):  # e4e EqualLinear: scaled at run time
            state[key] = n()
        else:
            state[key] = n() / float(np.sqrt(np.prod(shape[1:])))
    encoder.load_state_dict(state, strict=True, assign=True)
    return encoder.float().eval().requires_grad_(False)


def tiny_inversion_models(seed: int = 0, device: torch.device | str = "cpu"
                          ) -> tuple[Encoder4Editing, torch.Tensor, Generator]:
    """Offline stand-ins that fit together: (random e4e with 14 codes, latent_avg [14, 512], 256px tiny generator).

    The generator is ``nada.tiny.tiny_generator(size=256, style_dim=512)`` (16 channels, n_latent 14), since the
    32px tiny generator reads 8 codes of 32 dims and e4e always gives 512-d codes. ``latent_avg`` is the
    generator's own mean W repeated, as e4e's is for its generator. Used by ``--tiny`` and the tests."""
    generator = tiny_generator(seed, **TINY_INVERT_GENERATOR).to(device)
    encoder = random_e4e(generator.n_latent, seed).to(device)
    latent_avg = generator.mean_latent().repeat(generator.n_latent, 1)  # [14, 512]
    return encoder, latent_avg, generator


__all__ = [
    "Inversion", "invert", "prepare_face", "encode_face", "face_tensor", "render_codes", "stylize", "apply_style",
    "blend_generators", "random_e4e", "tiny_inversion_models", "TINY_INVERT_GENERATOR",
]
