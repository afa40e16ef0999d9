"""``python -m nada export STYLE --source ORIGINAL.pkl --out NEW.pkl``: a style written back into its source's own
format: an NVIDIA network pickle (``.pkl``) or rosinality's StyleGAN2 checkpoint (``.pt``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..model_store import TINY_NAME, load_source
from ..nets.nvidia_pickle import checked_generator, read_network_pickle
from ..nets.stylegan2 import Generator
from ..styles import load_any_style
from ..styles.pkl_files import export_style_pkl
from ..styles.pt_files import export_style_pt, rosinality_notes
from ..weights import REGISTRY, generator_from_network, is_network_pickle
from .args import CliError, check_writable, unit_float

SUFFIXES = (".pkl", ".pt")

DESCRIPTION = """\
Write a style into a full generator file: --out NEW.pkl copies the NVIDIA network pickle given as --source
(StyleGAN2-ADA or StyleGAN3: the same entries in the same order, D, augment_pipe and the embedded Python source as
they were) with G_ema and G carrying the styled weights, compact style offsets folded in, and nothing of nada's
inside: NVIDIA's legacy.load_network_pkl, gen_images.py and other tools read it as one of their own. --out NEW.pt
writes rosinality's StyleGAN2 layout ({'g_ema': ...}) instead, for StyleGAN2 sources.

Export never runs the embedded source: nada reads network pickles as data and copies that source as bytes. NVIDIA's
tools will run it when they load the new file, as they do with every network pickle: give them only files whose
original you trust."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand."""
    p = sub.add_parser("export", help="write a style into a full generator file (.pkl for NVIDIA's tools, or .pt)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("style", metavar="STYLE",
                   help="the style: a saved style's name, a .safetensors style file or a StyleGAN-NADA .pt")
    p.add_argument("--source", required=True,
                   help="the generator the style was trained on: its NVIDIA network pickle (.pkl) for a .pkl output; "
                        "for a .pt output also a registry name or a rosinality .pt")
    p.add_argument("--out", required=True, metavar="NEW.pkl|NEW.pt",
                   help="the file to write: .pkl (an NVIDIA network pickle) or .pt (rosinality's StyleGAN2 layout)")
    p.add_argument("--strength", type=unit_float, default=1.0,
                   help="style strength, 0 = source, 1 = adapted (default: 1)")
    p.set_defaults(run=run)


def _output(text: str) -> Path:
    """``--out`` checked before anything is read: a .pkl or .pt file name in a writable place."""
    out = Path(text).expanduser()
    if out.is_dir():
        raise CliError(f"the output '{out.name}' is a folder; give a file name such as {out.name}/styled.pkl.")
    if out.suffix.lower() not in SUFFIXES:
        raise CliError(f"the output '{out.name}' must end in .pkl (an NVIDIA network pickle) or .pt (rosinality's "
                       "StyleGAN2 layout).")
    return check_writable(out, "output")


def _source(text: str) -> tuple[Path | str, str]:
    """(what to load, its name in messages): a registry name or "tiny" as it is, else an existing file."""
    if text == TINY_NAME or text in REGISTRY:
        return text, text
    path = Path(text).expanduser()
    if path.is_dir():
        raise CliError(f"the source '{path.name}' is a folder, not a generator file.")
    if not path.is_file():
        raise CliError(f"the source '{path.name}' does not exist: give the generator file the style was trained on.")
    return path, path.name


def run(args: argparse.Namespace) -> int:
    """Load the source and the style, check that they belong together, write the styled generator."""
    out = _output(args.out)
    source, name = _source(args.source)
    if out.suffix.lower() == ".pkl":
        if not isinstance(source, Path) or not is_network_pickle(source):
            raise CliError(f"'{out.name}' is an NVIDIA network pickle, written by copying the source's own pickle, "
                           f"but the source '{name}' is not one (a .pkl from stylegan2-ada-pytorch or stylegan3). "
                           "For a StyleGAN2 source write --out NEW.pt.")
        net = read_network_pickle(source)  # as data: refusals in words, nothing run
        generator = generator_from_network(checked_generator(net), name)
        style = load_any_style(args.style, generator, name)
        print(export_style_pkl(generator, style, net, out, args.strength))
        return 0
    generator = load_source(source)
    if not isinstance(generator, Generator):
        raise CliError(f"the source '{name}' is not a StyleGAN2, so it has no rosinality layout; write --out NEW.pkl.")
    style = load_any_style(args.style, generator, name)
    print(export_style_pt(generator, style, out, args.strength))
    notes = rosinality_notes(generator)
    if notes:
        print(f"note: {out.name} keeps NVIDIA's settings beside g_ema ('nvidia_settings'), so nada reloads it "
              f"exactly; for rosinality's own code: {'; '.join(notes)}.", file=sys.stderr)
    return 0


__all__ = ["register", "run"]
