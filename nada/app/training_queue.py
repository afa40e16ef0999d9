"""The training line: one training run uses the accelerator at a time, in every process of the app.

:class:`TrainingRuns` holds the slot of the run that trains, lines up the sessions that wait for it (first come,
first served) and lets Stop find the run, or the place in line, of the session that pressed it. A run's
:class:`StopFlag` is a file, so Stop reaches a run in a GPU worker process (ZeroGPU, ``NADA_FORK_GPU=1``).
"""

from __future__ import annotations

import itertools
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


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

