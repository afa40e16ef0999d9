"""``python -m nada video``: an MP4 that walks through seeds while a style fades in (or at one strength), morphs
from style to style (``--style a,b,c``), or shows several styles side by side (``--grid``)."""

from __future__ import annotations

import argparse
import sys

from ..model_store import load_source
from ..runtime import pick_device
from ..styles import load_any_style
from ..tiny import TINY_NAME
from ..video import VideoPlan, render_video
from .args import CliError, parse_seeds, positive_int, unit_float


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``video`` subcommand."""
    p = sub.add_parser(
        "video", help="render an MP4: a walk through seeds, the style fading in",
        description="Render an H.264 MP4 that walks smoothly through the given seeds (interpolating in W) while the "
                    "style strength goes from the source (0) to --strength, or, with --no-ramp, a walk at one "
                    "strength. Without --style it shows the source generator. With several styles (--style a,b,c) "
                    "the video starts in the first and morphs through the others along the same walk; with --grid "
                    "it shows them side by side on the same seeds instead.")
    p.add_argument("--style", default=None, metavar="STYLE,...",
                   help="a style file (.safetensors from nada, or a StyleGAN-NADA .pt) or a published style name; "
                        "several, comma-separated, to morph through (or to tile with --grid); 'source' names the "
                        "source generator itself")
    p.add_argument("--grid", action="store_true",
                   help="show the styles side by side on the same walk (a near-square grid) instead of morphing")
    p.add_argument("--source", default="ffhq", help="generator: registry name or .pt/.pkl path (default: ffhq)")
    p.add_argument("--seed", type=parse_seeds, default=[0, 1, 2, 3], metavar="SEEDS",
                   help="the seeds to walk through: 7, 0-7 or 1,5,9 (default: 0-3)")
    p.add_argument("--seconds", type=float, default=2.0, help="seconds from one seed to the next (default: 2)")
    p.add_argument("--fps", type=positive_int, default=24, help="frames per second (default: 24)")
    p.add_argument("--truncation", type=unit_float, default=0.7, help="truncation psi (default: 0.7)")
    p.add_argument("--strength", type=unit_float, default=1.0, help="the style's full strength (default: 1)")
    p.add_argument("--ramp", action=argparse.BooleanOptionalAction, default=True,
                   help="fade the style in from the source over the video (default: on)")
    p.add_argument("--size", type=int, default=None, help="frame side in pixels, even (default: the generator's)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("-o", "--out", default="video.mp4", help="output .mp4 (default: video.mp4)")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the tiny generator, for tests
    p.set_defaults(run=run_video)


def run_video(args: argparse.Namespace) -> int:
    """Check the plan, load the generator and the style, render with a progress bar, print the path."""
    from tqdm import tqdm  # third-party, only the progress bar needs it

    if not str(args.out).lower().endswith(".mp4"):
        raise ValueError(f"The video file must end in .mp4, got '{args.out}'.")
    names = [n.strip() for n in str(args.style).split(",")] if args.style else []
    if any(not n for n in names):
        raise CliError(f"empty style name in '{args.style}'; separate styles with single commas.")
    if args.grid and len(names) < 2:
        raise CliError("--grid shows several styles side by side: give two or more, e.g. --style a,b.")
    plan = VideoPlan(seeds=tuple(args.seed), seconds_per_seed=args.seconds, fps=args.fps,
                     truncation=args.truncation, ramp=args.ramp, strength=args.strength, size=args.size,
                     grid=args.grid)
    plan.validate()  # before any weights load
    source_name = TINY_NAME if args.tiny else str(args.source)
    generator = load_source(source_name, pick_device(args.device))
    styles = [None if n == "source" else load_any_style(n, generator, source_name) for n in names]
    chosen = styles if len(styles) > 1 else (styles[0] if styles else None)
    with tqdm(total=plan.frames, unit="frame", file=sys.stderr, dynamic_ncols=True) as bar:
        path = render_video(generator, chosen, plan, args.out, progress=lambda n: bar.update(n - bar.n))
    print(path)
    return 0


__all__ = ["register", "run_video"]
