"""Instant styles: a hypernetwork that maps a prompt's CLIP text direction to a compact (``style_delta``) style in
one forward pass, trained over a prompt list (HyperDomainNet's idea; see :mod:`nada.hyper.net`).

- :class:`HyperConfig` (settings), :class:`HyperProgress` (what training yields);
- :class:`Hypernet` (``forward``, ``style``, ``save``, ``Hypernet.load``), :class:`HypernetMismatchError`,
  :func:`text_direction` (its input);
- :func:`train_hypernet` (the training loop, data-parallel with ``rank``/``world``/``sync_grads``).
"""

from __future__ import annotations

from .config import HyperConfig, HyperProgress
from .loop import prompt_pairs, train_hypernet
from .net import Hypernet, HypernetMismatchError, text_direction, trained_layers

__all__ = ["HyperConfig", "HyperProgress", "Hypernet", "HypernetMismatchError", "text_direction", "train_hypernet",
           "prompt_pairs", "trained_layers"]
