"""Styles: a trained style is the set of generator tensors that differ from its source, plus metadata.

A style is saved as ``.safetensors`` (no pickled code) holding only the tensors that changed during adaptation,
with metadata that names the source generator and its fingerprint (a hash of its tensors). Applying a style to a
generator first checks that it is the generator the style was trained from, then blends
``source + strength * (style - source)`` into a copy. Full rosinality ``{"g_ema": ...}`` files (other tools, and the
published StyleGAN-NADA models) are imported by diffing them against the source, and exported the same way.

Kinds of style (``Style.kind``, recorded as ``meta["kind"]``; files without it are "weights"):
- "weights": changed state-dict tensors (``AdaptConfig.params="weights"``, the paper; ~60 MB at 1024 px);
- "style_delta": per-channel offsets ``"<module>.style_delta"`` -> [in] added to each synthesis convolution's style
  vector, ``s + delta`` (StyleDomain's ``s_delta``, ``params="style_delta"``, the "compact" recipe; every weight
  unchanged; ~20 KB at 1024 px); exported to ``.pt`` by adding the delta to the affine bias, exactly;
- "modulation": per-channel offsets ``"<module>.style_offset"`` -> [in] scaling the style vector, ``s * (1 + offset)``
  (StyleDomain's ``s_mod``, ``params="modulation"``: what the "compact" recipe trained until it followed StyleDomain's
  published setting; those files load and render as before); exported by scaling the affine weight and bias;
- "mixed": more than one of these, from :func:`blend` of styles of different kinds. Each form keeps its own tensors
  and stays linear in its weight: a layer holding both computes ``s * (1 + offset) + delta``.
Strength scales a compact style's offsets (0: none, 1: as trained). :func:`blend` combines styles of one source.

Every name is imported from here (``nada.styles.X``); the modules hold one job each:
:mod:`~nada.styles.style` (the Style type, fingerprints, source checks, applying, blending),
:mod:`~nada.styles.style_file` (the ``.safetensors`` style format), :mod:`~nada.styles.pt_files` (full ``.pt``
generator files in and out) and :mod:`~nada.styles.saved` (the saved-styles folder, and a style by any name or path).
"""

from __future__ import annotations

from ..files import atomic_write as atomic_write  # its old home: nada.styles.atomic_write keeps working
from ..files import current_umask as current_umask
from ..files import read_tagged_safetensors as read_tagged_safetensors
from .pt_files import FROZEN_PREFIXES, export_style_pt, import_style_pt
from .saved import (
    MAX_NAME_LEN,
    apply_style_file,
    list_saved_styles,
    load_any_style,
    safe_style_name,
    style_path,
    styles_dir,
)
from .style import (
    DELTA_SUFFIX,
    KINDS,
    OFFSET_SUFFIX,
    Style,
    StyleMismatchError,
    apply_style,
    blend,
    check_style_fits,
    combine_tensors,
    generator_fingerprint,
    is_offset_key,
    offset_module,
    style_from_generators,
    verify_source,
)
from .style_file import (
    FORMAT_KEY,
    FORMAT_VERSION,
    STYLE_SUFFIX,
    StyleFileError,
    load_style,
    read_style_meta,
    save_style,
)

__all__ = [
    "Style", "StyleMismatchError", "StyleFileError", "generator_fingerprint",
    "style_from_generators", "save_style", "load_style", "read_style_meta", "verify_source", "apply_style",
    "export_style_pt", "blend",
    "combine_tensors", "is_offset_key", "check_style_fits", "KINDS",
    "import_style_pt", "load_any_style", "apply_style_file", "safe_style_name", "styles_dir", "style_path",
    "list_saved_styles", "atomic_write",
    "OFFSET_SUFFIX", "DELTA_SUFFIX", "offset_module",
    "FORMAT_KEY", "FORMAT_VERSION", "STYLE_SUFFIX", "MAX_NAME_LEN", "FROZEN_PREFIXES",
]
