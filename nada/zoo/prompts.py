"""The zoo's prompt file: one style per line, read into :class:`ZooEntry` records, every mistake reported by line.

A line is ``target``, or ``source -> target``, optionally followed by ``| key=value key=value``; the keys are
``recipe``, ``name``, ``seed`` and :class:`~nada.train.AdaptConfig` fields (``iterations=50 lambda_global=0.5
clip_models=clip-vit-b32,clip-vit-b16``); a value with spaces is quoted (``name="pencil sketch"``). Blank lines and
lines starting with ``#`` are skipped. Example::

    # source -> target | overrides
    Sketch
    Photo -> Pixar character | seed=3 iterations=100
    Photo -> The Joker | recipe=compact name=joker lambda_global=0.5

Each entry is validated as the config it will train (:meth:`ZooEntry.config`), so a bad value stops the whole file
before any work starts, with its line number. :meth:`ZooEntry.key` hashes everything that decides a style, for
skipping finished ones on a rerun.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import os
import shlex
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import limits
from ..styles import safe_style_name
from ..train import RECIPES, AdaptConfig

MAX_FILE_BYTES = 1_000_000  # a prompt file larger than this is refused before it is read
MAX_LINES = 10_000  # lines in a prompt file, comments and blank lines included
MAX_LINE_CHARS = 1_000  # characters on one line (each prompt must also fit CLIP's 75 word pieces)
ARROW = "->"  # between the source and the target text
KEY_VERSION = 1  # bumped when what ZooEntry.key hashes changes (old zoo entries then retrain)
SPECIAL_KEYS = ("recipe", "name", "seed")  # override keys that are not plain AdaptConfig fields
# AdaptConfig fields a prompt line may not set: the texts come from the line itself, the seed has its own key, and
# target pictures would turn text into file paths.
EXCLUDED_FIELDS = frozenset({"source_text", "target_text", "seed", "target_images"})
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}
_NONE = {"none", "null"}


class PromptFileError(ValueError):
    """A prompt file that cannot be read as styles; the message names the file (by its own name) and the line."""


def override_fields() -> tuple[str, ...]:
    """The :class:`AdaptConfig` fields a prompt line may set, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(AdaptConfig) if f.name not in EXCLUDED_FIELDS)


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    """One style of a prompt file: its texts, recipe, seed and setting overrides (hashable, immutable)."""

    name: str  # safe slug (nada.styles.safe_style_name), unique in the file: DIR/<name>.safetensors
    line: int  # 1-based line in the prompt file
    source_text: str  # e.g. "Photo"
    target_text: str  # e.g. "Sketch"
    recipe: str = "compact"  # a name in nada.train.RECIPES
    seed: int = 0  # AdaptConfig.seed
    override_items: tuple[tuple[str, Any], ...] = ()  # (AdaptConfig field, typed value), sorted by field name

    def __post_init__(self) -> None:
        items = self.override_items.items() if isinstance(self.override_items, Mapping) else self.override_items
        object.__setattr__(self, "override_items", tuple(sorted((str(k), _frozen(v)) for k, v in items)))

    @property
    def overrides(self) -> dict[str, Any]:
        """The overrides as a dict: AdaptConfig field -> typed value."""
        return dict(self.override_items)

    @property
    def prompt(self) -> str:
        """"source -> target", as a caption shows it."""
        return f"{self.source_text} {ARROW} {self.target_text}"

    def config(self, source: str | None = None) -> AdaptConfig:
        """The validated settings this style trains with on the registry source ``source`` (recipe, then the
        source's published values, then the overrides, seed and texts); ``ValueError`` when they cannot work."""
        cfg = AdaptConfig.from_recipe(self.recipe, source, **self.overrides, seed=self.seed,
                                      source_text=self.source_text, target_text=self.target_text)
        cfg.validate()
        return cfg

    def key(self, source: str) -> str:
        """A stable hash (hex) of everything that decides the result: the source name and the full config."""
        payload = {"version": KEY_VERSION, "source": str(source), "config": self.config(source).to_dict()}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def to_dict(self) -> dict:
        """Plain JSON-ready fields, as zoo.json records them (tuples become lists there)."""
        return {"name": self.name, "line": self.line, "source_text": self.source_text,
                "target_text": self.target_text, "recipe": self.recipe, "overrides": self.overrides,
                "seed": self.seed}


def read_prompts(path: str | os.PathLike, *, source_text: str = "Photo", recipe: str = "compact",
                 source: str | None = None) -> list[ZooEntry]:
    """The styles of the prompt file at ``path`` (UTF-8 text); ``PromptFileError`` names the file by its own name and
    the line. ``source_text``/``recipe``: defaults for lines that give none; ``source``: the registry source the
    configs are validated for."""
    name, text = read_text_file(path)
    return parse_prompts(text, filename=name, source_text=source_text, recipe=recipe, source=source)


def read_text_file(path: str | os.PathLike, *, what: str = "prompt file", max_bytes: int = MAX_FILE_BYTES,
                   error: type[ValueError] = PromptFileError, missing: str = "{name} does not exist."
                   ) -> tuple[str, str]:
    """(the file's own name, its UTF-8 text) of a prompt file or list; ``error`` naming the file by its own name (and
    the line of a bad byte) for a missing, unreadable, over-large, non-file or non-UTF-8 one. ``missing``: the
    message for a missing file (``{name}`` is filled in)."""
    path = Path(path)
    name = path.name or what
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise error(f"{name} is not a file: give the {what} as a text file, one line each.")
        if size > max_bytes:
            raise error(f"{name} is too large ({size:,} bytes; at most {max_bytes:,}): a {what} holds short lines.")
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(missing.format(name=name)) from None
    except PermissionError:
        raise error(f"{name} cannot be read (permission denied).") from None
    if len(data) > max_bytes:  # grew since stat
        raise error(f"{name} is too large (at most {max_bytes:,} bytes).")
    try:
        return name, data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise error(f"{name}, line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the {what} as "
                    "UTF-8.") from None


def parse_prompts(text: str, *, filename: str = "prompts.txt", source_text: str = "Photo", recipe: str = "compact",
                  source: str | None = None) -> list[ZooEntry]:
    """The styles of a prompt file's ``text`` (see the module docstring); ``PromptFileError`` names ``filename`` (its
    base name only) and the line of the first mistake."""
    filename = os.path.basename(str(filename)) or "prompts.txt"
    if recipe not in RECIPES:
        raise PromptFileError(f"{filename}: unknown default recipe {recipe!r}; choose one of: {', '.join(RECIPES)}.")
    lines = text.split("\n")
    if len(lines) > MAX_LINES:
        raise PromptFileError(f"{filename} has {len(lines):,} lines; at most {MAX_LINES:,} are read. Split it into "
                              "several files.")
    entries: list[ZooEntry] = []
    first_line: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            entry = _parse_line(raw.rstrip("\r"), number, source_text, recipe, source)
        except ValueError as exc:
            raise PromptFileError(f"{filename}, line {number}: {exc}") from None
        if entry.name in first_line:
            raise PromptFileError(
                f"{filename}: lines {first_line[entry.name]} and {number} both make the style name {entry.name!r}; "
                "give one of them another name with '| name=...'.")
        first_line[entry.name] = number
        entries.append(entry)
    if not entries:
        raise PromptFileError(f"{filename} has no styles: write one per line, e.g. 'Sketch' or 'Photo -> Sketch' "
                              "(blank lines and lines starting with '#' are skipped).")
    return entries


# ------------------------------------------------------------------------------------------------ one line
def _parse_line(line: str, number: int, default_source: str, default_recipe: str, source: str | None) -> ZooEntry:
    """One non-blank, non-comment line as an entry; ``ValueError`` (without the line number) otherwise."""
    if len(line) > MAX_LINE_CHARS:
        raise ValueError(f"the line is too long ({len(line):,} characters; at most {MAX_LINE_CHARS:,}): a prompt is "
                         "a few words.")
    bad = sorted({f"0x{ord(c):02x}" for c in line if (ord(c) < 32 and c != "\t") or ord(c) == 127})
    if bad:
        raise ValueError(f"the line holds control characters ({', '.join(bad)}); write plain text.")
    prompt_part, bar, settings_part = line.partition("|")
    source_text, target_text = prompt_texts(prompt_part, default_source)
    settings = _settings(settings_part) if bar else {}
    recipe = settings.pop("recipe", default_recipe)
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of: {', '.join(RECIPES)}.")
    seed = limits.seed(settings.pop("seed", 0), "seed")
    name = settings.pop("name", None)
    name = safe_style_name(name) if name is not None else _default_name(target_text, number)
    overrides = {key: _typed(key, value) for key, value in settings.items()}
    entry = ZooEntry(name=name, line=number, source_text=source_text, target_text=target_text, recipe=recipe,
                     seed=seed, override_items=overrides)
    entry.config(source)  # ValueError with AdaptConfig.validate's message (prompt length included)
    return entry


def prompt_texts(prompt_part: str, default_source: str) -> tuple[str, str]:
    """(source text, target text) of ``target`` or ``source -> target``."""
    parts = prompt_part.split(ARROW)
    if len(parts) > 2:
        raise ValueError(f"more than one '{ARROW}': write 'target' or 'source {ARROW} target'.")
    source_text = parts[0].strip() if len(parts) == 2 else str(default_source).strip()
    target_text = parts[-1].strip()
    if not target_text:
        raise ValueError(f"no target text: write 'target' or 'source {ARROW} target', e.g. 'Photo {ARROW} Sketch'.")
    if not source_text:
        raise ValueError(f"no source text before '{ARROW}': write 'source {ARROW} target', or just the target.")
    return source_text, target_text


def _settings(text: str) -> dict[str, str]:
    """``key=value key="value with spaces"`` as a dict of raw strings; ``ValueError`` for a malformed or unknown
    key, or one given twice."""
    try:
        tokens = shlex.split(text, posix=True)
    except ValueError as exc:  # an unclosed quote
        raise ValueError(f"cannot read the settings after '|' ({exc}); quote a value with spaces: "
                         'key="a b".') from None
    allowed = (*SPECIAL_KEYS, *override_fields())
    out: dict[str, str] = {}
    for token in tokens:
        key, eq, value = token.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ValueError(f"expected key=value after '|', got {token!r}.")
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"unknown setting {key!r}{hint}. Settings: {', '.join(allowed)}.")
        if key in out:
            raise ValueError(f"{key!r} is given twice.")
        out[key] = value
    return out


def _default_name(target_text: str, number: int) -> str:
    """The target text as a style name; ``style-<line>`` when it has no usable characters (e.g. only non-Latin)."""
    try:
        return safe_style_name(target_text)
    except ValueError:
        return f"style-{number}"


# ------------------------------------------------------------------------------------------------ values
_HINTS: dict[str, Any] = typing.get_type_hints(AdaptConfig)


def _typed(key: str, raw: str) -> Any:
    """``raw`` as the type of AdaptConfig field ``key`` (int, float, bool, str, None, tuples from comma lists)."""
    hint = _HINTS[key]
    if key == "iterations":
        return limits.iterations(raw, what="iterations")
    if key == "lr":
        return limits.learning_rate(raw, what="lr")
    if key == "frozen_rows":  # a group name ("coarse+medium"), row numbers "0,1,2", or none
        value = raw.strip()
        if value.lower() in _NONE or not value:
            return ()
        return tuple(_int(p, key) if p.strip().isdigit() else p.strip() for p in value.split(",")) if "," in value \
            else value
    return _convert(hint, raw.strip(), key)


def _convert(hint: Any, raw: str, key: str) -> Any:
    """``raw`` converted to the type ``hint``; ``ValueError`` naming ``key`` and what was expected."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        if type(None) in args and raw.lower() in _NONE:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, raw, key)
            except ValueError:
                continue
        raise ValueError(f"{key} must be {' or '.join(_describe(a) for a in args)}, got {raw!r}.")
    if typing.get_origin(hint) is tuple or hint is tuple:
        parts = [p.strip() for p in raw.split(",")] if raw else []
        if args and args[-1] is not Ellipsis and len(parts) != len(args):
            raise ValueError(f"{key} takes {len(args)} comma-separated values, got {raw!r}.")
        kinds = [args[0] if args and args[-1] is Ellipsis else (args[i] if args else str) for i in range(len(parts))]
        return tuple(_convert(kind, part, key) for kind, part in zip(kinds, parts))
    if hint is bool:
        if raw.lower() in _TRUE | _FALSE:
            return raw.lower() in _TRUE
        raise ValueError(f"{key} must be true or false, got {raw!r}.")
    if hint is int:
        return _int(raw, key)
    if hint is float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{key} must be a number, got {raw!r}.") from None
        if not math.isfinite(value):
            raise ValueError(f"{key} must be a finite number, got {raw!r}.")
        return value
    if hint is str:
        if not raw:
            raise ValueError(f"{key} is empty.")
        return raw
    raise ValueError(f"{key} cannot be set from a prompt file.")  # a field type this reader does not know


def _int(raw: str, key: str) -> int:
    """A whole number (``1.5`` or ``x`` refused, never rounded)."""
    if raw.strip().lstrip("+-").isdigit():
        return int(raw)
    raise ValueError(f"{key} must be a whole number, got {raw!r}.")


def _describe(hint: Any) -> str:
    """A type as a person reads it."""
    return {int: "a whole number", float: "a number", bool: "true or false", str: "text",
            type(None): "none"}.get(hint, "a comma-separated list")


def _frozen(value: Any) -> Any:
    """Lists (from a dict passed to ZooEntry) as tuples, so an entry stays hashable."""
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


__all__ = ["ZooEntry", "PromptFileError", "read_prompts", "parse_prompts", "read_text_file", "prompt_texts",
           "override_fields", "MAX_FILE_BYTES",
           "MAX_LINES", "MAX_LINE_CHARS"]
