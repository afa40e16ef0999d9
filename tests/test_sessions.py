"""Browser sessions kept across reloads (their styles kept as files, not tensors), and the line of sessions waiting
for the training slot."""

from __future__ import annotations

import copy
import gc
import re
import threading
import time

import pytest
import torch

from nada.app.sessions import BrowserSessions, SessionStyle, SessionStyles
from nada.app.training_queue import TrainingBusyError, TrainingRuns, TrainingStopped
from nada.styles import load_style, save_style

KEY = re.compile(r"[A-Za-z0-9_-]{20,64}")
FAST = dict(poll_s=0.01, heartbeat_s=0.05)  # short sleeps for the waiting loop


class Clock:
    """A clock the test moves by hand (seconds, as time.monotonic)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def finished(gen) -> bool:
    """Advance ``gen`` once: True if it returned, False if it yielded."""
    try:
        next(gen)
    except StopIteration:
        return True
    return False


def hold(runs: TrainingRuns, session: str):
    """Enter ``runs.slot(session)`` and return the context manager (``.__exit__(None, None, None)`` frees it)."""
    cm = runs.slot(session, total=10)
    cm.__enter__()
    return cm


# ------------------------------------------------------------------------------------------------ browser sessions
def test_reload_with_a_known_key_finds_the_same_styles():
    sessions = BrowserSessions()
    key, styles = sessions.open(None)
    assert KEY.fullmatch(key) and len(styles) == 0
    again_key, again = sessions.open(key)  # the page was reloaded; localStorage sent the key back
    assert again_key == key and again is styles
    other_key, other = sessions.open(None)  # another browser
    assert other_key != key and other is not styles
    assert len(sessions) == 2 and key in sessions and other_key in sessions
    sessions.close_all()
    assert len(sessions) == 0


@pytest.mark.parametrize("bad", [None, "", "short", "../../etc/passwd-aaaaaaaaaaaaaaaaaaaa", "a" * 65,
                                 "has space aaaaaaaaaaaaaaaaaaaa", "x" * 30, 12345])
def test_malformed_or_unknown_keys_get_a_fresh_session(bad):
    sessions = BrowserSessions()
    known, known_styles = sessions.open(None)
    key, styles = sessions.open(bad)
    assert KEY.fullmatch(key) and key not in (bad, known)
    assert styles is not known_styles and len(styles) == 0
    assert (str(bad) not in key) if bad else True  # never echoed back
    assert len(sessions) == 2
    sessions.close_all()


def test_many_threads_opening_one_key_share_one_store():
    sessions = BrowserSessions()
    key, styles = sessions.open(None)
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(sessions.open(key))) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 16 and all(k == key and s is styles for k, s in seen) and len(sessions) == 1


def test_expired_session_is_cleaned_up_and_its_key_forgotten():
    sessions = BrowserSessions(ttl_s=60)
    key, styles = sessions.open(None)
    folder = styles.directory()
    assert folder.is_dir()
    assert sessions.expire(now=time.monotonic() + 30) == []  # not idle long enough
    assert sessions.expire(now=time.monotonic() + 61) == [key]
    assert not folder.exists() and len(sessions) == 0
    new_key, new_styles = sessions.open(key)
    assert new_key != key and new_styles is not styles


def test_open_expires_idle_sessions_and_touch_keeps_them():
    clock = Clock()
    sessions = BrowserSessions(ttl_s=60, clock=clock)
    idle_key, idle = sessions.open(None)
    kept_key, kept = sessions.open(None)
    folder = idle.directory()
    clock.now += 40
    sessions.touch(kept_key)
    sessions.touch("not-a-known-key-aaaaaaaaaaaa")  # ignored
    clock.now += 20  # idle for exactly the TTL: not expired yet
    sessions.open(None)  # any page load sweeps
    assert folder.is_dir() and idle_key in sessions
    clock.now += 1
    sessions.open(None)
    assert not folder.exists() and idle_key not in sessions
    assert kept_key in sessions and sessions.open(kept_key)[1] is kept  # touched 21 s ago
    sessions.close_all()


def test_least_recently_used_session_goes_past_the_cap():
    sessions = BrowserSessions(max_sessions=2)
    a, a_styles = sessions.open(None)
    b, b_styles = sessions.open(None)
    b_folder = b_styles.directory()
    sessions.touch(a)  # b is now the least recently used
    c, _ = sessions.open(None)
    assert len(sessions) == 2 and a in sessions and c in sessions and b not in sessions
    assert not b_folder.exists()
    assert sessions.open(a)[1] is a_styles
    sessions.close_all()


def test_session_styles_deep_copy_gets_its_own_lock_and_folder():
    clock = Clock()
    styles = SessionStyles(max_count=3, clock=clock)
    clone = copy.deepcopy(styles)  # what gr.State does with its initial value for every page
    assert clone is not styles and clone._lock is not styles._lock and clone.max_count == 3
    assert clone.names() == [] and clone.directory() != styles.directory()
    clock.now += 5
    clone.directory()
    assert clone.last_used == 1005.0  # the copy keeps time with the same clock
    clone.cleanup()
    styles.cleanup()


# ------------------------------------------------------------------------------------------------ a session's styles
def test_a_session_keeps_a_styles_file_and_metadata_not_its_tensors(store, session):
    demo = store.published_style("tiny-demo")
    kept, dropped = session.add("demo", demo)
    assert dropped == [] and session.styles["demo"] is kept and isinstance(kept, SessionStyle)
    assert not hasattr(kept, "tensors")  # renders read the file
    assert kept.file == session.directory() / "demo.safetensors" and kept.nbytes == kept.file.stat().st_size
    assert kept.source == "tiny" and kept.kind == "weights" and kept.meta["target_text"] == demo.meta["target_text"]
    saved = load_style(kept.file)
    assert set(saved.tensors) == set(demo.tensors)
    assert all(torch.equal(saved.tensors[k], demo.tensors[k]) for k in demo.tensors)


def test_a_finished_style_file_is_moved_into_the_session_not_rewritten(store, session):
    demo = store.published_style("tiny-demo")
    finished = save_style(demo, session.scratch(".training-run.safetensors"))  # as a training run leaves it
    inode, size = finished.stat().st_ino, finished.stat().st_size
    kept, _ = session.add_file("sketch", finished)
    assert not finished.exists() and kept.file == session.directory() / "sketch.safetensors"
    assert kept.file.stat().st_ino == inode and kept.nbytes == size  # the same file, moved
    assert kept.meta == load_style(kept.file).meta  # its header, read without the tensors
    small = SessionStyles(max_mb=size / 2 / 2**20)
    refused = save_style(demo, small.scratch(".training-big.safetensors"))
    with pytest.raises(ValueError, match="more than a session may keep"):
        small.add_file("big", refused)
    assert not refused.exists() and len(small) == 0  # a refused file is not left behind
    small.cleanup()


# ------------------------------------------------------------------------------------------------ the line
def test_waiters_are_told_how_many_runs_are_ahead_and_go_in_order():
    runs = TrainingRuns()
    a = hold(runs, "a")
    b = runs.waiting("b", **FAST)
    c = runs.waiting("c", **FAST)
    assert next(b) == 1  # only the running one
    assert next(c) == 2
    assert runs.queue_length() == 2
    a.__exit__(None, None, None)
    assert finished(b)  # b's turn: it calls slot() at once
    assert runs.queue_length() == 1
    assert next(c) == 1  # b is about to start
    with pytest.raises(TrainingBusyError, match="about to start"):
        with runs.slot("c"):
            pass
    with runs.slot("b"):
        assert next(c) == 1
    assert finished(c)
    with runs.slot("c"):
        assert runs.busy() and runs.queue_length() == 0


def test_waiting_with_a_free_slot_and_no_line_returns_at_once():
    runs = TrainingRuns()
    assert list(runs.waiting("b", **FAST)) == []
    with runs.slot("b"):
        assert runs.busy()


def test_heartbeat_repeats_an_unchanged_place():
    runs = TrainingRuns()
    a = hold(runs, "a")
    b = runs.waiting("b", poll_s=0.01, heartbeat_s=0.1)
    assert next(b) == 1
    t0 = time.monotonic()
    assert next(b) == 1
    assert 0.08 <= time.monotonic() - t0 < 2.0
    b.close()
    a.__exit__(None, None, None)


def test_threads_train_first_come_first_served():
    runs = TrainingRuns()
    names = [f"w{i}" for i in range(4)]
    heard: dict[str, list[int]] = {n: [] for n in names}
    order: list[str] = []
    errors: list[BaseException] = []

    def wait_then_train(name):
        try:
            for ahead in runs.waiting(name, **FAST):
                heard[name].append(ahead)
            with runs.slot(name):
                order.append(name)
                time.sleep(0.1)
        except BaseException as exc:  # reported below
            errors.append(exc)

    a = hold(runs, "a")
    threads = []
    for i, name in enumerate(names):
        threads.append(threading.Thread(target=wait_then_train, args=(name,)))
        threads[-1].start()
        deadline = time.monotonic() + 2
        while runs.queue_length() < i + 1 and time.monotonic() < deadline:
            time.sleep(0.005)
    assert runs.queue_length() == 4
    a.__exit__(None, None, None)
    for t in threads:
        t.join(timeout=5)
    assert not errors and order == names
    for i, name in enumerate(names):
        places = heard[name]
        assert places[0] == i + 1 and places[-1] == 1  # told its place, which dropped as runs finished
        assert all(x >= y for x, y in zip(places, places[1:]))
    assert runs.queue_length() == 0 and not runs.busy()


def test_stop_while_waiting_leaves_the_line_and_nothing_trains():
    runs = TrainingRuns()
    a = hold(runs, "a")
    outcome: list[BaseException] = []
    trained: list[str] = []

    def wait_then_train():
        try:
            for _ in runs.waiting("b", **FAST):
                pass
            trained.append("b")
        except TrainingStopped as exc:
            outcome.append(exc)

    t = threading.Thread(target=wait_then_train)
    t.start()
    deadline = time.monotonic() + 2
    while runs.queue_length() < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    c = runs.waiting("c", **FAST)
    assert next(c) == 2
    assert runs.is_waiting("b") and runs.involves("b") and runs.involves("a") and not runs.is_waiting("a")
    assert not runs.involves("x")
    assert runs.stop("b") is True
    assert not runs.is_waiting("b") and not runs.involves("b")
    t.join(timeout=2)
    assert not t.is_alive() and not trained
    assert len(outcome) == 1 and "nothing was trained" in str(outcome[0])
    assert runs.stop("b") is False  # neither training nor waiting now
    assert next(c) == 1  # b's place is freed
    a.__exit__(None, None, None)
    assert finished(c)


def test_closing_or_dropping_the_generator_leaves_the_line():
    runs = TrainingRuns()
    a = hold(runs, "a")
    b = runs.waiting("b", **FAST)
    assert next(b) == 1 and runs.queue_length() == 1
    b.close()
    assert runs.queue_length() == 0
    c = runs.waiting("c", **FAST)
    assert next(c) == 1 and runs.queue_length() == 1
    del c
    gc.collect()
    assert runs.queue_length() == 0
    a.__exit__(None, None, None)


def test_silent_waiter_is_skipped_and_rejoins_at_the_end_if_it_comes_back():
    runs = TrainingRuns(waiter_stale_s=0.3)
    a = hold(runs, "a")
    b = runs.waiting("b", **FAST)
    c = runs.waiting("c", **FAST)
    assert next(b) == 1 and next(c) == 2
    time.sleep(0.4)  # neither loop checked in: both silent
    assert next(c) == 1  # c's own check keeps c and skips the abandoned b
    assert runs.queue_length() == 1
    assert next(b) == 2  # b's page came back: it lost its place and waits behind c
    b.close()
    c.close()
    a.__exit__(None, None, None)


def test_abandoned_waiter_does_not_block_slot():
    runs = TrainingRuns(waiter_stale_s=0.3)
    a = hold(runs, "a")
    b = runs.waiting("b", **FAST)
    assert next(b) == 1
    a.__exit__(None, None, None)
    with pytest.raises(TrainingBusyError, match="1 session is waiting"):
        with runs.slot("x"):
            pass
    time.sleep(0.4)
    with runs.slot("x"):  # b never checked in again
        assert runs.queue_length() == 0


def test_line_is_capped():
    runs = TrainingRuns(max_waiting=2)
    a = hold(runs, "a")
    b, c = runs.waiting("b", **FAST), runs.waiting("c", **FAST)
    assert next(b) == 1 and next(c) == 2
    with pytest.raises(TrainingBusyError, match="2 sessions are already waiting .*try again later"):
        next(runs.waiting("d", **FAST))
    assert runs.queue_length() == 2
    b.close()
    d = runs.waiting("d", **FAST)
    assert next(d) == 2  # room again
    c.close()
    d.close()
    a.__exit__(None, None, None)


def test_one_session_cannot_train_and_wait_or_wait_twice():
    runs = TrainingRuns()
    a = hold(runs, "a")
    with pytest.raises(TrainingBusyError, match="This session is already training"):
        next(runs.waiting("a", **FAST))
    b = runs.waiting("b", **FAST)
    assert next(b) == 1
    with pytest.raises(TrainingBusyError, match="already waiting for the GPU .place 1 in line"):
        next(runs.waiting("b", **FAST))
    assert runs.queue_length() == 1  # the refused second try did not take the first one's place
    assert next(b) == 1
    b.close()
    a.__exit__(None, None, None)


def test_only_the_head_of_the_line_takes_a_free_slot():
    runs = TrainingRuns()
    a = hold(runs, "a")
    b, c = runs.waiting("b", **FAST), runs.waiting("c", **FAST)
    assert next(b) == 1 and next(c) == 2
    a.__exit__(None, None, None)
    with pytest.raises(TrainingBusyError, match="2 sessions are waiting for the GPU before this one"):
        with runs.slot("x"):
            pass
    with pytest.raises(TrainingBusyError, match="1 session is waiting for the GPU before this one"):
        with runs.slot("c"):
            pass
    with runs.slot("b"):  # the head may take it directly; it leaves the line
        assert runs.queue_length() == 1
        assert finished(b)
        assert next(c) == 1
    assert finished(c)
    c_slot = hold(runs, "c")
    c_slot.__exit__(None, None, None)
    with runs.slot("x"):  # empty line: as before
        assert runs.busy()


def test_a_hand_over_not_taken_runs_out():
    runs = TrainingRuns(handover_s=0.3)
    a = hold(runs, "a")
    b = runs.waiting("b", **FAST)
    assert next(b) == 1
    a.__exit__(None, None, None)
    assert finished(b)
    with pytest.raises(TrainingBusyError, match="about to start"):
        with runs.slot("x"):
            pass
    time.sleep(0.4)  # b never called slot()
    with runs.slot("x"):
        assert runs.busy()


def test_a_store_in_use_is_not_expired_but_an_idle_one_is():
    clock = Clock()
    sessions = BrowserSessions(ttl_s=60, clock=clock)
    key, styles = sessions.open(None)
    clock.now += 40
    styles.scratch("images.zip")  # the page made a download: in use, though not reloaded
    clock.now += 40  # 80 s since the page opened, 40 s since the download
    assert sessions.expire() == [] and sessions.open(key)[1] is styles
    clock.now += 61
    assert sessions.expire() == [key]


def test_a_page_ending_frees_its_own_store_but_not_a_browsers():
    sessions = BrowserSessions()
    key, kept = sessions.open(None)
    own = SessionStyles()  # an API client's: it never loaded the page, so no key holds it
    for styles in (kept, own):
        styles.scratch("images.zip").write_bytes(b"zip")
    folders = kept.directory(), own.directory()
    sessions.release(kept)  # the page was reloaded: its old state ends, the browser's styles stay
    sessions.release(own)
    assert folders[0].is_dir() and not folders[1].exists()
    assert sessions.open(key)[1] is kept
    sessions.close_all()
    assert not folders[0].exists()
