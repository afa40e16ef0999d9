"""What a tab's status line (the line right under the button that starts the work) says: why a press was refused,
why a run failed, and the finished state.

The page checks an event's inputs before the event runs (:func:`nada.app.wiring.validator`): a refused value shows
its message on the input at fault and changes no output, which a visitor who has scrolled down to the button does not
see. :func:`refusal` makes a second, instant handler for the same button that puts the same words on the tab's status
line (the only output it may change). It is wired before the button's own event: the page runs a trigger's events in
order and stops at the first one its check refuses. :func:`failures_on_status` makes a handler write a failure found
while it runs (no face, a worker that stopped) on the status line before the error is raised as before (the notice, an
API client's error); the page's style (``page.css``) keeps Gradio's "Error" mark off those lines. :func:`done_in` and
:func:`done_line` start the line a finished action leaves. Typed text is shown as typed, never as Markdown.
"""

from __future__ import annotations

import functools
import html
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import gradio as gr

from .errors import InputError, to_user_error
from .page import format_seconds
from .wiring import KEEP, Outputs


def markdown_text(text: str) -> str:
    """``text`` shown as it is in a Markdown component (no emphasis, links or HTML from a typed value)."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "".join("\\" + c if c in "\\`*_[]#|~" else c for c in text)


def refusal_text(exc: InputError, places: Mapping[str, str] | None = None, label: str = "Not started") -> str:
    """The status line for a refused action: the input check's message, and where the input is when it may be out
    of sight (``places``: field -> "in Advanced settings")."""
    where = (places or {}).get(exc.field)
    return f"**{label}:** {markdown_text(str(exc))}" + (f" ({where})" if where else "")


def refusal(check: Callable, places: Mapping[str, str] | None = None, label: str = "Not started") -> Callable:
    """A handler taking ``check``'s inputs that returns the status line's text when ``check`` refuses them
    (:func:`refusal_text`), and leaves the line as it is otherwise (the action's own event then runs and reports)."""

    @functools.wraps(check)
    def refused(*args: Any, **kwargs: Any) -> Any:
        try:
            check(*args, **kwargs)
        except InputError as exc:
            return refusal_text(exc, places, label)
        except Exception:  # noqa: BLE001 - not a refusal: the action's event meets it and says so
            return gr.skip()
        return gr.skip()

    refused.__signature__ = inspect.signature(check)  # the same inputs, wired by name
    refused.__name__ = refused.__qualname__ = f"refused_{getattr(check, '__name__', 'action')}"
    return refused


def failure_text(exc: BaseException, label: str = "Not done") -> str:
    """The status line for an action that failed while running: the words of its error (as the notice says them)."""
    return f"**{label}:** {markdown_text(html.unescape(str(to_user_error(exc).message)))}"


def failures_on_status(fn: Callable, outputs: type[Outputs], field: str = "status", label: str = "Not done"
                       ) -> Callable:
    """``fn`` (a handler returning or yielding ``outputs`` records) as a generator whose failure first yields a record
    that sets only ``field`` (the status line) to :func:`failure_text`, every other output kept, then raises the error
    as before. Same name, parameters and streaming as ``fn`` for the wiring."""

    @functools.wraps(fn)  # its annotations too: Gradio finds ``request: gr.Request`` by them
    def shown(*args: Any, **kwargs: Any) -> Iterator[Outputs]:
        try:
            if inspect.isgeneratorfunction(fn):
                yield from fn(*args, **kwargs)
            else:
                yield fn(*args, **kwargs)
        except Exception as exc:
            yield outputs(**{**dict.fromkeys(outputs.names(), KEEP), field: failure_text(exc, label)})
            err = to_user_error(exc)
            if err is exc:
                raise
            raise err from exc

    shown.__signature__ = inspect.signature(fn)
    return shown


def _took(seconds: float) -> str:
    """"0.4 s" (tenths under a minute), "2 min 05 s"."""
    return f"{seconds:.1f} s" if seconds < 59.95 else format_seconds(seconds)


def done_in(seconds: float) -> str:
    """"Done in 0.4 s", "Done in 2 min 05 s"."""
    return f"Done in {_took(seconds)}"


def done_line(seconds: float, n: int, styled: bool) -> str:
    """The finished state that opens the status line after a render: "**Done** in 0.4 s: 4 images in each column."
    (without a style: "4 images.")."""
    return f"**Done** in {_took(seconds)}: {n} image{'s' if n != 1 else ''}{' in each column' if styled else ''}."
