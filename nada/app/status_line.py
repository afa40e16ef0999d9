"""What a tab's status line (a Markdown line under the button that starts the work) says beside the pictures: the
finished state of a render ("**Done** in 0.4 s: 4 images in each column."), why a press was refused (the input at
fault shows it too) and why a run failed (the page's notice and the line's mark show it too), typed text shown as
typed. Used by the Generate tab and its Mix box (:mod:`nada.app.generate_tab`, :mod:`nada.app.mix`, wired in
``app.py``).
"""

from __future__ import annotations

import functools
import html
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr

from .errors import InputError, to_user_error
from .page import format_seconds
from .wiring import KEEP, Outputs


def done_line(seconds: float, n: int, styled: bool) -> str:
    """The finished state that opens the status line after a render: "**Done** in 0.4 s: 4 images in each column."
    (without a style: "4 images.")."""
    took = f"{seconds:.1f} s" if seconds < 60 else format_seconds(seconds)
    return f"**Done** in {took}: {n} image{'s' if n != 1 else ''}{' in each column' if styled else ''}."


def said_on_status(check: Callable, refused: str) -> Callable:
    """A handler with ``check``'s inputs for the status line beside a button: when ``check`` refuses the inputs
    (an :class:`InputError`, which the page also shows on the input at fault), "**{refused}**: why"; otherwise
    ``gr.skip()`` (the button's own event runs and reports). Wired as a second listener of the button, so that a
    refused press says why where the person is looking, not only on the input (which may be out of view)."""

    @functools.wraps(check)
    def status(*args: Any, **kwargs: Any) -> Any:
        try:
            check(*args, **kwargs)
        except InputError as exc:
            return f"**{refused}**: {markdown_text(str(exc))}"
        except Exception:  # noqa: BLE001 - not a refusal: the button's event meets it and reports it
            pass
        return gr.skip()

    return status


def failure_on_status(handler: Callable, outputs: type[Outputs], field: str, failed: str) -> Callable:
    """``handler`` (a function or generator function returning/yielding ``outputs`` records) as a generator for the
    page whose failure is also said on the status line ``field`` beside the button ("**{failed}**: why"; every other
    output kept) before the error is raised again: the page marks the line and shows the notice, and an API client
    gets the error as before. Same parameters as ``handler`` (wired by name)."""

    @functools.wraps(handler)
    def run(*args: Any, **kwargs: Any) -> Iterator[Outputs]:
        try:
            if inspect.isgeneratorfunction(handler):
                yield from handler(*args, **kwargs)
            else:
                yield handler(*args, **kwargs)
        except Exception as exc:
            err = to_user_error(exc)
            line = f"**{failed}**: {markdown_text(html.unescape(str(err.message)))}"
            yield outputs(**{**dict.fromkeys(outputs.names(), KEEP), field: line})
            if err is exc:
                raise
            raise err from exc

    return run


def markdown_text(text: str) -> str:
    """``text`` shown as it is in a Markdown component (no emphasis, links or HTML from a typed value)."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "".join("\\" + c if c in "\\`*_[]#|~" else c for c in text)
