"""Command line: ``python -m nada generate|adapt|invert|video|evaluate|download|doctor`` (also the ``nada``
command). Parsing and printing only; the work lives in the library."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from . import cli_adapt, cli_evaluate, cli_invert, cli_video, cli_weights
from .cli_args import CliError, parse_seeds, positive_int, unit_float
from .devices import pick_device
from .render import to_pil
from .runtime import configure_torch, tune_allocator
from .sampling import render_seeds
from .sources import load_source
from .styles import apply_style_file
from .weights import REGISTRY, CheckpointError, WeightsUnavailableError


def _sources_help() -> str:
    return ", ".join(n for n, a in REGISTRY.items() if a.kind == "generator")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser: ``generate`` here, ``adapt`` and ``invert`` registered by their modules."""
    parser = argparse.ArgumentParser(
        prog="nada" if Path(sys.argv[0]).name == "nada" else "python -m nada",  # console command or module
        description="Text-driven domain adaptation of StyleGAN2 generators (StyleGAN-NADA, re-implemented).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = sub.add_parser(
        "generate", help="render images from a generator or a trained style",
        description="Render images from a source generator (registry name or .pt path) or from a trained style.")
    gen.add_argument("--source", default="ffhq",
                     help=f"generator: a registry name ({_sources_help()}) or a rosinality .pt file (default: ffhq)")
    gen.add_argument("--style", default=None,
                     help="a style file (.safetensors from nada, or a StyleGAN-NADA .pt) or a published style name")
    gen.add_argument("--strength", type=unit_float, default=1.0,
                     help="style strength, 0 = source, 1 = adapted (default: 1)")
    gen.add_argument("--seed", type=parse_seeds, default=[0], metavar="SEEDS",
                     help="seed, range or list: 7, 0-7 or 1,5,9 (default: 0)")
    gen.add_argument("--truncation", type=unit_float, default=0.7,
                     help="truncation psi in [0, 1]; 1 = none (default: 0.7)")
    gen.add_argument("--batch", type=positive_int, default=4, help="images per forward pass (default: 4)")
    gen.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    gen.add_argument("-o", "--out", default="out.png",
                     help="output .png for one seed, or a folder (one seedNNNN.png per seed) (default: out.png)")
    gen.set_defaults(run=_run_generate)

    cli_adapt.register(sub)
    cli_invert.register(sub)
    cli_weights.register(sub)
    cli_evaluate.register(sub)
    cli_video.register(sub)
    return parser


def output_paths(out: str, seeds: list[int]) -> list[Path]:
    """One output file per seed: a single ``.png``/``.jpg`` for one seed, else files inside the folder ``out``."""
    path = Path(out)
    if len(seeds) == 1 and path.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp"}:
        return [path]
    if path.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp"}:
        raise CliError(f"{len(seeds)} seeds need an output folder, not the file '{out}'.")
    return [path / f"seed{s:04d}.png" for s in seeds]


def _run_generate(args: argparse.Namespace) -> int:
    paths = output_paths(args.out, args.seed)
    device = pick_device(args.device)
    generator = load_source(args.source, device)
    if args.style:
        generator = apply_style_file(generator, args.style, strength=args.strength, source_name=args.source)
    with torch.no_grad():
        images = render_seeds(generator, args.seed, truncation=args.truncation, batch=args.batch)
    for path, img in zip(paths, to_pil(images)):
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path)
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, run, turn known failures into a one-line message and a non-zero exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    tune_allocator()
    configure_torch()
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (CliError, WeightsUnavailableError, CheckpointError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
