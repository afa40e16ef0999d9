"""The ranges the command line and the app accept for the settings a person types: seeds, steps, learning rate.

Both front ends check a value with these functions before any work starts, so a mistake is a message, never a
silently clamped or rounded value. Each raises ``ValueError`` whose message names the limit.
"""

from __future__ import annotations

import math
from typing import Any

MAX_SEED = 2**32 - 1  # seeds are unsigned 32-bit numbers
MAX_SEEDS = 10_000  # seeds one command may render
MAX_LR = 0.1  # Adam learning rates above this only destroy the generator (the paper uses 0.002)
MAX_ITERATIONS = 100_000  # training steps on the command line (the app's slider has its own, smaller maximum)


def whole_number(value: Any, what: str, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]``; a fraction (1.5), text or a bool is refused, never rounded."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a whole number from {low} to {high}, got {value!r}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a whole number from {low} to {high}, got {value!r}.") from None
    if not math.isfinite(number) or not number.is_integer() or not low <= number <= high:
        raise ValueError(f"{what} must be a whole number from {low} to {high}, got {value!r}.")
    return int(number)


def seed(value: Any, what: str = "The seed") -> int:
    """A seed: a whole number from 0 to :data:`MAX_SEED`."""
    return whole_number(value, what, 0, MAX_SEED)


def iterations(value: Any, maximum: int = MAX_ITERATIONS, what: str = "Training steps") -> int:
    """A number of training steps: a whole number from 1 to ``maximum``."""
    return whole_number(value, what, 1, maximum)


def learning_rate(value: Any, what: str = "The learning rate") -> float:
    """A learning rate above 0 and at most :data:`MAX_LR`."""
    try:
        lr = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number above 0 and at most {MAX_LR:g}, got {value!r}.") from None
    if not (math.isfinite(lr) and 0.0 < lr <= MAX_LR):
        raise ValueError(f"{what} must be above 0 and at most {MAX_LR:g} (the paper uses 0.002), got {value!r}.")
    return lr


__all__ = ["MAX_SEED", "MAX_SEEDS", "MAX_LR", "MAX_ITERATIONS", "whole_number", "seed", "iterations",
           "learning_rate"]
