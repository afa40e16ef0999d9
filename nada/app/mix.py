"""The Generate tab's "Mix styles": up to four styles, each with a weight, blended into a new session style
(:func:`nada.styles.blend`), previewed live when a weight is released, and a video through the picked styles.

Rows are ``mix_style_1..4`` (dropdown values, :data:`~nada.app.style_menus.NO_STYLE` for an empty row) and
``mix_weight_1..4``; the handlers take them by those names (wired by name, :func:`nada.app.wiring.wire`). The blend
reads weights (published styles are imported against their generator), so it runs as a GPU task (:class:`MixGpu`):
functions of the model store and small picklable arguments, the saved mix crossing back as a file, as training's does.
A saved mix is an ordinary session style: Generate and Invert offer it, and its file downloads like a trained one.
The box is part of the Generate tab (:mod:`nada.app.generate_tab`, whose checks, galleries and video settings it
uses) with handlers, checks and GPU tasks of its own, so it has a module of its own.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr
from PIL import Image

from ..model_store import ModelStore
from ..styles import Style, blend, safe_style_name, save_style
from ..video import VideoPlan, render_video
from .errors import InputError, user_errors
from .generate_tab import (
    OPENING_STYLE,
    VIDEO_FPS,
    VIDEO_SECONDS_PER_SEED,
    check_generate,
    cpu_render_notice,
    render_pair,
    rendered_galleries,
)
from .page import DISPLAY_MIN, loading_notice
from .sessions import SessionStyle, SessionStyles
from .status_line import done_line
from .style_menus import NO_STYLE, SESSION_PREFIX, StyleRef, invert_choices, load_ref, resolve_style, style_choices
from .wiring import KEEP, BoundTasks, Outputs
from .zerogpu import gpu_mode

MAX_MIX = 4  # styles in one mix (rows of the accordion)
MIX_WEIGHT_RANGE = (-1.0, 2.0)  # the weight sliders' range: below 0 moves away from a style, above 1 past it
EMPTY_ROW = ("(no style)", NO_STYLE)  # a row's dropdown choice when the row is not used
KIND_WORDS = {"weights": "a weight style", "style_delta": "a compact style", "modulation": "a compact style",
              "mixed": "a weight and compact style"}  # Style.kind, for the status line (see kind_words)
GRID_TILE = 512  # pixels per tile of a side-by-side video with the real models (four 1024 px tiles: too large)
OPENING_PARTNER = "nada-pixar"  # the second style the rows start with, beside the tab's opening style


# ------------------------------------------------------------------------------------------------- GPU tasks
def blend_refs(store: ModelStore, source: str, refs: list[StyleRef], weights: list[float]) -> Style:
    """The blend of the styles ``refs`` with ``weights`` (all of generator ``source``), its target text naming
    them ("0.6·witcher + 0.4·sketch") and ``mixed_from`` recording each style's name and weight."""
    gen = store.generator(source)
    styles = [load_ref(store, ref) for ref in refs]
    style = blend(list(zip(styles, weights)), gen, source_fingerprint=store.fingerprint(source))
    style.meta.update(source=source, target_text=mix_label(refs, weights),
                      mixed_from=[{"name": r.name, "weight": float(w)} for r, w in zip(refs, weights)])
    return style


def save_mix(store: ModelStore, source: str, refs: list[StyleRef], weights: list[float], path: str) -> str:
    """Blend (:func:`blend_refs`) and write the mix to ``path`` (a ``.safetensors`` file); returns the path."""
    return str(save_style(blend_refs(store, source, refs, weights), path))


def preview_mix(store: ModelStore, source: str, refs: list[StyleRef], weights: list[float], seeds: list[int],
                truncation: float, strength: float) -> tuple[list[Image.Image], list[Image.Image]]:
    """(source images, images in the blend at ``strength``) for ``seeds``: the unsaved mix, as Generate draws it."""
    return render_pair(store, source, blend_refs(store, source, refs, weights), seeds, truncation, strength)


def render_styles_video(store: ModelStore, source: str, refs: list[StyleRef], plan: VideoPlan, path: str,
                        progress: Callable[[int], None] | None = None) -> str:
    """An MP4 at ``path`` walking through ``plan``'s seeds in the styles ``refs``: a morph from the first through
    the others, or side by side with ``plan.grid`` (:func:`nada.video.render_video`)."""
    gen = store.generator(source)
    styles = [load_ref(store, ref) for ref in refs]
    return str(render_video(gen, styles, plan, path, w_avg=store.truncation_center(source), progress=progress))


def mix_duration(args: dict) -> float:
    """ZeroGPU seconds for a blend (arguments of :func:`save_mix`): loading each published style dominates."""
    return 30 + 10 * len(args.get("refs") or [0])


def preview_duration(args: dict) -> float:
    """ZeroGPU seconds for a preview (arguments of :func:`preview_mix`)."""
    return 20 + 10 * len(args.get("refs") or [0]) + 3 * len(args.get("seeds") or [0])


def styles_video_duration(args: dict) -> float:
    """ZeroGPU seconds for a video through styles (arguments of :func:`render_styles_video`): ~0.3 s a frame at
    1024 px, per tile side by side."""
    plan, n = args.get("plan"), len(args.get("refs") or [0])
    frames = plan.frames if isinstance(plan, VideoPlan) else 100
    return 20 + 10 * n + 0.3 * frames * (n if isinstance(plan, VideoPlan) and plan.grid else 1)


@dataclasses.dataclass(frozen=True)
class MixGpu(BoundTasks):
    """The mix handlers' GPU tasks bound to the store (:class:`~nada.app.wiring.BoundTasks`)."""

    save: Callable
    preview: Callable
    video: Callable

    @classmethod
    def tasks(cls) -> tuple[tuple[Callable, Any], ...]:
        return ((save_mix, mix_duration), (preview_mix, preview_duration),
                (render_styles_video, styles_video_duration))


# ------------------------------------------------------------------------------------------------------ checks
def mix_label(refs: list[StyleRef], weights: list[float]) -> str:
    """What a mix is made of, for people: "0.6·witcher + 0.4·sketch" (rows of weight 0 left out)."""
    parts = [(w, r.name) for r, w in zip(refs, weights) if w != 0]
    text = " ".join(f"{'-' if w < 0 else '+'} {abs(w):g}·{name}" for w, name in parts)
    return text.removeprefix("+ ") or "empty mix"


def mix_rows(store: ModelStore, session: SessionStyles | None, choices: list[str | None], weights: list[Any]
             ) -> tuple[str, list[StyleRef], list[float]]:
    """(source generator, styles, weights) of the rows that have a style picked, in row order; an
    :class:`InputError` naming the row otherwise: more than :data:`MAX_MIX` rows, a weight that is not a finite
    number in :data:`MIX_WEIGHT_RANGE`, an unknown style, no style picked, styles of different generators. The
    weight of a row without a style is not used. Reads no weights."""
    if len(choices) != len(weights):
        raise InputError("mix_style_1", f"Give one weight per style ({len(choices)} styles, {len(weights)} weights).")
    if len(choices) > MAX_MIX:
        raise InputError("mix_style_1", f"A mix takes at most {MAX_MIX} styles, got {len(choices)}.")
    refs, values = [], []
    low, high = MIX_WEIGHT_RANGE
    for i, (choice, weight) in enumerate(zip(choices, weights), 1):
        if not choice or choice == NO_STYLE:
            continue
        try:
            ref = resolve_style(store, session, choice)
        except ValueError as exc:
            raise InputError(f"mix_style_{i}", str(exc)) from None
        if ref.alone:
            raise InputError(f"mix_style_{i}", f"'{ref.name}' is a generator, not a style: pick styles to mix.")
        try:
            w = float(weight)
        except (TypeError, ValueError):
            raise InputError(f"mix_weight_{i}", f"Weight {i} must be a number from {low:g} to {high:g}, "
                                                f"got {weight!r}.") from None
        if not math.isfinite(w) or not low <= w <= high:
            raise InputError(f"mix_weight_{i}", f"Weight {i} must be a finite number from {low:g} to {high:g}, "
                                                f"got {w:g}.")
        if refs and ref.source != refs[0].source:
            raise InputError(f"mix_style_{i}", f"Only styles of one generator mix: '{ref.name}' belongs to the "
                                               f"'{ref.source}' generator, '{refs[0].name}' to '{refs[0].source}'.")
        refs.append(ref)
        values.append(w)
    if not refs:
        raise InputError("mix_style_1", "Pick at least one style to mix (Style 1 to 4).")
    return refs[0].source, refs, values


def _nonzero(refs: list[StyleRef], weights: list[float]) -> None:
    if all(w == 0 for w in weights):
        raise InputError("mix_weight_1", "Every picked style has weight 0: give at least one a weight other than 0 "
                                         "(1 = the full style).")


def check_mix_preview(store: ModelStore, session: SessionStyles | None, mix_style_1: str | None,
                      mix_style_2: str | None, mix_style_3: str | None, mix_style_4: str | None, mix_weight_1: Any,
                      mix_weight_2: Any, mix_weight_3: Any, mix_weight_4: Any, seed: Any, truncation: Any,
                      n_images: Any, strength: Any) -> tuple[str, list[StyleRef], list[float], int, float, int, float]:
    """(source, styles, weights, seed, truncation, number of images, strength) of a live preview of the mix; an
    :class:`InputError` naming the input otherwise. Reads no weights."""
    _, seed, truncation, n, strength = check_generate(store, session, NO_STYLE, seed, truncation, n_images, strength)
    source, refs, weights = mix_rows(store, session, [mix_style_1, mix_style_2, mix_style_3, mix_style_4],
                                     [mix_weight_1, mix_weight_2, mix_weight_3, mix_weight_4])
    _nonzero(refs, weights)
    return source, refs, weights, seed, truncation, n, strength


def check_mix(store: ModelStore, session: SessionStyles | None, mix_style_1: str | None, mix_style_2: str | None,
              mix_style_3: str | None, mix_style_4: str | None, mix_weight_1: Any, mix_weight_2: Any,
              mix_weight_3: Any, mix_weight_4: Any, mix_name: str | None) -> tuple[str, list[StyleRef], list[float],
                                                                                    str]:
    """(source, styles, weights, name to save under) of the Mix button; an :class:`InputError` naming the input
    otherwise. An empty name is made from the styles' names. Reads no weights."""
    source, refs, weights = mix_rows(store, session, [mix_style_1, mix_style_2, mix_style_3, mix_style_4],
                                     [mix_weight_1, mix_weight_2, mix_weight_3, mix_weight_4])
    _nonzero(refs, weights)
    text = str(mix_name or "").strip()
    if not text:
        text = "-".join(dict.fromkeys(r.name for r, w in zip(refs, weights) if w != 0)) + "-mix"
    try:
        name = safe_style_name(text)
    except ValueError as exc:
        raise InputError("mix_name", str(exc)) from None
    return source, refs, weights, name


def check_mix_video(store: ModelStore, session: SessionStyles | None, mix_style_1: str | None,
                    mix_style_2: str | None, mix_style_3: str | None, mix_style_4: str | None, seed: Any,
                    truncation: Any, n_images: Any, strength: Any, mix_grid: bool
                    ) -> tuple[str, list[StyleRef], VideoPlan]:
    """(source, styles, plan) of a video through the picked styles in row order (weights are not used): the same
    seeds, truncation and strength as Generate, every style at that strength throughout (no fading in from the
    source); an :class:`InputError` naming the input otherwise."""
    _, seed, truncation, n, strength = check_generate(store, session, NO_STYLE, seed, truncation, n_images, strength)
    choices = [mix_style_1, mix_style_2, mix_style_3, mix_style_4]
    source, refs, _ = mix_rows(store, session, choices, [1.0] * len(choices))
    seeds = tuple((seed + i) % 2**32 for i in range(max(n, 2)))
    size = DISPLAY_MIN if store.tiny else (GRID_TILE if mix_grid and len(refs) > 1 else None)
    plan = VideoPlan(seeds=seeds, seconds_per_seed=VIDEO_SECONDS_PER_SEED, fps=VIDEO_FPS, truncation=truncation,
                     ramp=False, strength=strength, size=size, grid=bool(mix_grid) and len(refs) > 1)
    try:
        plan.validate()
    except ValueError as exc:
        raise InputError("n_images", str(exc)) from None
    return source, refs, plan


# ---------------------------------------------------------------------------------------------------- handlers
@dataclasses.dataclass
class MixOutputs(Outputs):
    """What the Mix button updates: the new style picked in Generate (which re-renders it), offered in the mix
    rows (and in Invert when it is a style of the inversion generator), and its file."""

    session: SessionStyles
    generate_style: Any  # the Generate tab's style dropdown, the mix selected
    invert_styles: Any  # the Invert tab's multi-select (offers the mix when it fits the inversion generator)
    mix_file: str  # the mix's .safetensors file (download)
    mix_status: str  # Markdown: what was saved


@dataclasses.dataclass
class MixPreviewOutputs(Outputs):
    """What a released weight shows: the Generate tab's pictures in the unsaved mix."""

    source_gallery: list
    styled_gallery: list
    info: str


@dataclasses.dataclass
class MixRowsOutputs(Outputs):
    """The mix rows' choices (this session's styles and the published ones), their picks kept."""

    mix_style_1: Any
    mix_style_2: Any
    mix_style_3: Any
    mix_style_4: Any


def row_choices(store: ModelStore, session: SessionStyles | None) -> list[tuple[str, str]]:
    """(label, value) for a mix row: an empty row, then every style of the session and the published ones."""
    return [EMPTY_ROW, *style_choices(store, session, with_none=False)]


def opening_rows(store: ModelStore) -> list[tuple[str, float]]:
    """(style, weight) of each row as the box opens: two published styles of the default source generator, half
    of each (the tab's opening style and :data:`OPENING_PARTNER` when both are published), so that the first preview
    mixes; where that generator has a single published style (tiny mode: one per generator), that style alone at
    weight 1 (:func:`opening_note` says why). Empty rows are :data:`EMPTY_ROW` at weight 0."""
    names = [name for _, name in store.published_choices(store.default_source())]
    picks = [n for n in (OPENING_STYLE, OPENING_PARTNER) if n in names]
    picks += [n for n in names if n not in picks]
    picks = picks[:2]
    weights = [1.0] if len(picks) == 1 else [0.5] * len(picks)
    rows = list(zip(picks, weights))
    return rows + [(EMPTY_ROW[1], 0.0)] * (MAX_MIX - len(rows))


def opening_note(store: ModelStore) -> str:
    """Markdown under the rows when they start with one style (:func:`opening_rows`), saying why; else ""."""
    rows = [name for name, _ in opening_rows(store) if name != EMPTY_ROW[1]]
    if len(rows) != 1:
        return ""
    source = store.default_source()
    return (f"Only styles of one generator mix, and the '{source}' generator has one published style, so Style 1 "
            "starts alone: train a style in the Adapt tab or upload one, then pick it as Style 2.")


def refresh_rows(store: ModelStore, session: SessionStyles | None) -> MixRowsOutputs:
    """The mix rows offering the session's styles as they are now (after a training run, an upload, a mix)."""
    choices = row_choices(store, session)
    return MixRowsOutputs(*(gr.Dropdown(choices=choices) for _ in range(MAX_MIX)))


@user_errors
def mix_styles(store: ModelStore, session: SessionStyles, mix_style_1: str | None, mix_style_2: str | None,
               mix_style_3: str | None, mix_style_4: str | None, mix_weight_1: Any, mix_weight_2: Any,
               mix_weight_3: Any, mix_weight_4: Any, mix_name: str | None, *, gpu: MixGpu | None = None
               ) -> MixOutputs:
    """Blend the picked styles with their weights into a new session style named ``mix_name`` (or after its
    styles), pick it in Generate (and offer it in Invert when it fits the inversion generator); its file downloads
    like a trained style's."""
    gpu = gpu or MixGpu.direct(store)
    source, refs, weights, base = check_mix(store, session, mix_style_1, mix_style_2, mix_style_3, mix_style_4,
                                            mix_weight_1, mix_weight_2, mix_weight_3, mix_weight_4, mix_name)
    loading_notice(refs)
    name, kept, dropped, _ = session.add_written(base, "mix", lambda tmp: gpu.save(source, refs, weights, str(tmp)))
    if dropped:
        gr.Warning(f"Dropped the oldest styles of this session to make room: {', '.join(dropped)}.")
    tabs = "Generate and Invert tabs" if source == store.invert_source() else "Generate tab"
    status = (f"Saved the mix **{name}** ({mix_label(refs, weights)}; {kind_words(kept)} of "
              f"the '{refs[0].source_label or source}' generator): it is picked above and offered in the {tabs}; "
              "download it below.")
    return MixOutputs(session=session, mix_file=str(kept.file), mix_status=status,
                      generate_style=gr.Dropdown(choices=style_choices(store, session), value=SESSION_PREFIX + name),
                      invert_styles=gr.Dropdown(choices=invert_choices(store, session)))


@user_errors
def mix_preview(store: ModelStore, session: SessionStyles, mix_style_1: str | None, mix_style_2: str | None,
                mix_style_3: str | None, mix_style_4: str | None, mix_weight_1: Any, mix_weight_2: Any,
                mix_weight_3: Any, mix_weight_4: Any, seed: Any, truncation: Any, n_images: Any, strength: Any,
                *, gpu: MixGpu | None = None) -> Iterator[MixPreviewOutputs]:
    """The Generate tab's seeds drawn in the mix as it is set now, without saving it (a weight was released); on a
    CPU the info line first says how long that takes."""
    gpu = gpu or MixGpu.direct(store)
    started = time.perf_counter()
    source, refs, weights, seed, truncation, n, strength = check_mix_preview(
        store, session, mix_style_1, mix_style_2, mix_style_3, mix_style_4, mix_weight_1, mix_weight_2,
        mix_weight_3, mix_weight_4, seed, truncation, n_images, strength)
    loading_notice(refs)
    notice = cpu_render_notice(store, 2 * n)
    if notice:
        yield MixPreviewOutputs(source_gallery=KEEP, styled_gallery=KEEP, info=notice)
    seeds = [(seed + i) % 2**32 for i in range(n)]
    src, sty = gpu.preview(source, refs, weights, seeds, truncation, strength)
    label = mix_label(refs, weights)
    ref = StyleRef(f"mix {label}", source)
    source_gallery, styled_gallery, info = rendered_galleries(store, ref, seeds, truncation, strength, src, sty)
    done = done_line(time.perf_counter() - started, n, True)
    yield MixPreviewOutputs(source_gallery=source_gallery, styled_gallery=styled_gallery,
                            info=f"{done} {info} A preview of the mix, not saved: **Mix and save** keeps it.")


@user_errors
def mix_video(store: ModelStore, session: SessionStyles, mix_style_1: str | None, mix_style_2: str | None,
              mix_style_3: str | None, mix_style_4: str | None, seed: Any, truncation: Any, n_images: Any,
              strength: Any, mix_grid: bool, progress: Any = gr.Progress(),  # noqa: B008 - Gradio fills it
              *, gpu: MixGpu | None = None) -> str:
    """An MP4 walking through Generate's seeds in the picked styles, in row order: it starts in the first style and
    morphs through the others at Generate's strength, or (``mix_grid``) shows them side by side. Output: the
    video file."""
    gpu = gpu or MixGpu.direct(store)
    source, refs, plan = check_mix_video(store, session, mix_style_1, mix_style_2, mix_style_3, mix_style_4, seed,
                                         truncation, n_images, strength, mix_grid)
    loading_notice(refs)
    names = "-".join(safe_style_name(r.name) for r in refs)[:80]
    path = str(session.scratch(f"nada-{names}-{'grid' if plan.grid else 'morph'}-{plan.seeds[0]}.mp4"))
    if gpu_mode() is not None:  # a callback cannot cross into the GPU worker
        return gpu.video(source, refs, plan, path)
    return gpu.video(source, refs, plan, path,
                     lambda done: progress(done / plan.frames, desc=f"Video: frame {done} of {plan.frames}"))


def kind_words(style: Style | SessionStyle) -> str:
    """What a style is, for the status line: "a compact style", "a weight and compact style", ... A blend records
    its parts' kinds (``meta["blend"]``): a mix of the two compact forms, ``s * (1 + offset) + delta``, is still a
    compact style. Reads metadata only (a session's style holds no tensors)."""
    parts = {part.get("kind") for part in style.meta.get("blend") or [] if isinstance(part, dict)}
    if style.kind == "mixed" and parts and parts <= {"style_delta", "modulation"}:
        return "a compact style"
    return KIND_WORDS.get(style.kind, style.kind)
