"""The zoo's pictures: a contact sheet (one captioned row per style, the source's row first, a column per fixed seed)
and ``index.html``, a static page of the sheet and the zoo's table that opens from disk without a server.

Rendering holds one styled generator at a time and shrinks each image to its cell at once, so a sheet of many styles
at 1024 px needs the memory of one style and a few small pictures. Every string from the prompt file or ``zoo.json``
is HTML-escaped: prompts are untrusted text.
"""

from __future__ import annotations

import html
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from ..files import atomic_write
from ..nets.stylegan2 import Generator
from ..render import render_seeds, to_pil
from ..styles import STYLE_SUFFIX, Style, apply_style, load_style

SHEET_NAME = "sheet.png"  # DIR/sheet.png
INDEX_NAME = "index.html"  # DIR/index.html
SOURCE_CAPTION = "Source"  # the caption of the source's row
CELL = 128  # px per sheet cell (each seed's picture)
CAPTION_MIN_CHARS = 12  # a caption shortened to fit keeps at least this many characters (then "...")
_FILE_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}" + re.escape(STYLE_SUFFIX))  # a style file the page may link to
Row = tuple[str, list[Image.Image]]  # (caption, one picture per seed)


# ---------------------------------------------------------------------------------------------- rendering
def render_rows(source_generator: Generator, styles: Sequence[tuple[str, Style | str | os.PathLike]],
                seeds: Sequence[int], truncation: float = 0.7, *, cell: int | None = CELL,
                source_caption: str = SOURCE_CAPTION, source_name: str | None = None,
                w_avg: torch.Tensor | None = None) -> list[Row]:
    """Rows for :func:`contact_sheet`: ``(source_caption, source pictures)``, then ``(caption, pictures)`` per style
    (a :class:`Style`, or a style file's path, read when its turn comes), each for ``seeds`` truncated towards the
    source's centre ``w_avg`` (computed when None). One styled copy lives at a time; ``cell`` shrinks every picture
    at once (None keeps the full size). A style that does not fit the source raises ``ValueError``."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("The contact sheet needs at least one seed.")
    rows: list[Row] = []
    with torch.no_grad():
        if w_avg is None:
            w_avg = source_generator.truncation_center()  # [1, 512]
        rows.append((source_caption, _pictures(source_generator, seeds, truncation, w_avg, cell)))
        for caption, style in styles:
            if not isinstance(style, Style):
                style = load_style(style)
            styled = apply_style(source_generator, style, 1.0, check_source=False, source_name=source_name)
            rows.append((str(caption), _pictures(styled, seeds, truncation, w_avg, cell)))
            del styled, style  # one styled copy at a time
    return rows


def _pictures(generator: Generator, seeds: list[int], truncation: float, w_avg: torch.Tensor,
              cell: int | None) -> list[Image.Image]:
    """The pictures of ``seeds``, each shrunk to ``cell`` px at once."""
    images = to_pil(render_seeds(generator, seeds, truncation, w_avg=w_avg))  # [N, 3, H, W] -> N pictures
    return [fit(image, cell) for image in images] if cell else images


def fit(image: Image.Image, size: int) -> Image.Image:
    """``image`` as a ``size`` px RGB square: LANCZOS when shrinking, NEAREST when enlarging (tiny images stay
    crisp blocks)."""
    image = image.convert("RGB")
    if image.size == (size, size):
        return image
    return image.resize((size, size), Image.LANCZOS if max(image.size) > size else Image.NEAREST)


# ---------------------------------------------------------------------------------------------- the sheet
def caption_height(cell: int) -> int:
    """Pixels of the caption strip above each row of ``cell`` px pictures."""
    return max(14, cell // 7)


def contact_sheet(rows: Sequence[Row], cell: int = CELL) -> Image.Image:
    """One picture of ``rows``: each row's caption on a white strip above its pictures (``cell`` px squares, a column
    per seed; a short row is padded grey). Size: ``(columns * cell, len(rows) * (cell + caption_height(cell)))``."""
    if not rows:
        raise ValueError("The contact sheet needs at least one row.")
    if cell < 16:
        raise ValueError(f"Contact sheet cells must be at least 16 px, got {cell}.")
    columns = max(1, max(len(images) for _, images in rows))
    strip = caption_height(cell)
    width = columns * cell
    sheet = Image.new("RGB", (width, len(rows) * (cell + strip)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = _font(strip - 4)
    for i, (caption, images) in enumerate(rows):
        top = i * (cell + strip)
        text = shorten(_drawable(str(caption), font), width - 6, font)
        draw.text((3, top + strip // 2), text, fill=(20, 20, 20), font=font, anchor="lm")
        for j in range(columns):
            box = (j * cell, top + strip)
            if j < len(images):
                sheet.paste(fit(images[j], cell), box)
            else:
                sheet.paste((200, 200, 200), (*box, box[0] + cell, box[1] + cell))
    return sheet


def shorten(text: str, width: int, font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> str:
    """``text`` on one line, cut with "..." to fit ``width`` px in ``font`` (never below a few characters)."""
    text = " ".join(text.split())
    if font.getlength(text) <= width:
        return text
    low, high = 0, len(text)  # the longest prefix that fits with the ellipsis
    while low < high:
        mid = (low + high + 1) // 2
        if font.getlength(text[:mid].rstrip() + "...") <= width:
            low = mid
        else:
            high = mid - 1
    return text[:max(low, min(CAPTION_MIN_CHARS, len(text)))].rstrip() + "..."


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """PIL's own default font at ``size`` px (no font file is read or downloaded); its bitmap font on old PIL."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1, or built without FreeType
        return ImageFont.load_default()


def _drawable(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> str:
    """``text`` as ``font`` can draw it: the bitmap font knows Latin-1 only (others become '?')."""
    if isinstance(font, ImageFont.FreeTypeFont):
        return text
    return text.encode("latin-1", "replace").decode("latin-1")


# ---------------------------------------------------------------------------------------------- files
def write_sheet(directory: str | os.PathLike, image: Image.Image) -> Path:
    """Write ``image`` as ``directory/sheet.png`` atomically (a temp file beside it, then a rename)."""
    return atomic_write(Path(directory) / SHEET_NAME, lambda tmp: image.save(tmp, format="PNG"))


def write_index(directory: str | os.PathLike, book: dict) -> Path:
    """Write ``directory/index.html`` atomically: the sheet and a table of ``book`` (zoo.json's content)."""
    page = index_html(book)
    return atomic_write(Path(directory) / INDEX_NAME, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))


def write_pictures(directory: str | os.PathLike, source_generator: Generator, book: dict, *,
                   truncation: float = 0.7, cell: int = CELL, source_name: str | None = None) -> tuple[Path, Path]:
    """Draw ``directory/sheet.png`` from the finished styles of ``book`` (zoo.json's content: its ``seeds``, and each
    "done" style's file beside it, captioned "source -> target") and write ``index.html``; (sheet path, index path).
    Only file names that are safe slugs are read, each when its row's turn comes."""
    directory = Path(directory)
    styles = []
    for style in book.get("styles") or []:
        if not isinstance(style, dict):
            continue
        file = style.get("file")
        if style.get("status") == "done" and isinstance(file, str) and _FILE_RE.fullmatch(file) \
                and (directory / file).is_file():
            styles.append((prompt_caption(style), directory / file))
    seeds = book.get("seeds") or [0]
    rows = render_rows(source_generator, styles, seeds, truncation, cell=cell, source_name=source_name)
    return write_sheet(directory, contact_sheet(rows, cell)), write_index(directory, book)


def prompt_caption(style: dict) -> str:
    """A zoo.json style's caption: "source -> target"."""
    return f"{style.get('source_text', '')} -> {style.get('target_text', '')}"


_COLUMNS = ("Name", "Prompt", "Recipe", "Seed", "Status", "Seconds", "Where", "Figures", "Error")
_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; background: #fff; }
h1 { font-size: 1.4em; margin: 0 0 .3em; }
p.meta { color: #555; margin: 0 0 1em; }
img.sheet { max-width: 100%; height: auto; border: 1px solid #ccc; image-rendering: pixelated; }
table { border-collapse: collapse; margin-top: 1em; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .3em .5em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
tr.failed td { background: #fff3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.figures { white-space: nowrap; }
td.error { color: #a00; max-width: 30em; overflow-wrap: anywhere; }
"""


def index_html(book: dict) -> str:
    """The page ``write_index`` writes: self-contained (inline style, no script, no external address)."""
    esc = _escape
    styles = [s for s in (book.get("styles") or []) if isinstance(s, dict)]
    done = sum(1 for s in styles if s.get("status") == "done")
    failed = sum(1 for s in styles if s.get("status") == "failed")
    seeds = ", ".join(esc(s) for s in (book.get("seeds") or []))
    meta = (f"Source generator <b>{esc(book.get('source', '?'))}</b>; {done} style{'s' * (done != 1)} done"
            + (f", {failed} failed" if failed else "") + (f"; sheet seeds {seeds}" if seeds else "")
            + (f"; updated {esc(book.get('updated'))}" if book.get("updated") else "") + ".")
    rows = "\n".join(_table_row(s) for s in styles)
    head = "".join(f"<th scope=\"col\">{c}</th>" for c in _COLUMNS)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; img-src 'self' file:; style-src 'unsafe-inline'">
<title>nada zoo: {done} styles of {esc(book.get('source', '?'))}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>Style zoo</h1>
<p class="meta">{meta}</p>
<img class="sheet" src="{SHEET_NAME}" alt="Contact sheet: the source's row, then one row per finished style, \
captioned with its prompt; a column per seed">
<table>
<thead><tr>{head}</tr></thead>
<tbody>
{rows}
</tbody>
</table>
</body>
</html>
"""


def _table_row(style: dict) -> str:
    """One ``<tr>`` of the table, every value escaped."""
    esc = _escape
    status = str(style.get("status") or "")
    file = style.get("file")
    name = esc(style.get("name", ""))
    if isinstance(file, str) and _FILE_RE.fullmatch(file):  # a slug beside index.html, nothing else becomes a link
        name = f'<a href="{esc(file)}">{name}</a>'
    prompt = prompt_caption(style)
    seconds = style.get("seconds")
    cells = [
        f"<td>{name}</td>",
        f"<td>{esc(prompt)}</td>",
        f"<td>{esc(style.get('recipe', ''))}{_overrides(style.get('overrides'))}</td>",
        f"<td class=\"num\">{esc(style.get('seed', ''))}</td>",
        f"<td>{esc(status)}</td>",
        f"<td class=\"num\">{_number(seconds, 1)}</td>",
        f"<td>{esc(style.get('where') or '')}</td>",
        f"<td class=\"figures\">{_figures(style.get('figures'))}</td>",
        f"<td class=\"error\">{esc(style.get('error') or '')}</td>",
    ]
    return f"<tr class=\"{'failed' if status == 'failed' else 'done'}\">{''.join(cells)}</tr>"


def _overrides(overrides: object) -> str:
    """`` (key=value ...)`` for a style's overrides, escaped; nothing without any."""
    if not isinstance(overrides, dict) or not overrides:
        return ""
    text = " ".join(f"{k}={','.join(map(str, v)) if isinstance(v, (list, tuple)) else v}" for k, v in overrides.items())
    return f"<br><small>{_escape(text)}</small>"


def _figures(figures: object) -> str:
    """The held-out judge's main numbers (nada.metrics.Evaluation.as_dict), source -> styled, three decimals."""
    if not isinstance(figures, dict):
        return ""
    parts = []
    if "s_dir" in figures:
        parts.append(f"S_dir {_number(figures['s_dir'], 3)}")
    for key, label in (("clip_target", "target"), ("diversity", "diversity")):
        if f"{key}_adapted" in figures:
            parts.append(f"{label} {_number(figures.get(f'{key}_source'), 3)} &rarr; "
                         f"{_number(figures[f'{key}_adapted'], 3)}")
    if "id" in figures:
        parts.append(f"identity {_number(figures['id'], 3)}")
    if figures.get("judged_by"):
        parts.append(f"<small>{_escape(figures['judged_by'])}</small>")
    return "<br>".join(parts)


def _number(value: object, digits: int) -> str:
    """A finite number with ``digits`` decimals; anything else escaped as text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:.{digits}f}"
    return _escape(value if value is not None else "")


def _escape(value: object) -> str:
    """Any value as HTML text (quotes included)."""
    return html.escape(str(value), quote=True)


__all__ = ["render_rows", "contact_sheet", "write_sheet", "write_index", "write_pictures", "prompt_caption",
           "index_html", "fit", "shorten", "caption_height", "SHEET_NAME", "INDEX_NAME", "CELL", "SOURCE_CAPTION"]
