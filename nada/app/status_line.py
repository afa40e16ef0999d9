"""What a tab's status line says when its action is refused, fails or is done: next to the button that was pressed.

The page checks an event's inputs before the event runs (:func:`nada.app.wiring.validator`): a refused value shows
its message on the input at fault and changes no output, which a visitor who has scrolled down to the button does not
see. :func:`refusal` makes a second, instant handler for the same button that puts the same words on the tab's status
line (the only output it may change; nothing else moves). :func:`failures_on_status` makes a handler write a failure
found while it runs (no face, a worker that stopped) on the status line before the error is raised as before (the
toast, an API client's error); the page's style (``page.css``) keeps Gradio's "Error" mark off those lines, so the
words are not covered. :func:`done_in` starts the line a finished action leaves.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import gradio as gr

from .errors import InputError, to_user_error
from .page import format_seconds
from .wiring import Outputs


def refusal_text(exc: InputError, places: Mapping[str, str] | None = None) -> str:
    """The status line for a refused action: the input check's message, and where the input is when it may be out
    of sight (``places``: field -> "in Advanced settings")."""
    where = (places or {}).get(exc.field)
    return f"**Not started:** {exc}" + (f" ({where})" if where else "")


def refusal(check: Callable, places: Mapping[str, str] | None = None) -> Callable:
    """A handler taking ``check``'s inputs that returns the status line's text when ``check`` refuses them
    (:func:`refusal_text`), and leaves the line as it is otherwise (the action's own event then runs and reports)."""

    def refused(*args: Any, **kwargs: Any) -> Any:
        try:
            check(*args, **kwargs)
        except InputError as exc:
            return refusal_text(exc, places)
        except Exception:  # noqa: BLE001 - not a refusal: the action's event meets it and says so
            return gr.skip()
        return gr.skip()

    refused.__signature__ = inspect.signature(check)  # the same inputs, wired by name
    refused.__name__ = refused.__qualname__ = f"refused_{getattr(check, '__name__', 'action')}"
    return refused


def failure_text(exc: BaseException) -> str:
    """The status line for an action that failed while running: the words of its error (as the toast says them)."""
    return f"**Not done:** {to_user_error(exc).message}"


def failures_on_status(fn: Callable, outputs: type[Outputs], field: str = "status") -> Callable:
    """``fn`` (a handler returning or yielding ``outputs`` records) as a generator whose failure first yields a record
    that sets only ``field`` (the status line) to :func:`failure_text`, then raises the error as before; earlier
    results stay. Same name, parameters and streaming as ``fn`` for the wiring."""

    @functools.wraps(fn)
    def shown(*args: Any, **kwargs: Any):
        try:
            if inspect.isgeneratorfunction(fn):
                yield from fn(*args, **kwargs)
            else:
                yield fn(*args, **kwargs)
        except Exception as exc:
            yield outputs(**{field: failure_text(exc)})
            if isinstance(exc, gr.Error):
                raise
            raise to_user_error(exc) from exc

    shown.__signature__ = inspect.signature(fn)
    return shown


def done_in(seconds: float) -> str:
    """"Done in 0.4 s" (tenths under a minute), "Done in 2 min 05 s"."""
    return f"Done in {seconds:.1f} s" if seconds < 59.95 else f"Done in {format_seconds(seconds)}"
