"""Gradio plumbing for the app's handlers: readable errors, binding models to handlers, ZeroGPU wrapping.

Nothing here knows about StyleGAN: it turns exceptions into ``gr.Error`` messages a person understands, keeps a
bound handler looking like the original to Gradio (streaming, ``gr.Request`` injection), and wraps GPU handlers with
``spaces.GPU`` on Hugging Face ZeroGPU.
"""

from __future__ import annotations

import functools
import html
import inspect
import logging
from collections.abc import Callable
from typing import Any

import gradio as gr
import torch

from .align import AlignmentUnavailableError, NoFaceError
from .images import ImageInputError
from .sessions import TrainingBusyError
from .styles import StyleFileError, StyleMismatchError
from .weights import CheckpointError, WeightsUnavailableError

log = logging.getLogger(__name__)

OOM_HINT = ("The GPU ran out of memory. Try again with fewer images, a smaller batch size, or a single CLIP model "
            "(ViT-B/32); if others are using the app, wait a minute and retry.")


def _user_error(exc: BaseException) -> gr.Error:
    """The ``gr.Error`` a person sees for ``exc``."""
    if isinstance(exc, torch.OutOfMemoryError):
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return gr.Error(OOM_HINT, title="Out of GPU memory", print_exception=False)
    if isinstance(exc, MemoryError):
        return gr.Error("The server ran out of memory for this request. Try fewer images or a smaller batch, or "
                        "try again later.", title="Out of memory", print_exception=False)
    titles = [(WeightsUnavailableError, "Weights missing"), (NoFaceError, "No face found"),
              (ImageInputError, "Unusable image"), (StyleMismatchError, "Style does not fit"),
              (StyleFileError, "Not a style file"), (CheckpointError, "Unusable file"),
              (AlignmentUnavailableError, "Face alignment unavailable"), (TrainingBusyError, "Busy"),
              (ValueError, "Invalid input")]
    for cls, title in titles:
        if isinstance(exc, cls):
            return gr.Error(html.escape(str(exc), quote=False), title=title, print_exception=False)
    log.exception("unexpected error in a handler", exc_info=exc)
    return gr.Error(f"Something went wrong ({type(exc).__name__}: {html.escape(str(exc)[:300], quote=False)}). "
                    "The app is still running; please try again.", title="Error", print_exception=False)


def user_errors(fn: Callable) -> Callable:
    """Decorator: known failures of ``fn`` (a function or a generator function) become readable ``gr.Error``s."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as exc:
                raise _user_error(exc) from exc
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            raise _user_error(exc) from exc
    return wrapper


def bind(fn: Callable, *deps: Any) -> Callable:
    """``fn`` with its first arguments fixed to ``deps`` (models, run registry), as Gradio needs it: a generator
    function stays one (streaming), and the remaining parameters and type hints (``gr.Request``) stay visible."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            yield from fn(*deps, *args, **kwargs)
    else:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            return fn(*deps, *args, **kwargs)
    wrapper.__signature__ = inspect.signature(functools.partial(fn, *deps))
    return wrapper


def on_gpu(fn: Callable, duration: Callable[[dict], float] | float = 60) -> Callable:
    """Wrap a handler with ``spaces.GPU`` on Hugging Face ZeroGPU (a no-op elsewhere, and when ``spaces`` is not
    installed). ``duration`` (seconds) may be a function of the handler's arguments by name."""
    try:
        import spaces
    except ImportError:
        return fn
    if callable(duration):
        sig = inspect.signature(fn)

        def seconds(*args, **kwargs) -> int:
            try:
                bound = sig.bind(*args, **kwargs)
                bound.apply_defaults()
                return int(duration(bound.arguments))
            except Exception:  # a bad value is reported by the handler itself
                return 60
        return spaces.GPU(duration=seconds)(fn)
    return spaces.GPU(duration=int(duration))(fn)


def session_id(request: gr.Request | None) -> str:
    """The browser session behind a request ("local" when called without one, e.g. from tests)."""
    return str(getattr(request, "session_hash", None) or "local")


__all__ = ["OOM_HINT", "user_errors", "bind", "on_gpu", "session_id"]
