"""What the page's values must be: the checks that run before an event, and the messages that name the input.

Each ``check_*`` function takes a handler's inputs (the same parameters, so :func:`nada.app.glue.wire` can run it as
the event's Gradio ``validator``), reads no weights, and raises :class:`~nada.app.glue.InputError` naming the input
at fault: the page shows the message on that input and nothing else changes. The handlers in :mod:`nada.app.handlers`
call the same checks first, so direct calls and API clients get the same messages. Numbers are never rounded or
clamped (:mod:`nada.limits`), and uploads are named by their own names, never by the server's temp paths.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gradio as gr

from .. import limits
from ..clip_loss import check_prompts, clean_prompt
from ..edits import check_strength as check_edit_strength
from ..edits import edit_prompts
from ..images import ImageInputError, probe_image
from ..model_store import ModelStore
from ..styles import Style
from ..target_images import load_target_images
from ..train import RECIPES, AdaptConfig
from ..weights import offline
from .glue import InputError, to_user_error
from .gpu_tasks import StyleRef
from .sessions import SessionStyles

NO_STYLE = "none"  # style dropdown value: the source generator alone
SESSION_PREFIX = "session:"  # style dropdown values of this session's styles
MAX_IMAGES = 8  # images per Generate click
MAX_BATCH = 8  # training batch size (the Batch size slider's maximum)
MAX_LOSS_WEIGHT = 2.0  # the loss-weight sliders' maximum
MAX_INDOMAIN_WEIGHT = 10.0  # the in-domain ("keep variety") weight slider's maximum (the "diverse" recipe: 1)
MAX_IMAGE_MB = 20  # photo uploads
MAX_STYLE_FILE_MB = 400  # style uploads (a full 1024 px generator .pt is ~130 MB)


def _hide_paths(message: str, paths: list[Path]) -> str:
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
        raise InputError(exc.field, _hide_paths(str(exc), hidden)) from None
    except Exception as exc:
        err = exc if isinstance(exc, gr.Error) else to_user_error(exc)
        raise gr.Error(_hide_paths(str(err.message), hidden), title=err.title, print_exception=False) from None


def _field(field: str, check: Callable[[], Any]) -> Any:
    """``check()``; its ``ValueError`` becomes an :class:`InputError` on the input ``field``."""
    try:
        return check()
    except InputError:
        raise
    except ValueError as exc:
        raise InputError(field, str(exc)) from None


def check_upload(path: str | os.PathLike, max_mb: float, what: str) -> Path:
    """An uploaded file that exists and is under ``max_mb``; ``ValueError`` otherwise."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"The uploaded {what} could not be found on the server; please upload it again.")
    size = p.stat().st_size
    if size > max_mb * 2**20:
        raise ValueError(f"The {what} is {size / 2**20:.0f} MB; the limit is {max_mb:.0f} MB.")
    return p


def style_source(store: ModelStore, style: Style) -> str:
    """The generator a style is applied to: the one it records, else the default source."""
    return style.source if store.is_source(style.source) else store.default_source()


def page_advice(store: ModelStore) -> str:
    """What a person can do in the page about a style from another generator (the command line names a flag)."""
    sources = ", ".join(f"'{label}'" for label, _ in store.source_choices())
    return (f"A style only works with the generator it was trained from, and this page offers {sources}. Upload a "
            "style trained from one of them, or train one here: pick the source generator in the Adapt tab.")


def resolve_style(store: ModelStore, session: SessionStyles | None, choice: str | None) -> StyleRef | None:
    """Where the style chosen in a dropdown is (None: the source generator alone); no weights are read."""
    if not choice or choice == NO_STYLE:
        return None
    if choice.startswith(SESSION_PREFIX):
        name = choice[len(SESSION_PREFIX):]
        if session is None or name not in session:
            raise ValueError(f"The style '{name}' is no longer in this session (it may have been dropped to make "
                             "room, or the page was reloaded). Train or upload it again.")
        return StyleRef(name, style_source(store, session.styles[name]), file=str(session.files[name]))
    if choice not in store.published():
        raise ValueError(f"Unknown style '{choice}'.")
    return StyleRef(choice, store.published()[choice][1], published=choice)


def _seed(value: Any, field: str = "seed") -> int:
    """A seed typed in the page: a whole number from 0 to 2**32 - 1; 1.5 is refused, never rounded."""
    return _field(field, lambda: limits.seed(value))


def _number(value: Any, what: str, field: str, low: float, high: float) -> float:
    """A finite number in ``[low, high]``, else an :class:`InputError` on ``field``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(field, f"{what} must be a number from {low:g} to {high:g}, got {value!r}.") from None
    if not (math.isfinite(v) and low <= v <= high):
        raise InputError(field, f"{what} must be from {low:g} to {high:g}, got {v:g}.")
    return v


def _unit(value: Any, what: str, field: str = "strength") -> float:
    """A number from 0 to 1 (truncation, strength, mixing)."""
    return _number(value, what, field, 0.0, 1.0)


def check_generate(store: ModelStore, session: SessionStyles | None, style: str | None, seed: Any, truncation: Any,
                   n_images: Any, strength: Any) -> tuple[StyleRef | None, int, float, int, float]:
    """(style, seed, truncation, number of images, strength) from the Generate tab's values; an
    :class:`InputError` naming the input otherwise. Cheap: reads no weights (the page runs it before the event)."""
    seed = _seed(seed)
    truncation = _unit(truncation, "Truncation", "truncation")
    n = _number(n_images, "Number of images", "n_images", 1, MAX_IMAGES)
    if not float(n).is_integer():
        raise InputError("n_images", f"Number of images must be a whole number from 1 to {MAX_IMAGES}, got {n:g}.")
    strength = _unit(strength, "Style strength", "strength")
    ref = _field("style", lambda: resolve_style(store, session, style))
    return ref, seed, truncation, int(n), strength


NO_EDIT = "none"  # the Edit dropdown's value for no edit


def check_edit(edit: Any, edit_strength: Any) -> tuple[tuple[str, str] | None, float]:
    """((from, to) texts of the edit or None for no edit, its strength) from the Invert tab's Edit row: a preset
    name or free text (:func:`nada.edits.edit_prompts`), a strength from -3 to 3; an :class:`InputError` otherwise."""
    value = _field("edit_strength", lambda: check_edit_strength(edit_strength))
    if edit is None or (isinstance(edit, str) and edit.strip().casefold() == NO_EDIT):
        return None, value
    if not isinstance(edit, str):
        raise InputError("edit", f"The edit must be text (a preset or what the face should become), got "
                                 f"{type(edit).__name__}.")
    return _field("edit", lambda: edit_prompts(edit)), value


def check_invert(store: ModelStore, session: SessionStyles | None, image: Any, styles: list[str] | None,
                 strength: Any, edit: Any = NO_EDIT, edit_strength: Any = 1.0) -> tuple[list[StyleRef], float]:
    """(styles, strength) from the Invert tab's values, once the photo is an image file within the limits (its
    header is read, not its pixels) and the Edit row is usable (:func:`check_edit`); an :class:`InputError` naming
    the input otherwise, files named by their own names. Cheap: the page runs it before the event."""
    strength = _unit(strength, "Style strength", "strength")
    check_edit(edit, edit_strength)
    if image is None or (isinstance(image, (str, bytes)) and not image):
        raise InputError("image", "Upload a photo with a face first (or use the webcam, the clipboard or an example).")
    with own_names(image if isinstance(image, (str, os.PathLike)) else None):
        if isinstance(image, (str, os.PathLike)):
            _field("image", lambda: check_upload(image, MAX_IMAGE_MB, "photo"))
        if isinstance(image, (str, os.PathLike, bytes)):
            _field("image", lambda: probe_image(image))
    source = store.invert_source()
    refs = [_field("styles", lambda c=c: resolve_style(store, session, c)) for c in (styles or [])
            if c and c != NO_STYLE]
    for ref in refs:
        if ref.source != source:
            raise InputError("styles", f"The style '{ref.name}' belongs to the '{ref.source}' generator; inversion "
                                       f"works with the '{source}' face generator only.")
    return refs, strength


def adapt_config(iterations: Any, layers_k: Any, probe: bool, lambda_direction: Any, lambda_global: Any,
                 lambda_id: Any, lambda_l2: Any, seed: Any, lr: Any, batch_size: Any, source_text: str,
                 target_text: str, n_latent: int, recipe: str = "paper", mixing: Any = None,
                 clip_names: list[str] | None = None, max_iterations: int = limits.MAX_ITERATIONS,
                 target_pictures: list[Any] | None = None, lambda_indomain: Any = None) -> AdaptConfig:
    """The :class:`AdaptConfig` for the Adapt tab's values on top of ``recipe``, every value checked (an
    :class:`InputError` naming the input; nothing is clamped or rounded). ``layers_k`` 0 keeps the recipe's rows;
    ``probe`` off trains every convolution. ``target_pictures`` (uploaded files): image-guided, the text optional.
    ``lambda_indomain`` None keeps the recipe's in-domain weight."""
    if recipe not in RECIPES:
        raise InputError("recipe", f"Choose a recipe ({', '.join(RECIPES)}).")
    iters = _field("iterations", lambda: limits.iterations(iterations, max_iterations))
    k = int(_field("layers_k", lambda: limits.whole_number(layers_k or 0, "W+ rows trained per step", 0, n_latent)))
    batch = _field("batch_size", lambda: limits.whole_number(batch_size, "Batch size", 1, MAX_BATCH))
    names = ("lambda_direction", "lambda_global", "lambda_id", "lambda_l2")
    lams = [_number(v, "A loss weight", name, 0.0, MAX_LOSS_WEIGHT)
            for v, name in zip((lambda_direction, lambda_global, lambda_id, lambda_l2), names)]
    if lams[0] + lams[1] <= 0:
        raise InputError("lambda_direction", "At least one CLIP loss (directional or global weight) must be on.")
    indomain = RECIPES[recipe].settings.get("lambda_indomain", 0.0) if lambda_indomain is None else \
        _number(lambda_indomain, "The keep-variety (in-domain) loss weight", "lambda_indomain", 0.0,
                MAX_INDOMAIN_WEIGHT)
    if indomain > 0 and batch < 2:
        raise InputError("batch_size", "The keep-variety (in-domain) loss compares pairs of samples: set the batch "
                                       "size to 2 or more, or its weight to 0.")
    lr = _field("lr", lambda: limits.learning_rate(lr))
    mix = RECIPES[recipe].settings.get("mixing", 0.0) if mixing is None else _unit(mixing, "Style mixing", "mixing")
    pictures: tuple = ()
    if target_pictures:  # decoded and checked here, before any model loads
        files = [getattr(f, "name", f) for f in target_pictures]  # gr.File gives paths (or objects with .name)
        try:
            pictures = tuple(load_target_images(files))
        except ImageInputError as exc:  # named by their own names, never the server's temp paths
            raise InputError("target_pictures", _hide_paths(str(exc), [Path(f) for f in files])) from None
    try:
        if pictures and not str(target_text or "").strip():
            clean_prompt(str(source_text or ""), "source prompt")  # the pictures name the target
        else:
            check_prompts(str(source_text or ""), str(target_text or ""))
    except ValueError as exc:
        raise InputError("source_text" if "source prompt" in str(exc) else "target_text", str(exc)) from None
    rows = {"layers_k": 0} if not probe else {"layers_k": k if k > 0 else RECIPES[recipe].settings.get("layers_k")}
    clips = {"clip_models": tuple(clip_names)} if clip_names else {}
    config = AdaptConfig.from_recipe(
        recipe, source_text=str(source_text or "").strip(), target_text=str(target_text or "").strip(),
        iterations=iters, batch_size=batch, lr=lr, probe_iters=1, lambda_direction=lams[0], lambda_global=lams[1],
        lambda_id=lams[2], lambda_l2=lams[3], lambda_indomain=indomain, seed=_seed(seed), mixing=mix,
        preview_every=max(1, iters // 10),
        target_images=pictures, **rows, **clips)
    _field("target_text", lambda: config.validate(n_latent))  # anything the checks above missed
    return config


def max_steps(store: ModelStore) -> int:
    """The most training steps one run of the app may take: 1000 with the real models (a run must fit a shared
    GPU's time), the command line's limit with the tiny ones (a tiny step takes milliseconds)."""
    return limits.MAX_ITERATIONS if store.tiny else 1000


def check_adapt(store: ModelStore, session: SessionStyles | None, source: str, source_text: str, target_text: str,
                iterations: Any, layers_k: Any, probe: bool, clip_names: list[str] | None, lambda_direction: Any,
                lambda_global: Any, lambda_id: Any, lambda_l2: Any, seed: Any, lr: Any, batch_size: Any,
                recipe: str = "paper", mixing: Any = None, target_pictures: list[Any] | None = None,
                lambda_indomain: Any = None) -> AdaptConfig:
    """The training settings of the Adapt tab's values (:func:`adapt_config`), or an :class:`InputError` naming the
    input. Cheap: reads no weights (the page runs it before the event)."""
    if not store.is_source(source):
        raise InputError("source", f"Choose a source generator (one of: "
                                   f"{', '.join(n for _, n in store.source_choices())}).")
    if not store.tiny and not clip_names:
        raise InputError("clip_names", "Choose at least one CLIP model in Advanced settings.")
    return adapt_config(iterations, layers_k, probe, lambda_direction, lambda_global, lambda_id, lambda_l2, seed, lr,
                        batch_size, source_text, target_text, store.generator_rows(source), recipe, mixing,
                        clip_names, max_iterations=max_steps(store), target_pictures=target_pictures,
                        lambda_indomain=lambda_indomain)


# ------------------------------------------------------------------------------------ style dropdowns
def style_choices(store: ModelStore, session: SessionStyles | None, with_none: bool = True,
                  source: str | None = None) -> list[tuple[str, str]]:
    """(label, value) for the style dropdowns: this session's styles first, then the ready-made ones; only the
    styles of generator ``source`` when given (the Invert tab lists those that fit its generator)."""
    out = [("None: the source generator alone", NO_STYLE)] if with_none else []
    for name, style in (session.styles.items() if session else []):
        if source is not None and style_source(store, style) != source:
            continue
        what = style.meta.get("target_text") or style.meta.get("imported_from") or ""
        out.append((f"{name} (this session{': ' + str(what) if what else ''})", SESSION_PREFIX + name))
    return out + store.published_choices(source)


OPENING_STYLE = "nada-witcher"  # the Generate tab's first style: the product's own example, "Photo" -> "Witcher"


def default_style(store: ModelStore) -> str:
    """The Generate tab's first choice, so that it opens on both columns: the published Witcher style when it is on
    this machine or can be downloaded (tiny mode: the tiny demo style); otherwise no style."""
    names = [name for _, name in store.published_choices(store.default_source())]
    if store.tiny:
        return names[0] if names else NO_STYLE
    if OPENING_STYLE in names and (not offline() or store.weights_status([OPENING_STYLE])[0].cached):
        return OPENING_STYLE
    return NO_STYLE


def invert_choices(store: ModelStore, session: SessionStyles | None) -> list[tuple[str, str]]:
    """Styles that fit the inversion generator (for the Invert tab's multi-select)."""
    return style_choices(store, session, with_none=False, source=store.invert_source())


__all__ = ["style_choices", "default_style", "invert_choices", "OPENING_STYLE", "NO_STYLE", "SESSION_PREFIX",
           "MAX_IMAGES", "MAX_BATCH", "MAX_LOSS_WEIGHT", "MAX_INDOMAIN_WEIGHT",
           "MAX_IMAGE_MB", "MAX_STYLE_FILE_MB", "own_names", "check_upload", "style_source", "resolve_style",
           "page_advice", "check_generate", "check_invert", "check_edit", "NO_EDIT", "adapt_config", "max_steps",
           "check_adapt"]
