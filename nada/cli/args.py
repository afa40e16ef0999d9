"""Small pieces every ``python -m nada`` subcommand shares: the user-facing error and the argument types.

They live apart from :mod:`nada.cli` so that the subcommand modules (``cli_adapt``, ``cli_invert``), which
``cli`` imports to register them, need not import ``cli`` back.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path

from .. import limits
from ..nets.rows import canonical_rows


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code 1."""


def parse_seeds(text: str) -> list[int]:
    """"7" -> [7]; "0-3" -> [0, 1, 2, 3]; "1,5,9" -> [1, 5, 9] (ranges and lists combine); seeds go from 0 to
    ``limits.MAX_SEED``, at most ``limits.MAX_SEEDS`` of them; a message names the limit that was crossed."""
    seeds: list[int] = []
    for part in text.replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise argparse.ArgumentTypeError(f"invalid seeds '{text}': use whole numbers such as 7, 0-7 or 1,5,9")
        first, last = int(m[1]), int(m[2] or m[1])
        if last > limits.MAX_SEED:
            raise argparse.ArgumentTypeError(f"invalid seeds '{text}': seeds go from 0 to {limits.MAX_SEED}")
        if last < first:
            raise argparse.ArgumentTypeError(f"invalid seeds '{text}': the range {part} runs backwards "
                                             f"(write {last}-{first})")
        if len(seeds) + last - first + 1 > limits.MAX_SEEDS:
            raise argparse.ArgumentTypeError(f"invalid seeds '{text}': at most {limits.MAX_SEEDS} seeds at a time "
                                             f"('{part}' alone is {last - first + 1})")
        seeds.extend(range(first, last + 1))
    return seeds


def _checked(check, text: str):
    """``check(text)`` with its ``ValueError`` turned into argparse's one-line error."""
    try:
        return check(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def seed(text: str) -> int:
    """``--seed`` of a training run: a whole number from 0 to ``limits.MAX_SEED``."""
    return _checked(lambda t: limits.seed(t, "the seed"), text)


def rows_arg(text: str) -> str:
    """``--rows`` (and ``--edit NAME@ROWS``): W+ rows as :mod:`nada.nets.rows` spells them (a group, groups or row
    numbers joined by "+", or "all"), checked and in one spelling ("all" for every row)."""
    return _checked(lambda t: canonical_rows(t) or "all", text)


def check_writable(path: Path, what: str = "output", create: bool = True) -> Path:
    """``path`` once a file could be created and removed beside it (its folder is made if missing); ``CliError``
    naming the reason otherwise. ``create=False`` makes nothing: the nearest existing folder must be writable.
    Run before long work, so that work is never lost to an unwritable output."""
    path = Path(path)
    if path.is_dir():
        raise CliError(f"the {what} '{path}' is a folder; give a file name.")
    existing = next((p for p in path.parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise CliError(f"cannot write the {what} '{path}': '{existing}' is a file, not a folder. Nothing was started.")
    if not create:
        if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
            raise CliError(f"cannot write the {what} '{path}': the folder '{existing}' is not writable. Nothing was "
                           "started.")
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise CliError(f"cannot write the {what} '{path}': {exc.strerror or exc}. Nothing was started.") from None
    return path


def learning_rate(text: str) -> float:
    """``--lr``: above 0 and at most ``limits.MAX_LR``."""
    return _checked(lambda t: limits.learning_rate(t, "the learning rate"), text)


def iterations(text: str) -> int:
    """``--iterations``: a whole number from 1 to ``limits.MAX_ITERATIONS``."""
    return _checked(lambda t: limits.iterations(t, what="the number of steps"), text)


def unit_float(text: str) -> float:
    """A number in [0, 1] (strength, truncation)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{v} is outside [0, 1]")
    return v


def whole_number(text: str) -> int:
    """``text`` as an integer (argparse's error otherwise)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None


def positive_int(text: str) -> int:
    """An integer >= 1 (batch sizes)."""
    v = whole_number(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} must be at least 1")
    return v


def count(text: str) -> int:
    """An integer >= 0 (0 = none, or never)."""
    v = whole_number(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"{v} must be 0 or more")
    return v


__all__ = ["CliError", "parse_seeds", "unit_float", "positive_int", "whole_number", "count", "learning_rate",
           "iterations", "seed", "rows_arg", "check_writable"]
