"""A zoo folder (what ``nada zoo PROMPTS --out DIR`` writes) read back as a gallery: its finished styles, where their
files are, and its contact sheet.

Everything in ``zoo.json`` is untrusted (the folder may have been copied from anywhere): a style's name must be a safe
slug (:func:`nada.styles.safe_style_name` leaves it unchanged), its file is ``DIR/<name>.safetensors`` and nothing
else, and that file must resolve inside the folder (a symbolic link out of it is refused). An entry that fails a check
is left out with a readable line in :attr:`ZooGallery.skipped`; a folder or ``zoo.json`` that cannot be read at all
raises :class:`ZooError`. Messages name files by their own names, never by a server path. Only style headers are read
here (no tensors): :func:`read_zoo` is quick enough for an app's start.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..styles import read_style_meta, safe_style_name
from ..styles.style import KINDS
from ..styles.style_file import STYLE_SUFFIX
from .book import ZOO_FILE, ZOO_FORMAT, ZOO_VERSION
from .sheet import SHEET_NAME as SHEET_FILE

MAX_ZOO_JSON_MB = 16  # a zoo of thousands of styles is a few MB; anything larger is not a zoo.json
MAX_TEXT = 200  # characters of a prompt kept for labels


class ZooError(ValueError):
    """A zoo folder that cannot be read: missing, not a folder, or without a readable ``zoo.json``."""


@dataclass(frozen=True)
class ZooStyle:
    """One finished style of a zoo: its name (a safe slug), its file (inside the zoo folder) and its prompt."""

    name: str
    file: Path  # <zoo folder>/<name>.safetensors, resolved
    source_text: str
    target_text: str
    recipe: str

    @property
    def prompt(self) -> str:
        """"Photo -> Witcher" (the target alone when there is no source text)."""
        return f"{self.source_text} -> {self.target_text}" if self.source_text else self.target_text


@dataclass(frozen=True)
class ZooGallery:
    """What a zoo folder offers: the generator its styles were trained from (a registry name, as recorded), the
    finished styles in ``zoo.json`` order, the contact sheet when there is a readable one, and a line per entry left
    out."""

    directory: Path  # resolved
    source: str  # the source generator named in zoo.json
    styles: tuple[ZooStyle, ...]
    sheet: Path | None  # <zoo folder>/sheet.png, resolved; None when missing or unreadable
    skipped: tuple[str, ...]  # why each entry (or the sheet) was left out, in words
    unfinished: int  # entries whose status is not "done" (failed, or still to train)

    def names(self) -> list[str]:
        """The finished styles' names, in ``zoo.json`` order."""
        return [s.name for s in self.styles]


def zoo_style_file(directory: str | os.PathLike, name: object) -> Path:
    """``DIR/<name>.safetensors`` resolved, for a ``name`` that is a safe slug and a file that stays inside ``DIR``;
    ``ValueError`` otherwise (``../evil``, ``/etc/passwd``, a link out of the folder). The file need not exist."""
    root = Path(directory).resolve()
    if not isinstance(name, str) or not _is_slug(name):
        raise ValueError(f"{_quoted(name)} is not a safe style name (letters, digits, '-' and '_' only)")
    path = (root / f"{name}{STYLE_SUFFIX}").resolve()
    if path.parent != root:
        raise ValueError(f"the file of '{name}' leads out of the zoo folder")
    return path


def read_zoo(directory: str | os.PathLike) -> ZooGallery:
    """The gallery of the zoo folder ``directory`` (see the module's docstring for what is checked); :class:`ZooError`
    when the folder or its ``zoo.json`` cannot be read."""
    folder = Path(directory).expanduser()
    label = folder.name or str(folder)
    if not folder.is_dir():
        raise ZooError(f"The zoo folder '{label}' " + ("is not a folder." if folder.exists() else "does not exist."))
    root = folder.resolve()
    book = _read_book(root, label)
    source = book.get("source")
    if not isinstance(source, str) or not source.strip():
        raise ZooError(f"{ZOO_FILE} in '{label}' names no source generator (\"source\").")
    entries = book.get("styles")
    if not isinstance(entries, list):
        raise ZooError(f"{ZOO_FILE} in '{label}' has no list of styles (\"styles\").")
    styles: list[ZooStyle] = []
    skipped: list[str] = []
    unfinished = 0
    for number, entry in enumerate(entries, 1):
        if isinstance(entry, dict) and entry.get("status") != "done":
            unfinished += 1
            continue
        try:
            style = _checked_style(root, entry, source, {s.name for s in styles})
        except ValueError as exc:
            skipped.append(f"style {number} of {ZOO_FILE} left out: {exc}.")
            continue
        styles.append(style)
    sheet, problem = _checked_sheet(root)
    if problem:
        skipped.append(problem)
    return ZooGallery(directory=root, source=source.strip(), styles=tuple(styles), sheet=sheet,
                      skipped=tuple(skipped), unfinished=unfinished)


# ------------------------------------------------------------------------------------------------ internals
def _read_book(root: Path, label: str) -> dict:
    """``zoo.json`` of the folder as a dict of the expected format and version; ZooError otherwise."""
    path = root / ZOO_FILE
    if not path.is_file():
        raise ZooError(f"The folder '{label}' has no {ZOO_FILE}: it is not a zoo folder (nada zoo PROMPTS --out DIR "
                       "writes one).")
    try:
        if path.stat().st_size > MAX_ZOO_JSON_MB * 2**20:
            raise ZooError(f"{ZOO_FILE} in '{label}' is larger than {MAX_ZOO_JSON_MB} MB: not a zoo file.")
        book = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ZooError(f"{ZOO_FILE} in '{label}' is not valid JSON (line {exc.lineno}: {exc.msg}); it may have "
                       "been cut short while copying.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ZooError(f"{ZOO_FILE} in '{label}' could not be read ({type(exc).__name__}).") from None
    if not isinstance(book, dict) or book.get("format") != ZOO_FORMAT:
        raise ZooError(f"{ZOO_FILE} in '{label}' is not a nada zoo file (no \"format\": \"{ZOO_FORMAT}\").")
    version = book.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= ZOO_VERSION:
        raise ZooError(f"{ZOO_FILE} in '{label}' has format version {_quoted(version)}; this nada reads version "
                       f"{ZOO_VERSION}. Update nada.")
    return book


def _checked_style(root: Path, entry: object, source: str, taken: set[str]) -> ZooStyle:
    """The finished style an entry describes, its file checked (safe, inside, a readable style header of ``source``);
    ValueError saying why not."""
    if not isinstance(entry, dict):
        raise ValueError("it is not an object")
    name = entry.get("name")
    path = zoo_style_file(root, name)
    expected = f"{name}{STYLE_SUFFIX}"
    if entry.get("file") not in (None, expected):
        raise ValueError(f"its file {_quoted(entry.get('file'))} is not {expected}")
    if name in taken:
        raise ValueError(f"'{name}' comes twice")
    if not path.is_file():
        raise ValueError(f"'{name}': {expected} is not in the zoo folder")
    try:
        meta = read_style_meta(path)  # the header alone
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own types for a garbled or truncated header
        raise ValueError(f"'{name}': {expected} could not be read ({type(exc).__name__}; it may be corrupt)") from None
    if meta.get("kind", "weights") not in KINDS or not isinstance(meta.get("generator_config"), dict) or \
            not meta.get("source_fingerprint"):
        raise ValueError(f"'{name}': {expected} is not a nada style file")
    if meta.get("source") not in (None, source):
        raise ValueError(f"'{name}': {expected} was trained from '{meta.get('source')}', not the zoo's '{source}'")
    return ZooStyle(name=name, file=path, source_text=_text(entry.get("source_text")),
                    target_text=_text(entry.get("target_text")), recipe=_text(entry.get("recipe")))


def _checked_sheet(root: Path) -> tuple[Path | None, str]:
    """(the contact sheet, "") when ``sheet.png`` is a readable image inside the folder; else (None, why or "")."""
    path = root / SHEET_FILE
    if not path.exists():
        return None, ""
    real = path.resolve()
    if real.parent != root or not real.is_file():
        return None, f"{SHEET_FILE} left out: it is not a file in the zoo folder."
    try:
        with Image.open(real) as image:
            image.verify()
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for a bad file; any of them means "unreadable"
        return None, f"{SHEET_FILE} left out: it is not a readable image ({type(exc).__name__})."
    return real, ""


def _is_slug(name: str) -> bool:
    try:
        return safe_style_name(name) == name
    except ValueError:
        return False


def _text(value: object) -> str:
    """A prompt field as one short line of text ("" when missing)."""
    text = " ".join(str(value).split()) if isinstance(value, (str, int, float)) else ""
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + "…"


def _quoted(value: object) -> str:
    """``value`` quoted for a message, at most 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


__all__ = ["ZOO_FILE", "SHEET_FILE", "ZOO_FORMAT", "ZOO_VERSION", "ZooError", "ZooStyle", "ZooGallery",
           "read_zoo", "zoo_style_file"]
