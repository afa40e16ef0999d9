"""Source generators by name: where the command line and the app turn a source name into a generator.

:data:`nada.tiny.TINY_NAME` (``"tiny"``) names the tiny random generator of :mod:`nada.tiny` (offline demos and
tests); anything else is a weights registry name or a checkpoint path, read by :func:`nada.weights.load_generator`.
"""

from __future__ import annotations

import os

import torch

from .stylegan2 import Generator
from .tiny import TINY_NAME, tiny_generator
from .weights import load_generator


def load_source(name_or_path: str | os.PathLike, device: torch.device | str = "cpu") -> Generator:
    """The source generator ``name_or_path``, eval mode, on ``device``: the tiny generator for ``"tiny"``, else a
    registry name (downloaded once, cached) or a local checkpoint (see :func:`nada.weights.load_generator`)."""
    if isinstance(name_or_path, str) and name_or_path == TINY_NAME:
        return tiny_generator().to(device)
    return load_generator(name_or_path, device)


__all__ = ["load_source"]
