"""The style file format: a ``.safetensors`` file of the style's tensors with JSON metadata, tagged as a nada style."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .. import __version__
from ..files import atomic_write, read_tagged_safetensors
from ..weights import CheckpointError
from .style import KINDS, Style, _plain

FORMAT_KEY = "nada_style_format"  # safetensors metadata key that marks a nada style file
FORMAT_VERSION = 1
STYLE_SUFFIX = ".safetensors"


class StyleFileError(CheckpointError):
    """A file that should hold a nada style does not (missing, corrupt, or another kind of file)."""


def save_style(style: Style, path: str | os.PathLike, fp16: bool = False) -> Path:
    """Write ``style`` as safetensors (atomically); metadata values are JSON strings.

    ``fp16=True`` halves the file; each weight is then rounded to float16 (relative error <= 2**-11, measured in
    tests/test_styles.py). fp32 files round-trip exactly."""
    from safetensors.torch import save_file  # third-party; looked up per call, so a test can make it fail

    path = Path(path)
    if path.suffix != STYLE_SUFFIX:
        raise ValueError(f"A style file name must end in {STYLE_SUFFIX}, got '{path.name}'.")
    dtype = torch.float16 if fp16 else torch.float32
    tensors = {k: v.detach().to("cpu", dtype).contiguous().clone() for k, v in style.tensors.items()}
    meta = {**_plain(style.meta), "storage_dtype": "float16" if fp16 else "float32"}
    meta.pop(FORMAT_KEY, None)
    header = {k: json.dumps(v) for k, v in meta.items()}
    header[FORMAT_KEY] = str(FORMAT_VERSION)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))
    return path


def read_style_meta(path: str | os.PathLike) -> dict:
    """The metadata of a style file written by :func:`save_style`, from its header alone (no tensor is read)."""
    from safetensors import safe_open  # third-party, as save_style

    with safe_open(str(path), framework="pt", device="cpu") as f:
        header = f.metadata() or {}
    return {k: json.loads(v) for k, v in header.items() if k != FORMAT_KEY}


def load_style(path: str | os.PathLike) -> Style:
    """Read a nada style (``.safetensors`` only: nothing executable is loaded); raise StyleFileError otherwise."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise StyleFileError(f"Style file '{path}' does not exist.")
    if path.suffix != STYLE_SUFFIX:
        raise StyleFileError(f"'{path}' is not a nada style file ({STYLE_SUFFIX}). Full generator checkpoints "
                             "(.pt, e.g. StyleGAN-NADA models) are read with import_style_pt.")
    tensors, meta = read_tagged_safetensors(
        path, FORMAT_KEY, FORMAT_VERSION, StyleFileError, "style",
        unreadable="it may be corrupt or truncated.",
        untagged="a generator checkpoint goes to --source, not --style.")
    missing = [k for k in ("source_fingerprint", "generator_config") if not meta.get(k)]
    if missing or not isinstance(meta.get("generator_config"), dict):
        raise StyleFileError(f"'{path}' lacks the style metadata {missing or ['generator_config']}; it was not "
                             "written by nada's save_style.")
    bad = [k for k, v in tensors.items() if not v.is_floating_point()]
    if bad:
        raise StyleFileError(f"'{path}' holds non-float tensors {bad[:3]}; not a nada style.")
    if meta.get("kind", "weights") not in KINDS:
        raise StyleFileError(f"'{path}' is a nada style of kind {meta.get('kind')!r}; this nada ({__version__}) "
                             f"reads {', '.join(KINDS)}. Update nada.")
    style = Style(tensors, meta)
    meta["kind"] = style.kind  # files written before modulation styles record none: they hold weights
    return style
