"""Helpers for the notebooks (``notebooks/train.ipynb``, ``notebooks/inference.ipynb``): the tiny-mode switch, Colab's
upload and download, and pictures large enough to see.

Everything else the notebooks do is a call into nada itself (the app's :class:`~nada.model_store.ModelStore`,
:func:`~nada.train.adapt`, :func:`~nada.metrics.evaluate`, :mod:`nada.styles`, :mod:`nada.invert`), so they run the
same code as the app and the command line. Nothing here imports IPython or Colab's module until it is used.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .images import ImageSource

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})  # what turns an environment flag on (as the app reads NADA_TINY)
DISPLAY_MIN = 256  # small images (tiny mode) are enlarged to at least this many pixels a side
LABEL_PAD = 4  # pixels around a label's text


def tiny_mode(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``NADA_TINY`` is on (1/true/yes/on): tiny random models, no downloads; how CI runs the notebooks."""
    env = os.environ if environ is None else environ
    return env.get("NADA_TINY", "").strip().lower() in TRUE_WORDS


def in_colab() -> bool:
    """True inside Google Colab (its kernel imports ``google.colab`` at start)."""
    return "google.colab" in sys.modules


def enlarge(image: Image.Image, min_side: int = DISPLAY_MIN) -> Image.Image:
    """``image`` scaled up by a whole factor (nearest neighbour) until its short side is at least ``min_side``;
    unchanged when it already is (the 32 px tiny images would otherwise be specks)."""
    side = min(image.size)
    if side >= min_side or side == 0:
        return image
    k = -(-min_side // side)  # ceil
    return image.resize((image.width * k, image.height * k), Image.Resampling.NEAREST)


def _font(size: int = 14) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable font
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def labelled_grid(rows: Sequence[Sequence[Image.Image]], row_labels: Sequence[str] | None = None,
                  col_labels: Sequence[str] | None = None, size: int = 160) -> Image.Image:
    """One picture of ``rows`` of images, each tile ``size`` x ``size``, with optional labels left of each row and
    above each column (row lengths may differ). Small tiles are enlarged with nearest neighbour, large ones resized."""
    if not rows or not any(rows):
        raise ValueError("labelled_grid needs at least one image.")
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"{len(rows)} rows but {len(row_labels)} row labels.")
    n_cols = max(len(r) for r in rows)
    if col_labels is not None and len(col_labels) > n_cols:
        raise ValueError(f"{n_cols} columns but {len(col_labels)} column labels.")
    font = _font()
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_size(text: str) -> tuple[int, int]:
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        return right - left, bottom - top

    left = max((text_size(t)[0] for t in row_labels), default=0) + 2 * LABEL_PAD if row_labels else 0
    top = max((text_size(t)[1] for t in col_labels), default=0) + 2 * LABEL_PAD if col_labels else 0
    sheet = Image.new("RGB", (left + n_cols * size, top + len(rows) * size), "white")
    pen = ImageDraw.Draw(sheet)
    for j, text in enumerate(col_labels or []):
        width = text_size(text)[0]
        pen.text((left + j * size + max(0, (size - width) // 2), LABEL_PAD), text, fill="black", font=font)
    for i, row in enumerate(rows):
        y = top + i * size
        if row_labels:
            pen.text((LABEL_PAD, y + (size - text_size(row_labels[i])[1]) // 2), row_labels[i], fill="black",
                     font=font)
        for j, image in enumerate(row):
            tile = image.convert("RGB")
            if tile.size != (size, size):
                small = max(tile.size) < size
                tile = tile.resize((size, size), Image.Resampling.NEAREST if small else Image.Resampling.LANCZOS)
            sheet.paste(tile, (left + j * size, y))
    return sheet


def offer_download(path: str | os.PathLike) -> Path:
    """In Colab, send the file to the browser (``google.colab.files.download``); elsewhere print where it is."""
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"Nothing to download: '{path}' does not exist.")
    if in_colab():
        from google.colab import files  # only in Colab

        files.download(str(path))
    else:
        print(f"Saved to {path}")
    return path


def upload_or(default: str | os.PathLike | None) -> ImageSource:
    """A photo: in Colab, the first file uploaded now (``google.colab.files.upload``; ``default`` when none is);
    elsewhere ``default`` (a path). Returns what :func:`nada.images.load_image` reads (bytes or a path)."""
    if in_colab():
        from google.colab import files  # only in Colab

        print("Choose a photo with a face (or cancel to use the example).")
        uploaded = files.upload()
        if uploaded:
            name, data = next(iter(uploaded.items()))
            print(f"Using {name}")
            return bytes(data)
    if default is None or not Path(default).is_file():
        raise FileNotFoundError(f"No photo: upload one, or set the path of a photo with a face (not found: {default}).")
    print(f"Using {default}")
    return Path(default)


__all__ = ["tiny_mode", "in_colab", "enlarge", "labelled_grid", "offer_download", "upload_or", "DISPLAY_MIN"]
