"""The command line: ``python -m nada generate|adapt|zoo|hyper|invert|edit|export|video|evaluate|download|doctor``
(also the ``nada`` command). One module per command, each with a ``register(sub)``; parsing and printing only, the
work lives in the library. This layer never imports :mod:`nada.app`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..runtime import configure_torch, tune_allocator
from ..weights import CheckpointError, WeightsUnavailableError
from . import adapt, edit, evaluate, export, generate, hyper, invert, video, weights, zoo
from .args import CliError

# --help order; weights adds download, doctor
COMMANDS = (generate, adapt, zoo, hyper, invert, edit, export, weights, evaluate, video)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, one subcommand registered by each command module."""
    parser = argparse.ArgumentParser(
        prog="nada" if Path(sys.argv[0]).name == "nada" else "python -m nada",  # console command or module
        description="Text-driven domain adaptation of StyleGAN2 generators (StyleGAN-NADA, re-implemented).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


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


__all__ = ["build_parser", "main"]
