"""``python -m nada invert``: align a photo's face, invert it with e4e, write the reconstruction and every style.

Outputs in the ``-o`` folder: ``aligned.png`` (the 256px encoder input), ``reconstruction.png``, one
``<style>.png`` per style, and ``codes.pt`` (the W+ codes, a [1, n_latent, 512] float32 tensor, latent_avg added;
``torch.load(..., weights_only=True)`` reads it). Everything is checked before the work starts: the photo is
decoded first (a file that is not an image fails in about a second, before any weights load), then every style is
loaded and checked against the source generator, then the face is found (before e4e loads); nothing is written until
the inversion is done, so a bad style or photo leaves no partial outputs.

``--edit NAME[:STRENGTH]`` edits the face before it is drawn: a preset (``smile``, ``older``, ...; see
``nada edit presets``), free text (what the face should become, or ``"from -> to"``), or an edit file from
``nada edit learn`` (refused when learned on another generator). A preset or text is learned once and cached in the
weights cache; then ``edited.png`` is the edited reconstruction and every style shows the edited face.
``--video clip.mp4`` also writes a video: the face holds in each stop (the reconstruction, then each style) while
the edit goes forth and back, then morphs to the next; ``--gif`` adds ``clip.gif`` beside it for sharing.

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
from ..edits import (
    EditConfig,
    apply_edit,
    cache_path,
    cached_edit,
    check_strength,
    edit_prompts,
    load_edit,
    make_edit,
    save_edit,
    verify_edit,
)
from ..images import load_image
from ..invert import invert, prepare_face, render_codes, tiny_inversion_models
from ..model_store import load_source
from ..runtime import pick_device
from ..styles import apply_style, generator_fingerprint, load_any_style, safe_style_name
from ..tiny import TINY_INVERT as TINY_SOURCE  # the source name recorded for / checked against styles in --tiny mode
from ..video import PhotoVideoPlan, render_photo_video
from ..weights import REGISTRY, load_e4e
from .args import CliError, check_writable, positive_int, unit_float
from .edit import TINY_STEPS, learn_with_bar, load_edit_models

FIXED_OUTPUTS = ("aligned", "reconstruction", "codes", "edited")
EDIT_SUFFIXES = (".pt", ".pth", ".safetensors")  # an --edit ending in one of these names an edit file


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
    p.add_argument("--source", default="ffhq", help="source generator: registry name or .pt/.pkl path (default: ffhq)")
    p.add_argument("--e4e", default="e4e-ffhq", help="e4e checkpoint: registry name or path (default: e4e-ffhq)")
    p.add_argument("--strength", type=unit_float, default=1.0,
                   help="style strength, 0 = source, 1 = adapted (default: 1)")
    p.add_argument("--no-align", dest="align", action="store_false",
                   help="the photo is already an FFHQ-aligned square face crop")
    p.add_argument("--edit", type=edit_arg, default=None, metavar="NAME[:STRENGTH]",
                   help="edit the face: a preset (smile, older, younger, glasses, beard, long hair), free text, or an "
                        "edit file from `nada edit learn`; STRENGTH from -3 to 3, default 1 (e.g. smile:1.5)")
    p.add_argument("--clip", default=",".join(EditConfig.clip_models),
                   help="CLIP models that learn a preset or text edit, comma-separated (default: clip-vit-b32)")
    p.add_argument("--video", default=None, metavar="FILE.mp4",
                   help="also write a video: the face in each style in turn, the edit going forth and back")
    p.add_argument("--gif", action="store_true", help="with --video, also write a GIF beside it (for sharing)")
    p.add_argument("--fps", type=positive_int, default=24, help="video frames per second (default: 24)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("-o", "--out", default="out", help="output folder (default: out)")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # random stand-in models, for tests
    p.set_defaults(run=run_invert)


def edit_arg(text: str) -> tuple[str, float]:
    """"smile:1.5" -> ("smile", 1.5); "smile" -> ("smile", 1.0); the strength from -3 to 3, the name not empty."""
    name, sep, tail = text.rpartition(":")
    strength = 1.0
    try:
        strength = float(tail) if sep else strength
    except ValueError:
        sep = ""  # a colon inside free text
    name = name if sep else text
    if not name.strip():
        raise argparse.ArgumentTypeError("the edit is empty: give a preset (e.g. smile), text or an edit file, "
                                         "optionally with :STRENGTH")
    try:
        return name.strip(), check_strength(strength)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def edit_source(name: str) -> Path | tuple[str, str]:
    """An edit file's path, or the (from, to) texts of a preset or free text; checked, nothing loaded."""
    path = Path(name).expanduser()
    if path.is_file() or path.suffix.lower() in EDIT_SUFFIXES:
        if not path.is_file():
            raise CliError(f"the edit file '{path}' does not exist (learn one with: nada edit learn ... -o {path})")
        return path
    return edit_prompts(name)


def video_paths(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """(MP4, GIF) paths of --video/--gif, each checked writable before any work; (None, None) without --video."""
    if args.video is None:
        if args.gif:
            raise CliError("--gif comes with --video FILE.mp4 (the GIF is written beside the video)")
        return None, None
    mp4 = Path(args.video)
    if mp4.suffix.lower() != ".mp4":
        raise CliError(f"the video file must end in .mp4, got '{mp4}'")
    gif = mp4.with_suffix(".gif") if args.gif else None
    check_writable(mp4, "video", create=False)
    if gif is not None:
        check_writable(gif, "GIF", create=False)
    return mp4, gif


def edit_direction(args: argparse.Namespace, spec: Path | tuple[str, str], generator, source_name: str,
                   device: torch.device) -> torch.Tensor:
    """The direction ``[n_latent, 512]`` of --edit: an edit file's (already verified), else from the cache, else
    learned now (with a progress bar) and cached."""
    if isinstance(spec, Path):
        return load_edit(spec).direction
    clips = ("tiny",) if args.tiny else tuple(c.strip() for c in args.clip.split(",") if c.strip())
    config = EditConfig(source_text=spec[0], target_text=spec[1], clip_models=clips,
                        **({"steps": TINY_STEPS} if args.tiny else {}))
    fingerprint = generator_fingerprint(generator)
    for identity in (True, False):
        found = cached_edit(fingerprint, config, identity)
        if found is not None:
            return found.direction
    _, _, clip_models, id_loss = load_edit_models(args.source, config, device, args.tiny)
    print(f"learning the edit '{spec[0]}' -> '{spec[1]}' (once; it is cached for this generator)", file=sys.stderr)
    last = learn_with_bar(generator, clip_models, config, id_loss, spec[1])
    edit = make_edit(last.direction, generator, config, source=source_name, fingerprint=fingerprint,
                     identity=id_loss is not None, seconds=round(last.elapsed_s, 2))
    save_edit(edit, cache_path(fingerprint, config, id_loss is not None))
    return last.direction


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
    mp4, gif = video_paths(args)
    spec = edit_source(args.edit[0]) if args.edit else None  # empty, too long or missing: before any loading
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
    if isinstance(spec, Path):
        verify_edit(load_edit(spec), generator, source_name)  # another generator's edit: refused before any work
    face = _aligned_face(args, photo)  # no face: fails here, before e4e loads
    direction = edit_direction(args, spec, generator, source_name, device) if spec is not None else None
    if encoder is None:
        encoder, latent_avg = load_e4e(args.e4e, device)
    inversion = invert(face, encoder, latent_avg, generator, align=False)
    del encoder  # ~1 GB: not needed for rendering the styles
    codes = inversion.codes if direction is None else apply_edit(inversion.codes, direction, args.edit[1])
    out.mkdir(parents=True, exist_ok=True)
    for name, image in (("aligned", inversion.aligned), ("reconstruction", inversion.reconstruction)):
        image.save(out / f"{name}.png")
        print(out / f"{name}.png")
    codes_path = out / "codes.pt"
    torch.save(inversion.codes.detach().to("cpu", torch.float32).contiguous(), codes_path)
    print(codes_path)
    if direction is not None:
        render_codes(generator, codes).save(out / "edited.png")
        print(out / "edited.png")
    for style, name in zip(loaded, names, strict=True):  # one styled copy in memory at a time
        styled = apply_style(generator, style, args.strength, check_source=False, source_name=source_name)
        path = out / f"{name}.png"
        render_codes(styled, codes).save(path)
        print(path)
        del styled
    if mp4 is not None:
        write_video(args, generator, loaded, inversion.codes, direction, mp4, gif)
    return 0


def write_video(args: argparse.Namespace, generator, styles: list, codes: torch.Tensor,
                direction: torch.Tensor | None, mp4: Path, gif: Path | None) -> None:
    """The photo's video (and GIF) with a progress bar; prints the paths."""
    from tqdm import tqdm

    plan = PhotoVideoPlan(fps=args.fps, edit_strength=args.edit[1] if direction is not None else 0.0,
                          style_strength=args.strength, size=256 if args.tiny else None)
    plan.validate(len(styles) + 1)
    with tqdm(total=plan.frames(len(styles) + 1), unit="frame", file=sys.stderr, dynamic_ncols=True) as bar:
        paths = render_photo_video(generator, styles, codes, mp4, plan, direction, gif,
                                   progress=lambda done, total: bar.update(done - bar.n))
    for path in paths:
        if path is not None:
            print(path)
