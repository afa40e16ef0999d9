"""Per-browser-session styles and the process-wide training slot, for the app.

A :class:`SessionStyles` holds one browser's styles: the styles trained or uploaded there, their files in a private
temp folder, capped in number and in memory. Nothing in it is visible to other browsers.
:class:`BrowserSessions` keeps those stores on the server under an opaque random key that the browser keeps in
``gr.BrowserState`` (localStorage), so a reload finds its styles again; idle sessions expire and are cleaned up.
:class:`TrainingRuns` lets one training run use the accelerator at a time, lines up the sessions that wait for it
(first come, first served), and lets Stop find the run, or the place in line, of the session that pressed it.
"""

from __future__ import annotations

import copy
import itertools
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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


class TrainingBusyError(RuntimeError):
    """Another training run holds the accelerator (or this session may not wait for it)."""


class TrainingStopped(RuntimeError):
    """Stop was pressed while the session waited in line: it left the line and nothing was trained."""


class StopFlag:
    """A stop signal every process sees: a file in a private folder. ``set``/``is_set``/``clear`` like a
    ``threading.Event``; it pickles as its path, so it crosses into a GPU worker process (ZeroGPU, ``NADA_FORK_GPU``)
    where the training loop reads it while the main process sets it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def set(self) -> None:
        self.path.touch()

    def is_set(self) -> bool:
        return self.path.exists()

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"StopFlag({'set' if self.is_set() else 'clear'})"


@dataclass
class TrainingRun:
    """The run holding the training slot."""

    session: str  # the browser session that started it
    stop_event: StopFlag  # set() to stop the run after its current step, from any process
    started: float = field(default_factory=time.monotonic)
    beat: float = field(default_factory=time.monotonic)  # last sign of life (a finished step)
    step: int = 0
    total: int = 0


@dataclass
class _Waiter:
    """A session's place in the line of :class:`TrainingRuns`."""

    session: str
    beat: float  # last check by its waiting loop (time.monotonic)
    left: str = ""  # why it left the line: "stopped", "skipped" (silent too long), "admitted", "closed"


class TrainingRuns:
    """One training run at a time per process, and a first-come, first-served line of sessions waiting for it.
    A run silent for ``stale_after_s`` (its page was abandoned and its generator never resumed) is told to stop and
    loses the slot to the next one; a waiter silent for ``waiter_stale_s`` loses its place in line."""

    def __init__(self, stale_after_s: float = 600.0, max_waiting: int = 8, waiter_stale_s: float = 30.0,
                 handover_s: float = 2.0) -> None:
        self.stale_after_s = float(stale_after_s)
        self.max_waiting = int(max_waiting)
        self.waiter_stale_s = float(waiter_stale_s)
        self.handover_s = float(handover_s)  # how long a free slot is kept for the waiter that reached it
        # Re-entrant: a waiting generator dropped mid-operation may run its ``finally`` on this very thread.
        self._lock = threading.RLock()
        self._active: TrainingRun | None = None
        self._line: OrderedDict[str, _Waiter] = OrderedDict()  # session -> place; first = head of the line
        self._handover: tuple[str, float] | None = None  # (session, until): the slot is kept for it until then
        self._flags = Path(tempfile.mkdtemp(prefix="nada-stop-"))  # private (0700): one stop flag per run
        self._count = itertools.count(1)

    @contextmanager
    def slot(self, session: str, total: int = 0) -> Iterator[TrainingRun]:
        """Hold the training slot for ``session`` while the block runs; ``TrainingBusyError`` if it is taken, or if
        other sessions wait and ``session`` is not the head of the line."""
        now = time.monotonic()
        with self._lock:
            cur = self._active
            if cur is not None and now - cur.beat < self.stale_after_s:
                mine = cur.session == session
                raise TrainingBusyError(
                    ("This session is already training" if mine else "Another training run is using the GPU") +
                    f" (step {cur.step}/{cur.total}, started {now - cur.started:.0f} s ago). "
                    + ("Press Stop first, or wait for it to finish." if mine else
                       "Please wait for it to finish and press Train again."))
            self._prune(now)
            held = self._held_for(now)
            if held is not None and held != session:
                raise TrainingBusyError("Another session is about to start training on the GPU. "
                                        "Please wait for it to finish and press Train again.")
            if held is None and self._line and next(iter(self._line)) != session:
                ahead = list(self._line).index(session) if session in self._line else len(self._line)
                raise TrainingBusyError(f"{_sessions(ahead)} waiting for the GPU before this one. "
                                        "Please wait for your turn.")
            self._handover = None
            if session in self._line:
                self._leave(self._line[session], "admitted")
            if cur is not None:
                cur.stop_event.set()  # stale: make it stop if it ever resumes
            run = TrainingRun(session, StopFlag(self._flags / f"run{next(self._count)}.stop"), total=total)
            self._active = run
        try:
            yield run
        finally:
            with self._lock:
                if self._active is run:
                    self._active = None
            run.stop_event.clear()

    def waiting(self, session: str, poll_s: float = 0.5, heartbeat_s: float = 5.0) -> Iterator[int]:
        """Wait in line for the slot: yields how many runs are ahead (the active one counts) when that changes and
        at least every ``heartbeat_s``; returns when ``session`` may call :meth:`slot` at once. Raises
        ``TrainingBusyError`` (already training or waiting, line full) or ``TrainingStopped`` (Stop pressed)."""
        with self._lock:
            me = self._join(session, time.monotonic())
        try:
            told: int | None = None
            told_at = 0.0
            while True:
                with self._lock:
                    now = time.monotonic()
                    if me.left == "stopped":
                        raise TrainingStopped("Left the line before training started; nothing was trained.")
                    if me.left == "admitted":  # took the slot directly
                        return
                    if me.left == "skipped":  # silent too long: back to the end of the line
                        me = self._join(session, now)
                    me.beat = now
                    ahead = self._ahead(me, now)
                    if ahead == 0:
                        self._leave(me, "admitted")
                        self._handover = (session, now + self.handover_s)
                        return
                if ahead != told or now - told_at >= heartbeat_s:
                    told, told_at = ahead, now
                    yield ahead
                else:
                    time.sleep(poll_s)
        finally:
            with self._lock:
                self._leave(me, "closed")

    def beat(self, run: TrainingRun, step: int) -> None:
        """Record progress of ``run`` (keeps it from being treated as abandoned)."""
        run.step = step
        run.beat = time.monotonic()

    def stop(self, session: str) -> bool:
        """Ask the run of ``session`` to stop after its current step, or take ``session`` out of the line; False if
        that session is neither training nor waiting."""
        with self._lock:
            run = self._active
            if run is not None and run.session == session:
                run.stop_event.set()
                return True
            waiter = self._line.get(session)
            if waiter is None:
                return False
            self._leave(waiter, "stopped")
            return True

    def busy(self) -> bool:
        """True while some run holds the slot."""
        with self._lock:
            return self._active is not None

    def is_waiting(self, session: str) -> bool:
        """True while ``session`` has a place in the line."""
        with self._lock:
            return session in self._line

    def involves(self, session: str) -> bool:
        """True while ``session`` trains or waits in line."""
        with self._lock:
            return session in self._line or (self._active is not None and self._active.session == session)

    def queue_length(self) -> int:
        """How many sessions wait in line (not counting the active run)."""
        with self._lock:
            self._prune(time.monotonic())
            return len(self._line)

    # The helpers below run with the lock held.
    def _join(self, session: str, now: float) -> _Waiter:
        """Put ``session`` at the end of the line, or raise ``TrainingBusyError`` saying why it may not wait."""
        self._prune(now)
        cur = self._active
        if cur is not None and cur.session == session and now - cur.beat < self.stale_after_s:
            raise TrainingBusyError(f"This session is already training (step {cur.step}/{cur.total}). "
                                    "Press Stop first, or wait for it to finish.")
        if session in self._line:
            place = list(self._line).index(session) + 1
            raise TrainingBusyError(f"This session is already waiting for the GPU (place {place} in line). "
                                    "Press Stop to leave the line, or wait for your turn.")
        if len(self._line) >= self.max_waiting:
            raise TrainingBusyError(f"{_sessions(len(self._line))} already waiting for the GPU, as many as may wait. "
                                    "Please try again later.")
        waiter = _Waiter(session, now)
        self._line[session] = waiter
        return waiter

    def _leave(self, waiter: _Waiter, why: str) -> None:
        """Take ``waiter`` out of the line (if it still holds its place), recording why."""
        if self._line.get(waiter.session) is waiter:
            del self._line[waiter.session]
            waiter.left = why

    def _prune(self, now: float) -> None:
        """Skip the waiters whose loop has not checked in for ``waiter_stale_s`` (their page was abandoned)."""
        for waiter in [w for w in self._line.values() if now - w.beat > self.waiter_stale_s]:
            self._leave(waiter, "skipped")

    def _held_for(self, now: float) -> str | None:
        """The session a free slot is being handed to, if the hand-over has not run out."""
        if self._handover is not None and now >= self._handover[1]:
            self._handover = None
        return None if self._handover is None else self._handover[0]

    def _ahead(self, me: _Waiter, now: float) -> int:
        """Runs ahead of ``me``: the waiters before it, plus one if the slot is taken or being handed over."""
        self._prune(now)
        cur = self._active
        held = self._held_for(now)
        taken = (cur is not None and now - cur.beat < self.stale_after_s) or (held is not None and held != me.session)
        return list(self._line).index(me.session) + int(taken)


def _sessions(n: int) -> str:
    """Phrase a count for messages: "1 session is", "3 sessions are"."""
    return f"{n} session is" if n == 1 else f"{n} sessions are"


__all__ = ["SessionStyles", "BrowserSessions", "TrainingRuns", "TrainingRun", "StopFlag", "TrainingBusyError",
           "TrainingStopped", "style_nbytes", "MAX_SESSION_STYLES", "MAX_SESSION_STYLE_MB"]
