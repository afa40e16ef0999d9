"""``python -m nada invert``: align a photo's face, invert it with e4e, write the reconstruction and every style.

Outputs in the ``-o`` folder: ``aligned.png`` (the 256px encoder input), ``reconstruction.png``, one
``<style>.png`` per style, and ``codes.pt`` (the W+ codes, a [1, n_latent, 512] float32 tensor, latent_avg added;
``torch.load(..., weights_only=True)`` reads it). Everything is checked before the work starts: the photo is
decoded first (a file that is not an image fails in about a second, before any weights load), then every style is
loaded and checked against the source generator, then the face is found (before e4e loads); nothing is written until
the inversion is done, so a bad style or photo leaves no partial outputs.

``--tiny`` (hidden, for tests and offline demos) uses :func:`nada.invert.tiny_inversion_models`: a 256px
tiny-channel generator (14 codes of 512) and a randomly initialised e4e of the same 14 codes, because the 32px
tiny generator cannot read e4e's codes. Styles given with ``--tiny`` must have been made from that generator.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..align import SOFT_FACE_WARNING, AlignmentUnavailableError, FaceAligner
from ..e4e import load_e4e
from ..images import load_image
from ..invert import invert, prepare_face, render_codes, tiny_inversion_models
from ..model_store import load_source
from ..runtime import pick_device
from ..styles import apply_style, load_any_style, safe_style_name
from ..tiny import TINY_INVERT as TINY_SOURCE  # the source name recorded for / checked against styles in --tiny mode
from ..weights import REGISTRY
from .args import CliError, check_writable, unit_float

FIXED_OUTPUTS = ("aligned", "reconstruction", "codes")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``invert`` subcommand."""
    p = sub.add_parser(
        "invert", help="invert a face photo with e4e and render it in styles",
        description="Find and align the face in a photo (FFHQ alignment), invert it into W+ with the e4e encoder, "
                    "and write the aligned face, the reconstruction, the photo in each style, and the codes.")
    p.add_argument("image", help="the photo (JPEG, PNG, WebP, ...)")
    p.add_argument("--styles", default="",
                   help="comma-separated styles: .safetensors files, saved style names, published names "
                        "(e.g. nada-pixar) or StyleGAN-NADA .pt files")
    p.add_argument("--source", default="ffhq", help="source generator: registry name or .pt path (default: ffhq)")
    p.add_argument("--e4e", default="e4e-ffhq", help="e4e checkpoint: registry name or path (default: e4e-ffhq)")
    p.add_argument("--strength", type=unit_float, default=1.0,
                   help="style strength, 0 = source, 1 = adapted (default: 1)")
    p.add_argument("--no-align", dest="align", action="store_false",
                   help="the photo is already an FFHQ-aligned square face crop")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("-o", "--out", default="out", help="output folder (default: out)")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # random stand-in models, for tests
    p.set_defaults(run=run_invert)


def style_list(text: str) -> list[str]:
    """"a.safetensors, nada-pixar" -> ["a.safetensors", "nada-pixar"] (empty items dropped)."""
    return [s.strip() for s in text.split(",") if s.strip()]


def output_names(styles: list[str]) -> list[str]:
    """A distinct, safe file stem per style: the file's stem or the name, slugged; clashes get -2, -3, ..."""
    taken = set(FIXED_OUTPUTS)
    names = []
    for s in styles:
        try:
            base = safe_style_name(Path(s).stem if Path(s).suffix else Path(s).name)
        except ValueError:
            base = "style"
        name, i = base, 2
        while name in taken:
            name, i = f"{base}-{i}", i + 1
        taken.add(name)
        names.append(name)
    return names


def _aligned_face(args: argparse.Namespace, photo):
    """The 256px encoder input (aligned, or the given crop with --no-align) of the decoded ``photo``."""
    try:
        aligner = FaceAligner.load() if args.align else None
    except AlignmentUnavailableError as exc:
        raise CliError(f"{exc} (or pass --no-align with an aligned face crop)") from exc
    face = prepare_face(photo, aligner, args.align)
    if "nada_soft_face" in face.info:
        print(f"warning: {SOFT_FACE_WARNING.format(px=face.info['nada_soft_face'])}", file=sys.stderr)
    return face


def run_invert(args: argparse.Namespace) -> int:
    """Check everything first (the output folder, the photo, the generator and every style), then align, invert and
    write: a bad style or photo fails before any alignment, inversion or output. Prints each written path."""
    styles = style_list(args.styles)
    names = output_names(styles)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"The output '{out}' exists and is not a folder.")
    check_writable(out / "aligned.png", "output folder", create=False)
    asset = REGISTRY.get(str(args.source))
    if not args.tiny and asset is not None and not asset.faces:
        raise ValueError(f"Inversion needs a face generator; '{args.source}' is not one (use --source ffhq).")
    photo = load_image(args.image)  # not an image: one-line error before anything heavy loads
    device = pick_device(args.device)
    if args.tiny:
        encoder, latent_avg, generator = tiny_inversion_models(device=device)
        source_name = TINY_SOURCE
    else:
        generator = load_source(args.source, device)
        encoder, latent_avg = None, None
        source_name = str(args.source)
    loaded = [load_any_style(style, generator, source_name) for style in styles]  # each checked against the source
    face = _aligned_face(args, photo)  # no face: fails here, before e4e loads
    if encoder is None:
        encoder, latent_avg = load_e4e(args.e4e, device)
    inversion = invert(face, encoder, latent_avg, generator, align=False)
    del encoder  # ~1 GB: not needed for rendering the styles
    out.mkdir(parents=True, exist_ok=True)
    for name, image in (("aligned", inversion.aligned), ("reconstruction", inversion.reconstruction)):
        image.save(out / f"{name}.png")
        print(out / f"{name}.png")
    codes_path = out / "codes.pt"
    torch.save(inversion.codes.detach().to("cpu", torch.float32).contiguous(), codes_path)
    print(codes_path)
    for style, name in zip(loaded, names, strict=True):  # one styled copy in memory at a time
        styled = apply_style(generator, style, args.strength, check_source=False, source_name=source_name)
        path = out / f"{name}.png"
        render_codes(styled, inversion.codes).save(path)
        print(path)
        del styled
    return 0
