"""The networks, the bottom layer of nada: StyleGAN2 (:mod:`~nada.nets.stylegan2`), the e4e encoder
(:mod:`~nada.nets.e4e`), the IR-SE ArcFace backbone (:mod:`~nada.nets.irse`), and their low-level ops
(:mod:`~nada.nets.ops`: FIR filtering, fast convolution paths) with the per-shape choice among those paths
(:mod:`~nada.nets.autotune`). These modules import nothing from the rest of nada (only torch): they build modules
whose state dicts match the public checkpoints, and read no files; turning a checkpoint file into a network is the
library's job (:func:`nada.weights.load_generator`, :func:`nada.weights.load_e4e`, :func:`nada.id_loss.load_id_loss`).
"""

from __future__ import annotations

import importlib
from types import ModuleType


def __getattr__(name: str) -> ModuleType:
    """``nada.nets.<module>`` imported on first use (as ``nada.<module>``), so ``import nada.nets`` loads no torch."""
    if name.startswith("_"):
        raise AttributeError(f"module 'nada.nets' has no attribute '{name}'")
    try:
        module = importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module 'nada.nets' has no attribute '{name}'") from None
    globals()[name] = module
    return module
