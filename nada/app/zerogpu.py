"""GPU handlers on Hugging Face ZeroGPU, and the same process split on any machine for tests.

On a ZeroGPU Space (``SPACES_ZERO_GPU`` set) the ``spaces`` package runs every handler wrapped with ``spaces.GPU`` in
a forked worker process that holds the GPU for a granted duration: arguments and results are pickled across, and
the worker is aborted when the duration runs out. ``spaces`` must be imported before torch initialises CUDA
(:func:`import_spaces_first`, called by ``app.py`` before anything else).

``NADA_FORK_GPU=1`` reproduces that split without ``spaces`` or a GPU (:func:`forked`): each call of a GPU handler
runs in a freshly forked worker, its arguments and results are pickled, and the worker is killed at its duration.
The tests and the tiny app use it to check that Stop, the time limit and uploads during a run work across the
process boundary. Elsewhere :func:`on_gpu` returns the handler unchanged. Each tab's GPU tasks are wrapped together
(:class:`nada.app.wiring.BoundTasks`). This module imports nothing of nada's, nor torch: ``app.py`` imports it first.
"""

from __future__ import annotations

import functools
import inspect
import multiprocessing
import os
import pickle
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "t", "true", "yes", "on"}


def gpu_mode() -> str | None:
    """"zero" on a ZeroGPU Space, "fork" with ``NADA_FORK_GPU=1``, else None (the handler runs in this process)."""
    if _flag("SPACES_ZERO_GPU"):
        return "zero"
    return "fork" if _flag("NADA_FORK_GPU") else None


def import_spaces_first() -> None:
    """On ZeroGPU, import ``spaces`` now: it refuses a process in which CUDA was already initialised."""
    if gpu_mode() == "zero":
        import spaces  # noqa: F401  optional: installed on ZeroGPU Spaces only; must come before CUDA starts


class GpuTaskAborted(RuntimeError):
    """The GPU worker ended before the handler did (its granted duration ran out, or it died)."""


def on_gpu(fn: Callable, duration: Callable[[dict], float] | float = 60) -> Callable:
    """``fn`` as a GPU handler: ``spaces.GPU`` on ZeroGPU, a forked worker with ``NADA_FORK_GPU=1``, else ``fn``.
    ``duration`` (seconds) may be a function of the handler's arguments by name."""
    mode = gpu_mode()
    if mode is None:
        return fn
    seconds = _seconds(fn, duration)
    if mode == "fork":
        return forked(fn, seconds)
    import spaces  # optional: installed on ZeroGPU Spaces only

    return spaces.GPU(duration=seconds)(fn)


def _seconds(fn: Callable, duration: Callable[[dict], float] | float) -> Callable[..., int]:
    """The handler's requested duration for one call's arguments (60 s when they cannot be read)."""
    if not callable(duration):
        return lambda *args, **kwargs: int(duration)
    sig = inspect.signature(fn)

    def seconds(*args, **kwargs) -> int:
        try:
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            return int(duration(bound.arguments))
        except Exception:  # a bad value is reported by the handler itself
            return 60
    return seconds


# ------------------------------------------------------------------------------------------ the fork emulation
def forked(fn: Callable, seconds: Callable[..., int]) -> Callable:
    """``fn`` run in a forked worker per call, arguments and results pickled, killed after ``seconds(*args)``: the
    process split of ZeroGPU on any machine. Streams when ``fn`` is a generator function."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            yield from _call_forked(fn, args, kwargs, seconds(*args, **kwargs), stream=True)
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        for value in _call_forked(fn, args, kwargs, seconds(*args, **kwargs), stream=False):
            return value
        raise GpuTaskAborted("The GPU worker returned nothing.")
    return wrapper


def _call_forked(fn: Callable, args: tuple, kwargs: dict, seconds: float, stream: bool) -> Iterator[Any]:
    """Run ``fn`` in a forked child and yield what it yields (or its return value); raise what it raises."""
    ctx = multiprocessing.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)
    payload = pickle.dumps((args, kwargs))  # as ZeroGPU: the arguments cross pickled, whatever the fork shares
    child = ctx.Process(target=_worker, args=(fn, payload, sender, stream), daemon=True)
    child.start()
    sender.close()
    deadline = time.monotonic() + seconds
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not receiver.poll(left):
                raise GpuTaskAborted(f"The GPU task was stopped after its granted {seconds:.0f} s.")
            try:
                kind, data = receiver.recv()
            except EOFError:
                raise GpuTaskAborted("The GPU worker ended unexpectedly.") from None
            if kind == "item":
                yield pickle.loads(data)
            elif kind == "done":
                return
            else:
                raise _rebuild(data)
    finally:
        receiver.close()
        if child.is_alive():
            child.kill()
        child.join(timeout=10)


def _worker(fn: Callable, payload: bytes, sender, stream: bool) -> None:
    """The child: unpickle the arguments, run ``fn``, send each result pickled, then exit at once."""
    try:
        import torch  # already imported by the parent: the fork shares it

        torch.set_num_threads(1)  # a forked OpenMP pool is not usable; one thread is safe
        args, kwargs = pickle.loads(payload)
        results = fn(*args, **kwargs) if stream else [fn(*args, **kwargs)]
        for item in results:
            sender.send(("item", pickle.dumps(item)))
        sender.send(("done", None))
    except BaseException as exc:  # everything crosses back as a message: the child has no one else to tell
        try:
            sender.send(("error", _describe(exc)))
        except Exception:  # the parent is gone: it reports the worker's end itself (GpuTaskAborted)
            pass
    finally:
        sender.close()
        os._exit(0)  # no atexit handlers, no flushing of the parent's inherited state


def _describe(exc: BaseException) -> tuple[str, str, str | None]:
    """(kind, message, title) of an exception, picklable whatever the exception holds."""
    if isinstance(exc, gr.Error):
        return "gradio", str(exc.message), getattr(exc, "title", None)
    return type(exc).__name__, str(exc), "".join(traceback.format_exception(exc))[-2000:]


def _rebuild(info: tuple[str, str, str | None]) -> Exception:
    kind, message, extra = info
    if kind == "gradio":
        return gr.Error(message, title=extra or "Error", print_exception=False)
    return GpuTaskAborted(f"The GPU worker failed ({kind}: {message}).")

