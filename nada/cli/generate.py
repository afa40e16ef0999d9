"""``python -m nada generate``: render seeds from a source generator or a trained style into PNG files."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import torch

from ..model_store import load_source
from ..nets.stylegan2 import Generator
from ..render import render_seeds, to_pil
from ..runtime import pick_device
from ..styles import Style, apply_style, blend, load_any_style
from ..styles.style_file import STYLE_SUFFIX
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
                     help="a style file (.safetensors from nada, or a StyleGAN-NADA .pt; a path may leave out "
                          ".safetensors, e.g. a zoo's DIR/witcher) or a published style name; a blend of styles "
                          "with weights: a.safetensors:0.6,nada-pixar:0.4 (weights may be negative: away from a "
                          "style)")
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


STYLE_FILE_SUFFIXES = (STYLE_SUFFIX, ".pt", ".pth", ".ckpt")


def style_location(name: str) -> str:
    """``name`` as ``--style`` means it. A path (it has a folder, or a style file's suffix) may leave out
    ``.safetensors``: ``zoo/witcher`` is ``zoo/witcher.safetensors``; a path to no file is a :class:`CliError` that
    names the file by its own name (and the styles of its folder). Other names (published or saved styles) pass."""
    path = Path(name).expanduser()
    is_path = any(sep in name for sep in ("/", os.sep, os.altsep or "/")) or name.startswith(("~", ".")) or \
        path.suffix.lower() in STYLE_FILE_SUFFIXES
    if not is_path or path.is_file():
        return name
    if path.is_dir():
        raise CliError(f"'{path.name}' is a folder, not a style: name a style file in it ({_styles_in(path)}).")
    if path.suffix.lower() not in STYLE_FILE_SUFFIXES:
        path = path.with_name(path.name + STYLE_SUFFIX)
        if path.is_file():
            return str(path)
    folder = path.parent
    if not folder.is_dir():
        raise CliError(f"no style file '{path.name}': its folder '{folder.name or folder}' does not exist.")
    raise CliError(f"no style file '{path.name}' in the folder '{folder.resolve().name}' ({_styles_in(folder)}).")


def _styles_in(folder: Path) -> str:
    """"its styles: a, b, c" for the style files of ``folder`` (the first 12), or "it holds no style file"."""
    names = sorted(p.stem for p in folder.glob("*" + STYLE_SUFFIX) if p.is_file())
    if not names:
        return "it holds no style file"
    return "its styles: " + ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")


def load_style_spec(text: str, generator: Generator, source_name: str) -> Style:
    """The style ``--style`` names: one style (by name or path), or the blend (:func:`nada.styles.blend`) of
    ``name:weight`` parts; every style is checked against ``generator``."""
    specs = [(style_location(name), weight) for name, weight in parse_style_spec(text)]
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
