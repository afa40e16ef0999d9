"""Many compact styles trained together: :func:`adapt_many` (stand-in until the batched trainer lands: one style
after another through :func:`nada.train.adapt`, with the final interface)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import torch

from ..nets.stylegan2 import Generator
from ..train import AdaptConfig, Progress, adapt


def adapt_many(generator: Generator, clip_models: list[tuple[torch.nn.Module, float]], configs: Sequence[AdaptConfig],
               id_loss: torch.nn.Module | None = None, *, stop: threading.Event | None = None
               ) -> Iterator[list[Progress | None]]:
    """Train one style per config; yields per step a list in config order: each style's record, or None when that
    style has nothing new this step."""
    configs = list(configs)
    for i, config in enumerate(configs):
        for rec in adapt(generator, clip_models, config, id_loss, stop=stop):
            out: list[Progress | None] = [None] * len(configs)
            out[i] = rec
            yield out
