"""Per-browser-session styles and the process-wide training slot, for the app.

A :class:`SessionStyles` lives in one browser session's ``gr.State``: the styles trained or uploaded there, their
files in a private temp folder, capped in number and in memory. Nothing in it is visible to other sessions.
:class:`TrainingRuns` lets one training run use the accelerator at a time and lets Stop find the run of the
session that pressed it.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .styles import Style, safe_style_name, save_style

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

    def __len__(self) -> int:
        return len(self.styles)

    def __contains__(self, name: object) -> bool:
        return name in self.styles

    def names(self) -> list[str]:
        """Style names, oldest first."""
        return list(self.styles)

    def directory(self) -> Path:
        """This session's private temp folder (created on first use)."""
        if self._dir is None or not self._dir.is_dir():
            self._dir = Path(tempfile.mkdtemp(prefix="nada-session-"))
        return self._dir

    def unique_name(self, text: str) -> str:
        """A safe slug of ``text`` not yet used in this session ("witcher", "witcher-2", ...)."""
        base = safe_style_name(text)
        name, i = base, 2
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
        self.styles.pop(name, None)
        path = self.files.pop(name, None)
        if path is not None:
            path.unlink(missing_ok=True)

    def scratch(self, filename: str) -> Path:
        """A path in this session's folder for a download (overwritten by the next one of the same name)."""
        return self.directory() / filename

    def cleanup(self) -> None:
        """Drop every style and delete the session's folder (called when the session ends)."""
        self.styles.clear()
        self.files.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


class TrainingBusyError(RuntimeError):
    """Another training run holds the accelerator."""


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


class TrainingRuns:
    """One training run at a time per process. A run silent for ``stale_after_s`` (its page was abandoned and its
    generator never resumed) is told to stop and loses the slot to the next one."""

    def __init__(self, stale_after_s: float = 600.0) -> None:
        self.stale_after_s = float(stale_after_s)
        self._lock = threading.Lock()
        self._active: TrainingRun | None = None
        self._flags = Path(tempfile.mkdtemp(prefix="nada-stop-"))  # private (0700): one stop flag per run
        self._count = itertools.count(1)

    @contextmanager
    def slot(self, session: str, total: int = 0) -> Iterator[TrainingRun]:
        """Hold the training slot for ``session`` while the block runs; ``TrainingBusyError`` if it is taken."""
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

    def beat(self, run: TrainingRun, step: int) -> None:
        """Record progress of ``run`` (keeps it from being treated as abandoned)."""
        run.step = step
        run.beat = time.monotonic()

    def stop(self, session: str) -> bool:
        """Ask the run of ``session`` to stop after its current step; False if that session is not training."""
        with self._lock:
            run = self._active
            if run is None or run.session != session:
                return False
            run.stop_event.set()
            return True

    def busy(self) -> bool:
        """True while some run holds the slot."""
        with self._lock:
            return self._active is not None


__all__ = ["SessionStyles", "TrainingRuns", "TrainingRun", "StopFlag", "TrainingBusyError", "style_nbytes",
           "MAX_SESSION_STYLES", "MAX_SESSION_STYLE_MB"]
