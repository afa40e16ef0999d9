"""A hypernetwork's prompt list as a text file: one prompt a line, ``target`` or ``source -> target``; blank lines and
lines starting with ``#`` are skipped. Every mistake is reported with the file's own name and the line.

The zoo's prompt files (:mod:`nada.zoo.prompts`) read the same way, but their ``| settings`` part configures one
style's training; a hypernetwork trains all its prompts with one :class:`~nada.hyper.HyperConfig`, so a line with
settings is refused here rather than silently ignored.
"""

from __future__ import annotations

import os

from ..clip_loss import check_prompts
from ..zoo.prompts import ARROW, prompt_texts, read_text_file
from .loop import DEFAULT_SOURCE

MAX_FILE_BYTES = 4_000_000  # a prompt list larger than this is refused before it is read
MAX_PROMPTS = 100_000  # prompts in one list


class PromptListError(ValueError):
    """A prompt list that cannot be read; the message names the file (its own name) and the line."""


def read_prompt_file(path: str | os.PathLike, what: str = "prompt list",
                     source_text: str = DEFAULT_SOURCE) -> list[tuple[str, str]]:
    """The (source, target) pairs of the UTF-8 text file at ``path``; ``source_text`` for lines that give only a
    target. ``PromptListError`` for a missing, unreadable, over-large or empty file and for a bad line."""
    name, text = read_text_file(path, what=what, max_bytes=MAX_FILE_BYTES, error=PromptListError,
                                missing=f"The {what} {{name}} does not exist.")
    return parse_prompt_list(text, filename=name, what=what, source_text=source_text)


def parse_prompt_list(text: str, *, filename: str = "prompts.txt", what: str = "prompt list",
                      source_text: str = DEFAULT_SOURCE) -> list[tuple[str, str]]:
    """The (source, target) pairs of a prompt list's ``text``; ``PromptListError`` naming ``filename`` (base name
    only) and the line of the first mistake (an empty or over-long prompt, two arrows, '| settings')."""
    filename = os.path.basename(str(filename)) or "prompts.txt"
    pairs: list[tuple[str, str]] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            pairs.append(_parse_line(line, source_text))
        except ValueError as exc:
            raise PromptListError(f"{filename}, line {number}: {exc}") from None
        if len(pairs) > MAX_PROMPTS:
            raise PromptListError(f"{filename} holds more than {MAX_PROMPTS:,} prompts; split it.")
    if not pairs:
        raise PromptListError(f"The {what} {filename} holds no prompts: write one a line, e.g. 'Sketch' or "
                              f"'Photo {ARROW} Sketch' (blank lines and lines starting with '#' are skipped).")
    return pairs


def _parse_line(line: str, default_source: str) -> tuple[str, str]:
    """``target`` or ``source -> target`` as a checked pair; ``ValueError`` (without the line number) otherwise."""
    if "|" in line:
        raise ValueError("a hypernetwork's prompt list takes no '| settings' (all prompts train with one config); "
                         "remove the part from '|'.")
    return check_prompts(*prompt_texts(line, default_source))  # empty, same, or longer than CLIP reads


__all__ = ["PromptListError", "read_prompt_file", "parse_prompt_list", "MAX_FILE_BYTES", "MAX_PROMPTS"]
