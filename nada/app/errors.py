"""What a person sees when something goes wrong: readable ``gr.Error`` messages, never a server path.

:func:`user_errors` wraps every handler so that one user's mistake or a known failure (missing weights, no face, a
file that is not a style, a full GPU) becomes a message a person understands and the app keeps serving.
:class:`InputError` names the input at fault, so the page shows the message on that input
(:func:`nada.app.wiring.validator`). Uploads are named by their own names (:func:`own_names`) and the weights cache
by words (:func:`hide_server_paths`).
"""

from __future__ import annotations

import functools
import html
import inspect
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import torch

from ..align import AlignmentUnavailableError, NoFaceError
from ..images import ImageInputError
from ..styles import StyleFileError, StyleMismatchError
from ..weights import CheckpointError, WeightsUnavailableError, cache_dir
from .training_queue import TrainingBusyError

log = logging.getLogger(__name__)

OOM_HINT = ("The GPU ran out of memory. Try again with fewer images, a smaller batch size, or a single CLIP model "
            "(ViT-B/32); if others are using the app, wait a minute and retry.")


class InputError(ValueError):
    """A value a person typed or picked cannot be used; ``field`` names the input (a handler parameter), so the page
    can show the message on that input (see :func:`nada.app.wiring.validator`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def hide_server_paths(text: str) -> str:
    """``text`` for the page: the weights cache's folder on the server is named, not shown (the command line's
    messages keep the path; a visitor has no use for it)."""
    return text.replace(str(cache_dir()), "the app's weights cache")


def to_user_error(exc: BaseException) -> gr.Error:
    """The ``gr.Error`` a person sees for ``exc`` (server paths of the weights cache hidden)."""
    if isinstance(exc, gr.Error):
        return exc
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
              (InputError, "Invalid input"), (ValueError, "Invalid input")]
    for cls, title in titles:
        if isinstance(exc, cls):
            return gr.Error(html.escape(hide_server_paths(str(exc)), quote=False), title=title, print_exception=False)
    log.exception("unexpected error in a handler", exc_info=exc)
    text = html.escape(hide_server_paths(str(exc))[:300], quote=False)
    return gr.Error(f"Something went wrong ({type(exc).__name__}: {text}). "
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
                raise to_user_error(exc) from exc
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            raise to_user_error(exc) from exc
    return wrapper


def hide_upload_paths(message: str, paths: list[Path]) -> str:
    """``message`` with each server path (an upload's temp file, its folder) replaced by the file's own name."""
    for path in paths:
        for form in sorted({str(path), str(path.resolve()), str(path.parent), str(path.parent.resolve())},
                           key=len, reverse=True):
            message = message.replace(form + os.sep, "").replace(form, path.name)
    return message


@contextmanager
def own_names(*paths: str | os.PathLike | None) -> Iterator[None]:
    """Errors raised inside become ``gr.Error``s that name uploaded files by their own names, never by the server's
    temp paths (``/tmp/gradio/<hash>/photo.jpg`` -> ``photo.jpg``)."""
    hidden = [Path(p) for p in paths if isinstance(p, (str, os.PathLike)) and str(p)]
    try:
        yield
    except InputError as exc:
        raise InputError(exc.field, hide_upload_paths(str(exc), hidden)) from None
    except Exception as exc:
        err = exc if isinstance(exc, gr.Error) else to_user_error(exc)
        raise gr.Error(hide_upload_paths(str(err.message), hidden), title=err.title, print_exception=False) from None
