"""Per-browser-session styles, kept on the server across page reloads.

A :class:`SessionStyles` holds one browser's styles: those trained, uploaded or mixed there, each a ``.safetensors``
file in the session's private temp folder, capped in number and in total file size; and the generators uploaded
there (:class:`SessionGenerator`: a copy of the file in that folder, by the model store's key), which no other
session can use. It keeps each style's file and
metadata (:class:`SessionStyle`), never its tensors: a render reads them from the file. Nothing in it is visible to
other browsers. :class:`BrowserSessions` keeps those stores under an opaque random key that the browser keeps in
``gr.BrowserState`` (localStorage), so a reload finds its styles again (as the page opens:
:func:`nada.app.style_menus.restore_session`); idle sessions expire and are cleaned up.
"""

from __future__ import annotations

import copy
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch

from ..styles import Style, read_style_meta, safe_style_name, save_style

MAX_SESSION_STYLES = 8  # styles kept per browser session (the oldest goes first)
MAX_SESSION_STYLE_MB = 1024  # their files' total size (a full-resolution FFHQ style is ~60-130 MB)
MAX_SESSION_GENERATORS = 2  # generators uploaded per browser session (the oldest goes first)
T = TypeVar("T")  # what a writer returns (SessionStyles.add_written)

Clock = Callable[[], float]  # seconds, as time.monotonic (tests pass their own)


@dataclass(frozen=True)
class SessionStyle:
    """One style of a session, as the session keeps it: its file and its metadata. The tensors stay in the file;
    a render reads them from there."""

    file: Path  # <session folder>/<name>.safetensors: rendered from, and downloaded
    meta: dict  # the file's metadata: source, source_text, target_text, kind, imported_from, mixed_from, ...
    nbytes: int  # the file's size (the session's cap counts these)

    @property
    def source(self) -> str | None:
        """The generator the style was made from (as recorded)."""
        return self.meta.get("source")

    @property
    def kind(self) -> str:
        """"weights", "style_delta", "modulation" or "mixed" (:attr:`nada.styles.Style.kind`, as recorded)."""
        return self.meta.get("kind") or "weights"


@dataclass(frozen=True)
class SessionGenerator:
    """A generator uploaded in this session: the model store's key for it, its file's copy in the session's folder,
    and how it is named."""

    key: str  # "own:<fingerprint>" (nada.model_store.ModelStore.add_generator): the value the page shows
    file: Path  # <session folder>/generators/<file name>
    label: str  # "your model: cats.pkl"
    summary: str  # what the file holds, in words


def _file_bytes(style: Style) -> int:
    """The bytes of ``style``'s tensors in its file (:func:`nada.styles.save_style` writes float32)."""
    return sum(t.numel() * 4 for t in style.tensors.values())


class SessionStyles:
    """One session's styles: name -> :class:`SessionStyle`, each a downloadable ``.safetensors`` file in the
    session's folder. ``clock``: seconds, as ``time.monotonic`` (when the store was last used)."""

    def __init__(self, max_count: int = MAX_SESSION_STYLES, max_mb: float = MAX_SESSION_STYLE_MB,
                 clock: Clock = time.monotonic) -> None:
        self.styles: dict[str, SessionStyle] = {}  # insertion order = age
        self.max_count = int(max_count)
        self.max_bytes = int(max_mb * 2**20)
        self._clock = clock
        self._dir: Path | None = None  # created on first save (a deep copy of an empty store has none)
        self._lock = threading.RLock()  # two tabs of one browser share this store
        self.last_used = clock()  # the last save or download (BrowserSessions expires idle stores)
        self._inversion: tuple[str, torch.Tensor, str] | None = None  # (photo key, [1, n_latent, 512] codes, edit)
        self.generators: dict[str, SessionGenerator] = {}  # uploaded generators by key, oldest first

    def __deepcopy__(self, memo: dict) -> SessionStyles:
        """A copy with its own lock and the same clock (``gr.State`` deep-copies its initial value for every page)."""
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        shared = {"_lock": threading.RLock(), "_clock": self._clock}
        for name, value in self.__dict__.items():
            setattr(new, name, shared[name] if name in shared else copy.deepcopy(value, memo))
        return new

    def __len__(self) -> int:
        return len(self.styles)

    def __contains__(self, name: object) -> bool:
        return name in self.styles

    def names(self) -> list[str]:
        """Style names, oldest first."""
        with self._lock:
            return list(self.styles)

    def directory(self) -> Path:
        """This session's private temp folder (created on first use)."""
        with self._lock:
            self.last_used = self._clock()
            if self._dir is None or not self._dir.is_dir():
                self._dir = Path(tempfile.mkdtemp(prefix="nada-session-"))
            return self._dir

    def unique_name(self, text: str) -> str:
        """A safe slug of ``text`` not yet used in this session ("witcher", "witcher-2", ...)."""
        base = safe_style_name(text)
        name, i = base, 2
        with self._lock:
            while name in self.styles:
                name = f"{base[:60]}-{i}"
                i += 1
        return name

    def add(self, name: str, style: Style) -> tuple[SessionStyle, list[str]]:
        """Write ``style`` into this session's folder as ``name`` (once) and keep its file and metadata; returns (what
        is kept, names of the oldest styles dropped to make room). ``ValueError`` if the style alone is larger than
        the session's cap."""
        size = _file_bytes(style)
        self._refuse_over_cap(size)
        with self._lock:
            dropped = self._make_room(size)
            path = save_style(style, self._file(name))
            return self._keep(name, path, dict(style.meta)), dropped

    def add_file(self, name: str, path: str | os.PathLike) -> tuple[SessionStyle, list[str]]:
        """Keep the style file at ``path`` (in this session's folder, e.g. a finished training run's) as ``name``: it
        is moved into place (``os.replace``), its tensors unread; returns (what is kept, names of the oldest styles
        dropped to make room). The file is the session's from then on: refused (``ValueError``: larger than the
        session's cap), it is deleted."""
        path = Path(path)
        try:
            size = path.stat().st_size
            self._refuse_over_cap(size)
            meta = read_style_meta(path)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        with self._lock:
            dropped = self._make_room(size)
            target = self._file(name)
            os.replace(path, target)
            return self._keep(name, target, meta), dropped

    def add_written(self, base: str, kind: str, write: Callable[[Path], T]) -> tuple[str, SessionStyle, list[str], T]:
        """Keep a style that ``write(path)`` writes into a fresh scratch file of this session (a mix, an instant
        style) under a unique name from ``base``: (name, what is kept, names dropped to make room, what ``write``
        returned). The scratch file is deleted when ``write`` fails."""
        tmp = self.scratch(f".{kind}-{uuid.uuid4().hex[:12]}.safetensors")
        try:
            result = write(tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        name = self.unique_name(base)
        kept, dropped = self.add_file(name, tmp)  # moved into place, not read again
        return name, kept, dropped, result

    def remove(self, name: str) -> None:
        """Forget one style and delete its file."""
        with self._lock:
            kept = self.styles.pop(name, None)
        if kept is not None:
            kept.file.unlink(missing_ok=True)

    def keep_inversion(self, photo: str, codes: torch.Tensor, edit: str = "") -> None:
        """Keep the W+ codes [1, n_latent, 512] of the photo inverted last (``photo``: a key of its content, see
        ``nada.app.invert_tab.photo_key``; ``edit``: the edit in them, as captioned, or ""), replacing the earlier
        one: a new strength redraws them without inverting again."""
        with self._lock:
            self._inversion = (str(photo), codes.detach().cpu(), str(edit))

    def inversion(self, photo: str) -> tuple[torch.Tensor, str] | None:
        """(kept W+ codes, their edit) when ``photo`` is the photo inverted last in this session, else None."""
        with self._lock:
            if self._inversion is None or self._inversion[0] != photo:
                return None
            return self._inversion[1], self._inversion[2]

    def keep_generator(self, generator: SessionGenerator, max_count: int = MAX_SESSION_GENERATORS) -> list[str]:
        """Keep an uploaded generator (its file already in this session's folder, see :meth:`generator_file`); the
        same key again replaces it. Returns the labels of the oldest generators dropped to make room (their files
        are deleted)."""
        with self._lock:
            self.last_used = self._clock()
            old = self.generators.pop(generator.key, None)
            if old is not None and old.file != generator.file:
                old.file.unlink(missing_ok=True)
            dropped = []
            while self.generators and len(self.generators) >= max_count:
                gone = self.generators.pop(next(iter(self.generators)))
                gone.file.unlink(missing_ok=True)
                dropped.append(gone.label)
            self.generators[generator.key] = generator
            return dropped

    def generator(self, key: object) -> SessionGenerator | None:
        """The uploaded generator of ``key`` when this session has it (its file still there), else None."""
        with self._lock:
            kept = self.generators.get(key) if isinstance(key, str) else None
            return kept if kept is not None and kept.file.is_file() else None

    def generator_file(self, filename: str) -> Path:
        """A path for an uploaded generator's copy: ``generators/<filename>`` in this session's folder (a folder of
        its own, so that its name never meets a style's file)."""
        folder = self.directory() / "generators"
        folder.mkdir(exist_ok=True)
        return folder / filename

    def scratch(self, filename: str) -> Path:
        """A path in this session's folder for a download (overwritten by the next one of the same name)."""
        return self.directory() / filename

    def cleanup(self) -> None:
        """Drop every style and delete the session's folder (called when the session ends)."""
        with self._lock:
            self.styles.clear()
            self.generators.clear()
            self._inversion = None
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None

    def _refuse_over_cap(self, size: int) -> None:
        """``ValueError`` for a style of ``size`` bytes, larger than the whole cap."""
        if size > self.max_bytes:
            raise ValueError(f"This style holds {size / 2**20:.0f} MB of weights, more than a session may keep "
                             f"({self.max_bytes / 2**20:.0f} MB).")

    # The helpers below run with the lock held.
    def _make_room(self, size: int) -> list[str]:
        """Drop the oldest styles until one more of ``size`` bytes fits; returns their names."""
        dropped = []
        while self.styles and (len(self.styles) >= self.max_count or
                               sum(s.nbytes for s in self.styles.values()) + size > self.max_bytes):
            old = next(iter(self.styles))
            self.remove(old)
            dropped.append(old)
        return dropped

    def _file(self, name: str) -> Path:
        return self.directory() / f"{name}.safetensors"

    def _keep(self, name: str, path: Path, meta: dict) -> SessionStyle:
        kept = SessionStyle(file=path, meta=meta, nbytes=path.stat().st_size)
        self.styles[name] = kept
        return kept


_BROWSER_KEY = re.compile(r"[A-Za-z0-9_-]{20,64}")  # what secrets.token_urlsafe makes; anything else is unknown


@dataclass
class _Browser:
    """One browser's entry in :class:`BrowserSessions`."""

    styles: SessionStyles
    used: float  # the clock's time of the last open/touch


class BrowserSessions:
    """Server-side :class:`SessionStyles` keyed by an opaque random key the browser keeps (``gr.BrowserState``).
    A known key finds the same store after a reload; sessions idle for ``ttl_s`` expire, and past
    ``max_sessions`` the least recently used goes; either way its files are deleted."""

    def __init__(self, ttl_s: float = 6 * 3600, max_sessions: int = 256, clock: Clock = time.monotonic) -> None:
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {max_sessions}")
        self.ttl_s = float(ttl_s)
        self._clock = clock  # seconds, as time.monotonic; each browser's store keeps time with it too
        self.max_sessions = int(max_sessions)
        self._lock = threading.Lock()
        self._browsers: OrderedDict[str, _Browser] = OrderedDict()  # least recently used first

    def __len__(self) -> int:
        with self._lock:
            return len(self._browsers)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._browsers

    def open(self, key: str | None) -> tuple[str, SessionStyles]:
        """The (key, styles) of the browser that sent ``key``; a missing, malformed, unknown or expired key gets a
        new key and an empty store. Expires idle sessions and drops the least recently used past the cap."""
        now = self._clock()
        with self._lock:
            gone = self._expire_locked(now)
            known = isinstance(key, str) and _BROWSER_KEY.fullmatch(key) and key in self._browsers
            if not known:
                key = secrets.token_urlsafe(24)
                while key in self._browsers:
                    key = secrets.token_urlsafe(24)
                self._browsers[key] = _Browser(SessionStyles(clock=self._clock), now)
            entry = self._browsers[key]
            entry.used = now
            self._browsers.move_to_end(key)
            while len(self._browsers) > self.max_sessions:
                gone.append(self._browsers.popitem(last=False))
        for _, old in gone:
            old.styles.cleanup()
        return key, entry.styles

    def touch(self, key: str) -> None:
        """Mark the session of ``key`` as used now (an unknown key is ignored)."""
        with self._lock:
            entry = self._browsers.get(key)
            if entry is not None:
                entry.used = self._clock()
                self._browsers.move_to_end(key)

    def expire(self, now: float | None = None) -> list[str]:
        """Drop the sessions idle for longer than ``ttl_s`` at ``now`` (default: the clock's), deleting their files;
        returns their keys."""
        with self._lock:
            gone = self._expire_locked(self._clock() if now is None else now)
        for _, old in gone:
            old.styles.cleanup()
        return [key for key, _ in gone]

    def release(self, styles: SessionStyles) -> None:
        """A page's ``gr.State`` ended: delete ``styles``'s files unless a browser key keeps them for reloads (a
        page that never loaded, such as an API client, has a store of its own that ends with it)."""
        with self._lock:
            kept = any(entry.styles is styles for entry in self._browsers.values())
        if not kept:
            styles.cleanup()

    def close_all(self) -> None:
        """Drop every session and delete its files (app shutdown)."""
        with self._lock:
            gone = list(self._browsers.values())
            self._browsers.clear()
        for old in gone:
            old.styles.cleanup()

    def _expire_locked(self, now: float) -> list[tuple[str, _Browser]]:
        """Remove the expired entries (the lock is held) and return them, for cleanup outside the lock."""
        gone = [(key, entry) for key, entry in self._browsers.items()
                if now - max(entry.used, entry.styles.last_used) > self.ttl_s]  # a page in use is not idle
        for key, _ in gone:
            del self._browsers[key]
        return gone
