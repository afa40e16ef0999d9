"""The zoo folder's bookkeeping: ``DIR/zoo.json`` (what was trained, how, where, with which figures) and the style
files beside it, each written atomically the moment its style finishes.

``zoo.json`` (format ``"nada-zoo"``, version 1)::

    {"format": "nada-zoo", "version": 1, "source": "<registry name of the source generator>",
     "seeds": [fixed sheet seeds], "updated": "<iso time>",
     "styles": [{"name", "line", "source_text", "target_text", "recipe", "overrides", "seed", "key", "status",
                 "file", "seconds", "where", "figures", "error", "finished"}, ...]}

A rerun skips a style whose record has status ``"done"``, the same ``key`` and a file that is still there
(:meth:`ZooBook.is_finished`). A corrupt ``zoo.json`` is an error, and is never overwritten.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files import atomic_write
from ..styles import STYLE_SUFFIX, safe_style_name

if TYPE_CHECKING:
    from .prompts import ZooEntry

ZOO_FILE = "zoo.json"
ZOO_FORMAT = "nada-zoo"
ZOO_VERSION = 1
STATUSES = ("done", "failed")


class ZooFolderError(ValueError):
    """A zoo folder that cannot be used (unwritable, or its ``zoo.json`` unreadable or from another source); the
    message names the folder and files by their own names."""


def _now() -> str:
    """The current UTC time as ISO 8601 (seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def check_folder(folder: str | os.PathLike) -> Path:
    """``folder`` once a file could be created and removed in it (made if missing); ``ZooFolderError`` naming the
    folder by its own name otherwise. Run before any training, so no work is lost to an unwritable folder."""
    folder = Path(folder)
    label = folder.name or str(folder)
    if folder.exists() and not folder.is_dir():
        raise ZooFolderError(f"The zoo folder '{label}' is a file, not a folder. Nothing was started.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".zoo.", suffix=".probe", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ZooFolderError(f"The zoo folder '{label}' cannot be written ({exc.strerror or type(exc).__name__}). "
                             "Nothing was started.") from None
    return folder


def style_file_name(name: str) -> str:
    """``<name>.safetensors`` for a style name that is already a safe slug; ``ValueError`` otherwise (a name never
    becomes a path unchecked)."""
    if safe_style_name(name) != name:
        raise ValueError(f"Style name {name!r} is not a safe name (letters, digits, '-' and '_').")
    return name + STYLE_SUFFIX


class ZooBook:
    """The records of one zoo folder, kept in memory and rewritten to ``zoo.json`` atomically after every change."""

    def __init__(self, folder: Path, source: str, seeds: Sequence[int], styles: list[dict] | None = None,
                 updated: str | None = None) -> None:
        self.folder = Path(folder)
        self.source = str(source)
        self.seeds = [int(s) for s in seeds]
        self.styles: dict[str, dict] = {r["name"]: r for r in (styles or [])}  # name -> record, in file order
        self.updated = updated or _now()
        self.reseeded = False  # opened with other sheet seeds than its zoo.json had (the sheet must be drawn again)

    # ------------------------------------------------------------------------------------------- opening
    @classmethod
    def open(cls, folder: str | os.PathLike, source: str, seeds: Sequence[int]) -> ZooBook:
        """The book of ``folder`` (checked writable first): its ``zoo.json`` when there is one, else an empty book.
        ``ZooFolderError`` when that file is corrupt or belongs to another source generator; nothing is written."""
        folder = check_folder(folder)
        path = folder / ZOO_FILE
        if not path.exists():
            return cls(folder, source, seeds)
        data = read_zoo_json(path)
        if data["source"] != str(source):
            raise ZooFolderError(f"The zoo folder '{folder.name}' holds styles of the source generator "
                                 f"'{data['source']}', not '{source}': use another folder (or --source "
                                 f"{data['source']}). Nothing was started.")
        book = cls(folder, source, data.get("seeds") or seeds, data["styles"], data.get("updated"))
        if book.seeds != [int(s) for s in seeds]:
            book.seeds, book.reseeded = [int(s) for s in seeds], True
            book.save()
        return book

    @property
    def path(self) -> Path:
        """``DIR/zoo.json``."""
        return self.folder / ZOO_FILE

    # ------------------------------------------------------------------------------------------- queries
    def is_finished(self, entry: ZooEntry, key: str) -> bool:
        """True when ``entry``'s style is done with the same ``key`` and its file is still in the folder."""
        record = self.styles.get(entry.name)
        return bool(record and record.get("status") == "done" and record.get("key") == key and record.get("file")
                    and (self.folder / style_file_name(entry.name)).is_file())

    def finished(self) -> list[dict]:
        """The records of every finished style whose file is there, in the book's order."""
        return [r for r in self.styles.values()
                if r.get("status") == "done" and r.get("file") and (self.folder / style_file_name(r["name"])).is_file()]

    def style_path(self, name: str) -> Path:
        """``DIR/<name>.safetensors``."""
        return self.folder / style_file_name(name)

    # ------------------------------------------------------------------------------------------- changes
    def record_done(self, entry: ZooEntry, key: str, style_bytes: bytes, *, seconds: float, where: str,
                    figures: dict | None) -> dict:
        """Write the finished style's file (atomically) and record it as done; returns the record."""
        if not style_bytes:
            raise ValueError(f"The style '{entry.name}' came back without its file.")
        path = self.style_path(entry.name)
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(style_bytes))
        return self._record(entry, key, status="done", file=path.name, seconds=seconds, where=where,
                            figures=figures, error=None)

    def record_failed(self, entry: ZooEntry, key: str, error: str, *, seconds: float = 0.0, where: str = "") -> dict:
        """Record a style whose training failed (any file of an earlier run stays as it is); returns the record."""
        return self._record(entry, key, status="failed", file=None, seconds=seconds, where=where, figures=None,
                            error=str(error) or "training failed")

    def _record(self, entry: ZooEntry, key: str, **fields: Any) -> dict:
        record = {**entry.to_dict(), "key": key, **fields, "seconds": round(float(fields["seconds"]), 3),
                  "finished": _now()}
        self.styles[entry.name] = record
        self.save()
        return record

    def save(self) -> Path:
        """Rewrite ``zoo.json`` atomically."""
        self.updated = _now()
        data = {"format": ZOO_FORMAT, "version": ZOO_VERSION, "source": self.source, "seeds": self.seeds,
                "updated": self.updated, "styles": list(self.styles.values())}
        text = json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"
        return atomic_write(self.path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))

    def as_dict(self) -> dict:
        """The book as ``zoo.json`` holds it."""
        return {"format": ZOO_FORMAT, "version": ZOO_VERSION, "source": self.source, "seeds": list(self.seeds),
                "updated": self.updated, "styles": [dict(r) for r in self.styles.values()]}


def read_zoo_json(path: str | os.PathLike) -> dict:
    """The checked contents of a ``zoo.json``; ``ZooFolderError`` naming the file (and its folder) when it cannot be
    read as one."""
    path = Path(path)
    where = f"'{path.parent.name}/{path.name}'"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ZooFolderError(f"{where} cannot be read ({why}); it was left as it is. Move it away or use another "
                             "folder. Nothing was started.") from None
    problem = _problem(data)
    if problem:
        raise ZooFolderError(f"{where} is not a nada zoo file ({problem}); it was left as it is. Move it away or use "
                             "another folder. Nothing was started.")
    return data


def _problem(data: Any) -> str:
    """What is wrong with parsed ``zoo.json`` contents ('' when nothing)."""
    if not isinstance(data, dict) or data.get("format") != ZOO_FORMAT:
        return f"no \"format\": \"{ZOO_FORMAT}\""
    if not isinstance(data.get("version"), int) or data["version"] > ZOO_VERSION:
        return f"version {data.get('version')!r}; this nada reads version {ZOO_VERSION}"
    if not isinstance(data.get("source"), str) or not isinstance(data.get("styles"), list):
        return "no source or styles"
    for i, record in enumerate(data["styles"]):
        if not isinstance(record, dict) or not isinstance(record.get("name"), str) \
                or record.get("status") not in STATUSES:
            return f"style record {i + 1} is malformed"
        try:
            style_file_name(record["name"])
        except ValueError:
            return f"style record {i + 1} has an unsafe name"
    return ""


__all__ = ["ZooBook", "ZooFolderError", "check_folder", "read_zoo_json", "style_file_name", "ZOO_FILE", "ZOO_FORMAT",
           "ZOO_VERSION"]
