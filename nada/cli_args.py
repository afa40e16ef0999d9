"""Small pieces every ``python -m nada`` subcommand shares: the user-facing error and the argument types.

They live apart from :mod:`nada.cli` so that the subcommand modules (``cli_adapt``, ``cli_invert``), which
``cli`` imports to register them, need not import ``cli`` back.
"""

from __future__ import annotations

import argparse
import re


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code 1."""


def parse_seeds(text: str) -> list[int]:
    """"7" -> [7]; "0-3" -> [0, 1, 2, 3]; "1,5,9" -> [1, 5, 9] (ranges and lists combine; seeds are >= 0)."""
    seeds: list[int] = []
    for part in text.replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m or (m[2] is not None and not 0 <= int(m[2]) - int(m[1]) < 10000):
            raise argparse.ArgumentTypeError(f"invalid seeds '{text}': use 7, 0-7 or 1,5,9")
        seeds.extend(range(int(m[1]), int(m[2] or m[1]) + 1))
    return seeds


def unit_float(text: str) -> float:
    """A number in [0, 1] (strength, truncation)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{v} is outside [0, 1]")
    return v


def positive_int(text: str) -> int:
    """An integer >= 1 (batch sizes)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} must be at least 1")
    return v


__all__ = ["CliError", "parse_seeds", "unit_float", "positive_int"]
