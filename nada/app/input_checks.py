"""The value checks the tabs share: each names the input at fault with an :class:`~nada.app.errors.InputError`.

A tab's own ``check_*`` function (``generate_tab.check_generate``, ``adapt_tab.check_adapt``,
``invert_tab.check_invert``, ``mix.check_mix``) takes the same parameters as its handler, so the page runs it as the
event's Gradio validator (:func:`nada.app.wiring.wire`) and the handler runs it first: direct calls, API clients and
the page get the same messages. Numbers are never rounded or clamped (:mod:`nada.limits`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import limits
from .errors import InputError


def on_field(field: str, check: Callable[[], Any]) -> Any:
    """``check()``; its ``ValueError`` becomes an :class:`InputError` on the input ``field``."""
    try:
        return check()
    except InputError:
        raise
    except ValueError as exc:
        raise InputError(field, str(exc)) from None


def seed_value(value: Any, field: str = "seed") -> int:
    """A seed typed in the page: a whole number from 0 to 2**32 - 1; 1.5 is refused, never rounded."""
    return on_field(field, lambda: limits.seed(value))


def number_value(value: Any, what: str, field: str, low: float, high: float) -> float:
    """A finite number in ``[low, high]``, else an :class:`InputError` on ``field``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(field, f"{what} must be a number from {low:g} to {high:g}, got {value!r}.") from None
    if not (math.isfinite(v) and low <= v <= high):
        raise InputError(field, f"{what} must be from {low:g} to {high:g}, got {v:g}.")
    return v


def unit_value(value: Any, what: str, field: str = "strength") -> float:
    """A number from 0 to 1 (truncation, strength, mixing)."""
    return number_value(value, what, field, 0.0, 1.0)


def check_upload(path: str | os.PathLike, max_mb: float, what: str) -> Path:
    """An uploaded file that exists and is under ``max_mb``; ``ValueError`` otherwise."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"The uploaded {what} could not be found on the server; please upload it again.")
    size = p.stat().st_size
    if size > max_mb * 2**20:
        raise ValueError(f"The {what} '{p.name}' is {size / 2**20:.0f} MB; the limit is {max_mb:.0f} MB, and it was "
                         "not read.")
    return p
