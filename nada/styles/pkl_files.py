"""Styles exported back into NVIDIA network pickles (``*.pkl`` of StyleGAN2-ADA and StyleGAN3): the original file
with its generator networks carrying the styled weights (:mod:`nada.nets.nvidia_export` writes it)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..files import atomic_write
from ..nets.nvidia_export import differing, generator_nvidia_state, write_network_pickle
from ..nets.nvidia_pickle import NetworkPickle, read_network_pickle
from .style import Style, StyleMismatchError, apply_style


def export_style_pkl(source: torch.nn.Module, style: Style, original: NetworkPickle | str | os.PathLike,
                     path: str | os.PathLike, strength: float = 1.0) -> Path:
    """Write ``original`` (a network pickle, read or by path) again at ``path`` with ``G_ema`` and ``G`` holding
    ``source`` styled at ``strength``, compact offsets folded into the affine layers; every other entry, and the
    embedded source, as the file held them. ``source`` must be the file's own generator (as loaded from it)."""
    net = original if isinstance(original, NetworkPickle) else read_network_pickle(original)
    differ = differing(net, generator_nvidia_state(source))
    if differ:
        raise StyleMismatchError(
            f"The generator given is not the one in {net.name}: {len(differ)} of its tensors differ (e.g. "
            f"'{differ[0]}'). Load the source generator from {net.name} itself.")
    styled = apply_style(source, style, strength, check_source=True, source_name=net.name).fold_style_offsets()
    if getattr(styled, "style_offsets", dict)():
        raise ValueError("The styled generator kept style offsets after folding them; nothing was written.")
    new = generator_nvidia_state(styled)
    path = Path(path)
    atomic_write(path, lambda tmp: write_network_pickle(net, new, tmp))
    return path


__all__ = ["export_style_pkl"]
