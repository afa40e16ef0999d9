"""nada: text-driven domain adaptation of StyleGAN2 generators with CLIP (StyleGAN-NADA, re-implemented).

The front door is :class:`nada.Studio`; :class:`nada.AdaptConfig`, :data:`nada.RECIPES`, :class:`nada.Progress` (a
training step's record), :class:`nada.Style` and :class:`nada.Evaluation` (a style's figures) are here too, and every
library module is reachable as ``nada.<module>`` (``nada.train``, ``nada.styles``, ...), the networks as
``nada.nets.<module>`` (``nada.nets.stylegan2``, ...). Importing ``nada`` loads no torch: each name is imported on
first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {  # public name -> module that defines it
    "Studio": "studio", "InvertResult": "studio",
    "AdaptConfig": "train", "RECIPES": "train", "Progress": "train",
    "Style": "styles", "Evaluation": "metrics",
    "StudioProgress": "studio",  # deprecated: nada.Progress (records carry .style); warns, goes next release
}

if TYPE_CHECKING:  # for type checkers and editors; at run time these come from __getattr__
    from .metrics import Evaluation
    from .studio import InvertResult, Studio
    from .styles import Style
    from .train import RECIPES, AdaptConfig, Progress


def __getattr__(name: str) -> Any:
    """``nada.Studio`` and friends, and ``nada.<module>``, imported when first used."""
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    elif not name.startswith("_"):
        try:
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'nada' has no attribute '{name}'") from None
    else:
        raise AttributeError(f"module 'nada' has no attribute '{name}'")
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["Studio", "InvertResult", "AdaptConfig", "RECIPES", "Progress", "Style", "Evaluation", "__version__"]
