"""Per-browser-session styles, kept on the server across page reloads.

A :class:`SessionStyles` holds one browser's styles: the styles trained or uploaded there, their files in a private
temp folder, capped in number and in memory. Nothing in it is visible to other browsers.
:class:`BrowserSessions` keeps those stores on the server under an opaque random key that the browser keeps in
``gr.BrowserState`` (localStorage), so a reload finds its styles again; idle sessions expire and are cleaned up.
(The training line is :mod:`nada.app.training_queue`.)
"""

from __future__ import annotations

import copy
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from ..styles import Style, safe_style_name, save_style

MAX_SESSION_STYLES = 8  # styles kept per browser session (the oldest goes first)
MAX_SESSION_STYLE_MB = 1024  # their total tensor size (a full-resolution FFHQ style is ~60-130 MB)


def style_nbytes(style: Style) -> int:
    """Bytes held by a style's tensors."""
    return sum(t.numel() * t.element_size() for t in style.tensors.values())


class SessionStyles:
    """One session's styles: name -> :class:`Style`, each saved as a downloadable ``.safetensors`` file."""

    def __init__(self, max_count: int = MAX_SESSION_STYLES, max_mb: float = MAX_SESSION_STYLE_MB) -> None:
        self.styles: dict[str, Style] = {}  # insertion order = age
        self.files: dict[str, Path] = {}
        self.max_count = int(max_count)
        self.max_bytes = int(max_mb * 2**20)
        self._dir: Path | None = None  # created on first save (a deep copy of an empty store has none)
        self._lock = threading.RLock()  # two tabs of one browser share this store
        self.last_used = time.monotonic()  # the last save or download (BrowserSessions expires idle stores)
        self._inversion: tuple[str, torch.Tensor, str] | None = None  # (photo key, [1, n_latent, 512] codes, edit)

    def __deepcopy__(self, memo: dict) -> SessionStyles:
        """A copy with its own lock (``gr.State`` deep-copies its initial value for every page)."""
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        for name, value in self.__dict__.items():
            setattr(new, name, threading.RLock() if name == "_lock" else copy.deepcopy(value, memo))
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
            self.last_used = time.monotonic()
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

    def add(self, name: str, style: Style) -> tuple[Path, list[str]]:
        """Keep ``style`` as ``name`` and save its file; returns (file, names of the oldest styles dropped to make
        room). Raises ``ValueError`` if the style alone is larger than the session's cap."""
        size = style_nbytes(style)
        if size > self.max_bytes:
            raise ValueError(f"This style holds {size / 2**20:.0f} MB of weights, more than a session may keep "
                             f"({self.max_bytes / 2**20:.0f} MB).")
        dropped = []
        with self._lock:
            while self.styles and (len(self.styles) >= self.max_count or
                                   sum(map(style_nbytes, self.styles.values())) + size > self.max_bytes):
                old = next(iter(self.styles))
                self.remove(old)
                dropped.append(old)
            path = save_style(style, self.directory() / f"{name}.safetensors")
            self.styles[name] = style
            self.files[name] = path
        return path, dropped

    def remove(self, name: str) -> None:
        """Forget one style and delete its file."""
        with self._lock:
            self.styles.pop(name, None)
            path = self.files.pop(name, None)
        if path is not None:
            path.unlink(missing_ok=True)

    def keep_inversion(self, photo: str, codes: torch.Tensor, edit: str = "") -> None:
        """Keep the W+ codes [1, n_latent, 512] of the photo inverted last (``photo``: a key of its content, see
        ``nada.app.handlers.photo_key``; ``edit``: the edit in them, as captioned, or ""), replacing the earlier one:
        a new strength redraws them without inverting again."""
        with self._lock:
            self._inversion = (str(photo), codes.detach().cpu(), str(edit))

    def inversion(self, photo: str) -> tuple[torch.Tensor, str] | None:
        """(kept W+ codes, their edit) when ``photo`` is the photo inverted last in this session, else None."""
        with self._lock:
            if self._inversion is None or self._inversion[0] != photo:
                return None
            return self._inversion[1], self._inversion[2]

    def scratch(self, filename: str) -> Path:
        """A path in this session's folder for a download (overwritten by the next one of the same name)."""
        return self.directory() / filename

    def cleanup(self) -> None:
        """Drop every style and delete the session's folder (called when the session ends)."""
        with self._lock:
            self.styles.clear()
            self.files.clear()
            self._inversion = None
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None


_BROWSER_KEY = re.compile(r"[A-Za-z0-9_-]{20,64}")  # what secrets.token_urlsafe makes; anything else is unknown


@dataclass
class _Browser:
    """One browser's entry in :class:`BrowserSessions`."""

    styles: SessionStyles
    used: float  # time.monotonic() of the last open/touch


class BrowserSessions:
    """Server-side :class:`SessionStyles` keyed by an opaque random key the browser keeps (``gr.BrowserState``).
    A known key finds the same store after a reload; sessions idle for ``ttl_s`` expire, and past
    ``max_sessions`` the least recently used goes; either way its files are deleted."""

    def __init__(self, ttl_s: float = 6 * 3600, max_sessions: int = 256) -> None:
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {max_sessions}")
        self.ttl_s = float(ttl_s)
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
        now = time.monotonic()
        with self._lock:
            gone = self._expire_locked(now)
            known = isinstance(key, str) and _BROWSER_KEY.fullmatch(key) and key in self._browsers
            if not known:
                key = secrets.token_urlsafe(24)
                while key in self._browsers:
                    key = secrets.token_urlsafe(24)
                self._browsers[key] = _Browser(SessionStyles(), now)
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
                entry.used = time.monotonic()
                self._browsers.move_to_end(key)

    def expire(self, now: float | None = None) -> list[str]:
        """Drop the sessions idle for longer than ``ttl_s`` (deleting their files); returns their keys."""
        with self._lock:
            gone = self._expire_locked(time.monotonic() if now is None else now)
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


__all__ = ["SessionStyles", "BrowserSessions", "style_nbytes", "MAX_SESSION_STYLES", "MAX_SESSION_STYLE_MB"]
