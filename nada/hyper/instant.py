"""An instant style from a hypernetwork file: the one path ``nada.Studio.instant``, the app's Instant button and
``nada hyper style`` share (the file checked against the source's weights and CLIP models, then one forward pass)."""

from __future__ import annotations

import json
import os

from safetensors import safe_open

from ..model_store import ModelStore
from ..styles import Style
from .net import Hypernet


def hypernet_source(path: str | os.PathLike) -> str | None:
    """The source generator a hypernetwork file records (its header only; no tensor read), or None when it names
    none or cannot be read (loading it says why)."""
    try:
        with safe_open(os.fspath(path), framework="pt", device="cpu") as f:
            meta = json.loads((f.metadata() or {}).get("meta") or "{}")
    except Exception:  # noqa: BLE001 - Hypernet.load gives the readable error
        return None
    source = meta.get("source") if isinstance(meta, dict) else None
    return source if isinstance(source, str) and source else None


def hypernet_style(store: ModelStore, source: str, path: str | os.PathLike, source_text: str,
                  target_text: str) -> Style:
    """The compact style the hypernetwork at ``path`` makes for a prompt pair on ``source``'s generator (loaded
    through ``store``, as are the CLIP models the file records); ``HypernetMismatchError`` for a file of another
    generator or not a hypernetwork. The style's ``meta["source"]`` is ``source``."""
    hypernet = Hypernet.load(path, store.generator(source), fingerprint=store.fingerprint(source))
    style = hypernet.style(store.clips(list(hypernet.meta.get("clip_models") or [])), source_text, target_text)
    style.meta["source"] = source
    return style


__all__ = ["hypernet_source", "hypernet_style"]
