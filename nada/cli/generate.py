"""``python -m nada generate``: render seeds from a source generator or a trained style into PNG files."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from ..model_store import load_source
from ..nets.stylegan2 import Generator
from ..render import render_seeds, to_pil
from ..runtime import pick_device
from ..styles import Style, apply_style, blend, load_any_style
from ..weights import REGISTRY
from .args import CliError, parse_seeds, positive_int, unit_float


def _sources_help() -> str:
    return ", ".join(n for n, a in REGISTRY.items() if a.kind == "generator")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``generate`` subcommand."""
    gen = sub.add_parser(
        "generate", help="render images from a generator or a trained style",
        description="Render images from a source generator (registry name or .pt/.pkl path) or from a trained style.")
    gen.add_argument("--source", default="ffhq",
                     help=f"generator: a registry name ({_sources_help()}) or a .pt/.pkl file (default: ffhq)")
    gen.add_argument("--style", default=None, metavar="STYLE[:WEIGHT],...",
                     help="a style file (.safetensors from nada, or a StyleGAN-NADA .pt) or a published style name; "
                          "a blend of styles with weights: a.safetensors:0.6,nada-pixar:0.4 (weights may be "
                          "negative: away from a style)")
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
    gen.set_defaults(run=run)


def output_paths(out: str, seeds: list[int]) -> list[Path]:
    """One output file per seed: a single ``.png``/``.jpg`` for one seed, else files inside the folder ``out``."""
    path = Path(out)
    if len(seeds) == 1 and path.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp"}:
        return [path]
    if path.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp"}:
        raise CliError(f"{len(seeds)} seeds need an output folder, not the file '{out}'.")
    return [path / f"seed{s:04d}.png" for s in seeds]


def parse_style_spec(text: str) -> list[tuple[str, float | None]]:
    """``"a.safetensors:0.6,nada-pixar:0.4"`` -> [("a.safetensors", 0.6), ("nada-pixar", 0.4)]; a part without a
    ``:number`` suffix has weight None (``"C:/x.pt"`` keeps its drive letter)."""
    out: list[tuple[str, float | None]] = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            raise CliError(f"empty style name in '{text}'; separate styles with single commas.")
        name, sep, tail = part.rpartition(":")
        try:
            weight = float(tail) if sep and name else None
        except ValueError:
            weight = None
        if weight is not None and not math.isfinite(weight):
            raise CliError(f"the weight of '{name}' must be a finite number, got '{tail}'.")
        out.append((name, weight) if weight is not None else (part, None))
    return out


def load_style_spec(text: str, generator: Generator, source_name: str) -> Style:
    """The style ``--style`` names: one style (by name or path), or the blend (:func:`nada.styles.blend`) of
    ``name:weight`` parts; every style is checked against ``generator``."""
    specs = parse_style_spec(text)
    if len(specs) == 1 and specs[0][1] is None:
        return load_any_style(specs[0][0], generator, source_name)
    missing = [name for name, w in specs if w is None]
    if missing:
        raise CliError(f"give every blended style a weight, e.g. {specs[0][0]}:0.5,{specs[-1][0]}:0.5 "
                       f"(no weight for {', '.join(missing)}).")
    pairs = [(load_any_style(name, generator, source_name), w) for name, w in specs]
    return blend(pairs, source=generator)


def run(args: argparse.Namespace) -> int:
    """Render ``args.seed`` and write one picture per seed."""
    paths = output_paths(args.out, args.seed)
    device = pick_device(args.device)
    generator = load_source(args.source, device)
    if args.style:
        style = load_style_spec(args.style, generator, str(args.source))
        generator = apply_style(generator, style, args.strength, check_source=False, source_name=str(args.source))
    with torch.no_grad():
        images = render_seeds(generator, args.seed, truncation=args.truncation, batch=args.batch)
    for path, img in zip(paths, to_pil(images)):
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path)
        print(path)
    return 0
