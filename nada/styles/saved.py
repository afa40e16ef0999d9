"""The saved-styles folder (safe names, paths, the list of saved styles), and finding a style by any name or path."""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

from ..nets.stylegan2 import Generator
from ..weights import REGISTRY, cache_dir
from .pt_files import import_style_pt
from .style import Style, StyleMismatchError, apply_style, verify_source
from .style_file import STYLE_SUFFIX, StyleFileError, load_style

MAX_NAME_LEN = 64
# Names Windows refuses as file names (with any extension); a slug equal to one gets a suffix.
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
_SLUG_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


# -------------------------------------------------------------------------------------------- user names
def safe_style_name(text: str) -> str:
    """A user's style name as a safe slug: lower-case ASCII ``[a-z0-9_-]``, 1..64 chars, never a path."""
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9_-]+", "-", ascii_text)
    slug = re.sub(r"-{2,}", "-", slug).strip("-_")[:MAX_NAME_LEN].strip("-_")
    if not slug:
        raise ValueError(f"Style name {text!r} has no usable characters: use letters, digits, '-' or '_'.")
    if slug in _RESERVED:
        slug += "-style"
    return slug


def styles_dir() -> Path:
    """Where named styles are saved: ``<weights cache>/styles``."""
    return cache_dir() / "styles"


def style_path(name: str) -> Path:
    """``styles_dir()/<safe name>.safetensors``; the name is slugged first, so it can never leave that folder."""
    root = styles_dir().resolve()
    path = (root / (safe_style_name(name) + STYLE_SUFFIX)).resolve()
    if path.parent != root:  # cannot happen for a slug; kept as a guard against future edits
        raise ValueError(f"Style name {name!r} does not stay inside {root}.")
    return path


def list_saved_styles() -> list[str]:
    """Names of the styles saved in :func:`styles_dir`, sorted."""
    root = styles_dir()
    if not root.is_dir():
        return []
    return sorted(p.stem for p in root.glob("*" + STYLE_SUFFIX) if p.is_file() and _SLUG_RE.fullmatch(p.stem))


# ----------------------------------------------------------------------------------------- name or path
def load_any_style(name_or_path: str | os.PathLike, source: Generator, source_name: str) -> Style:
    """A style from a published registry name ("nada-pixar"), a saved style name, a ``.safetensors`` style or a
    full ``.pt`` generator; checked against ``source`` (StyleMismatchError when it belongs to another)."""
    key = os.fspath(name_or_path)
    asset = REGISTRY.get(key) if isinstance(name_or_path, str) else None
    if asset is not None:
        if asset.kind != "style":
            raise StyleFileError(f"'{key}' is a {asset.kind} in the weights registry, not a style. Published styles: "
                                 f"{', '.join(n for n, a in REGISTRY.items() if a.kind == 'style')}.")
        if source_name in REGISTRY and asset.source and source_name != asset.source:
            raise StyleMismatchError(f"The published style '{key}' was trained from the '{asset.source}' generator, "
                                     f"but the source is '{source_name}'. Use --source {asset.source}.")
        return import_style_pt(key, source, {"source": asset.source})
    path = Path(key).expanduser()
    if not path.is_file() and isinstance(name_or_path, str) and _SLUG_RE.fullmatch(key) and \
            style_path(key).is_file():
        path = style_path(key)
    if not path.is_file():
        published = ", ".join(n for n, a in REGISTRY.items() if a.kind == "style")
        saved = ", ".join(list_saved_styles()) or "none"
        raise StyleFileError(f"Style '{key}' not found: it is not a file, a saved style ({saved}) or a published "
                             f"style ({published}).")
    if path.suffix == STYLE_SUFFIX:
        style = load_style(path)
        verify_source(style, source, source_name)
        return style
    if path.suffix in {".pt", ".pth", ".ckpt"}:
        return import_style_pt(path, source, {"source": source_name})
    raise StyleFileError(f"'{path}' is neither a nada style ({STYLE_SUFFIX}) nor a generator checkpoint (.pt).")


def apply_style_file(generator: Generator, name_or_path: str | os.PathLike, strength: float = 1.0,
                     source_name: str = "ffhq") -> Generator:
    """Load a style by name or path (see :func:`load_any_style`) and return a styled copy of ``generator``."""
    if not isinstance(strength, (int, float)) or not 0.0 <= float(strength) <= 1.0:
        raise ValueError(f"Style strength must be between 0 (source) and 1 (full style), got {strength!r}.")
    style = load_any_style(name_or_path, generator, str(source_name))
    return apply_style(generator, style, strength, check_source=False, source_name=str(source_name))
