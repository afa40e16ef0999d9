"""The Invert tab: a photo's face aligned, inverted with e4e, edited in W+ (:mod:`nada.edits`, on the W+ rows the
Edit rows menu picks) and drawn in every chosen style; the photo's video; a new style or edit strength (or another
learned edit, its rows, or a style pick) redraws the session's kept codes without inverting again. Each action ends
its status line with what it did ("Done in 1.2 s: ...").

Handlers (``invert_photo``, ``invert_video``, ``restyle_photo``) run :func:`check_invert` first (the page runs it
before the event too); the face is aligned on the CPU, and the inversion and drawing run as GPU tasks
(:class:`InvertGpu`): module-level functions of the model store and small picklable arguments, as ZeroGPU needs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr
import torch
from PIL import Image

from ..align import SOFT_FACE_WARNING
from ..edits import AS_PRESET, EditConfig, apply_edit, cached_edit, edit_prompts, learn_cached
from ..edits import PRESETS as EDIT_PRESETS
from ..edits import check_strength as check_edit_strength
from ..edits import edit_rows as rows_of_edit  # (the handlers' edit_rows is the Edit rows menu's value)
from ..images import load_image, probe_image
from ..invert import invert, render_codes
from ..model_store import ModelStore
from ..nets.e4e import INPUT_SIZE as E4E_INPUT
from ..nets.rows import ROW_GROUPS, resolve_rows, rows_label
from ..styles import apply_style
from ..video import PhotoVideoPlan, render_photo_video
from ..weights import WeightsUnavailableError
from .errors import InputError, own_names, user_errors
from .input_checks import check_upload, on_field, unit_value
from .page import display_image, format_seconds, loading_notice
from .sessions import SessionStyles
from .status_line import done_in
from .style_menus import NO_STYLE, StyleRef, load_ref, resolve_style
from .wiring import KEEP, BoundTasks, Outputs
from .zerogpu import gpu_mode

MAX_IMAGE_MB = 20  # photo uploads
NO_EDIT = "none"  # the Edit dropdown's value for no edit
EDIT_ROWS = (("Preset's choice", AS_PRESET), ("All rows", "all"), ("Coarse (0-5)", "coarse"),
             ("Medium (6-10)", "medium"), ("Fine (11 on)", "fine"), ("Coarse + medium", "coarse+medium"),
             ("Medium + fine", "medium+fine"))  # the Edit rows menu: (label, value); row numbers may be typed
EDIT_TINY = {"steps": 4, "batch": 1}  # tiny mode learns an edit in a few seconds (the tiny models are noise anyway)
PHOTO_VIDEO = {"fps": 24, "hold_s": 1.5, "morph_s": 1.0}  # the tab's video
PHOTO_VIDEO_TINY = {"fps": 8, "hold_s": 1.0, "morph_s": 0.5}  # tiny mode: a few frames (tests, demos)


# ---------------------------------------------------------------------------------------------- GPU tasks
def invert_in_styles(store: ModelStore, face: Image.Image, refs: list[StyleRef], strength: float,
                     edit: torch.Tensor | None = None, edit_strength: float = 0.0
                     ) -> tuple[Image.Image, Image.Image, list[tuple[Image.Image, str | None]], torch.Tensor]:
    """(aligned face, e4e reconstruction, [(styled image, style name)], W+ codes) of an aligned face crop; the codes
    ([1, n_latent, 512], on the CPU) are the inversion's, before any edit (:func:`restyle_photo` edits and redraws
    them at other strengths). With an ``edit`` direction ([n_latent, 512]) the drawn codes are edited at
    ``edit_strength`` (:func:`nada.edits.apply_edit`) and the list starts with the edited face drawn by the source
    generator, named None."""
    source = store.invert_source()
    gen = store.generator(source)
    encoder, latent_avg = store.e4e()
    with torch.no_grad():
        result = invert(face, encoder, latent_avg, gen, align=False)
    codes = result.codes if edit is None else apply_edit(result.codes, edit, edit_strength)  # [1, n_latent, 512]
    edited = [(render_codes(gen, codes), None)] if edit is not None else []
    styled = edited + styled_codes(store, codes, refs, strength)
    return result.aligned, result.reconstruction, styled, result.codes.cpu()


def styled_codes(store: ModelStore, codes: torch.Tensor, refs: list[StyleRef | None], strength: float
                 ) -> list[tuple[Image.Image, str | None]]:
    """[(image, style name)]: W+ codes [1, n_latent, 512] of the inversion generator drawn in each style at
    ``strength`` (the Invert tab's results again at another strength, without inverting the photo again); a None
    in ``refs`` is the source generator itself (an edited face), named None."""
    source = store.invert_source()
    gen = store.generator(source)
    styled = []
    with torch.no_grad():
        for ref in refs:  # one styled copy in memory at a time
            if ref is None:
                styled.append((render_codes(gen, codes), None))
                continue
            copy = apply_style(gen, load_ref(store, ref), strength, check_source=False, source_name=source)
            styled.append((render_codes(copy, codes), ref.name))
            del copy
    return styled


@dataclass
class EditUpdate:
    """Learning an edit direction, reported to the page (picklable: it crosses from the GPU worker)."""

    step: int
    total: int
    elapsed_s: float = 0.0
    done: bool = False
    direction: torch.Tensor | None = None  # [n_latent, 512] on the CPU, on the last update


def learn_edit(store: ModelStore, source: str, config: EditConfig) -> Iterator[EditUpdate]:
    """Learn (or take from the weights cache) the edit direction of ``config`` for ``source``, streaming progress;
    the identity loss takes part for face generators when ArcFace is available (:func:`nada.edits.learn_cached`)."""
    gen = store.generator(source)
    clips = store.clips(list(config.clip_models))
    id_loss = None
    if not store.tiny and store.faces(source):
        try:
            id_loss = store.id_loss()
        except WeightsUnavailableError:
            id_loss = None
    for rec in learn_cached(gen, clips, config, id_loss, source=source, fingerprint=store.fingerprint(source)):
        yield EditUpdate(rec.step, rec.total, rec.elapsed_s, rec.done, rec.direction)


def render_invert_video(store: ModelStore, face: Image.Image, refs: list[StyleRef], plan: PhotoVideoPlan,
                        edit: torch.Tensor | None, path: str, gif_path: str,
                        progress: Callable[[int, int], None] | None = None) -> tuple[str, str]:
    """(MP4, GIF) of an aligned face: inverted, then drawn at each stop (the reconstruction, then each style at
    ``plan.style_strength``) while the ``edit`` goes forth and back (:func:`nada.video.render_photo_video`)."""
    source = store.invert_source()
    gen = store.generator(source)
    encoder, latent_avg = store.e4e()
    with torch.no_grad():
        result = invert(face, encoder, latent_avg, gen, align=False)
    styles = [load_ref(store, ref) for ref in refs]
    mp4, gif = render_photo_video(gen, styles, result.codes, path, plan, edit, gif_path, progress)
    return str(mp4), str(gif)


def invert_duration(args: dict) -> float:
    """ZeroGPU seconds for an inversion (arguments of :func:`invert_in_styles`)."""
    return 20 + 5 * len(args.get("refs") or [])


def restyle_duration(args: dict) -> float:
    """ZeroGPU seconds for redrawing kept codes (arguments of :func:`styled_codes`)."""
    return 10 + 3 * len(args.get("refs") or [])


EDIT_S_PER_STEP = 0.8  # GPU seconds per learning step at 1024 px, batch 4, ViT-B/32: an estimate (nada.edits)


def learn_edit_duration(args: dict) -> float:
    """ZeroGPU seconds for learning an edit (arguments of :func:`learn_edit`)."""
    config = args.get("config")
    return 30 + EDIT_S_PER_STEP * (config.steps if isinstance(config, EditConfig) else EditConfig.steps)


def invert_video_duration(args: dict) -> float:
    """ZeroGPU seconds for a photo's video (arguments of :func:`render_invert_video`)."""
    plan, refs = args.get("plan"), args.get("refs") or []
    frames = plan.frames(len(refs) + 1) if isinstance(plan, PhotoVideoPlan) else 200
    return 30 + 0.3 * frames


@dataclasses.dataclass(frozen=True)
class InvertGpu(BoundTasks):
    """The tab's GPU tasks bound to the store (:class:`~nada.app.wiring.BoundTasks`)."""

    invert: Callable
    restyle: Callable
    learn_edit: Callable
    invert_video: Callable

    @classmethod
    def tasks(cls) -> tuple[tuple[Callable, Any], ...]:
        return ((invert_in_styles, invert_duration), (styled_codes, restyle_duration),
                (learn_edit, learn_edit_duration), (render_invert_video, invert_video_duration))


# ------------------------------------------------------------------------------------------------- checks
def check_edit(edit: Any, edit_strength: Any) -> tuple[tuple[str, str] | None, float]:
    """((from, to) texts of the edit or None for no edit, its strength) from the Invert tab's Edit row: a preset
    name or free text (:func:`nada.edits.edit_prompts`), a strength from -3 to 3; an :class:`InputError` otherwise."""
    value = on_field("edit_strength", lambda: check_edit_strength(edit_strength))
    if edit is None or (isinstance(edit, str) and edit.strip().casefold() == NO_EDIT):
        return None, value
    if not isinstance(edit, str):
        raise InputError("edit", f"The edit must be text (a preset or what the face should become), got "
                                 f"{type(edit).__name__}.")
    return on_field("edit", lambda: edit_prompts(edit)), value


def check_edit_rows(store: ModelStore, edit: Any, edit_rows_value: Any) -> str | None:
    """The W+ rows the Edit row's edit may change (one spelling, :func:`nada.nets.rows.canonical_rows`; None = every
    row) from the Edit rows menu: the preset's own (:data:`~nada.edits.AS_PRESET`; every row for typed text), "all",
    a group, groups or row numbers joined by "+", each a row of the inversion generator; an :class:`InputError` on
    ``edit_rows`` otherwise. Nothing loads (the generator's rows come from its registry size)."""
    if edit_rows_value is None:
        edit_rows_value = AS_PRESET
    if not isinstance(edit_rows_value, (str, int)) or isinstance(edit_rows_value, bool):
        raise InputError("edit_rows", f"The edit's rows must be a group ({', '.join(ROW_GROUPS)}), several joined "
                                      f"by '+', row numbers or all, got {type(edit_rows_value).__name__}.")
    spec = on_field("edit_rows", lambda: rows_of_edit(edit if isinstance(edit, str) else "", edit_rows_value))
    n_latent = store.generator_rows(store.invert_source())
    if n_latent is not None:
        on_field("edit_rows", lambda: resolve_rows(spec, n_latent))
    return spec


def check_invert(store: ModelStore, session: SessionStyles | None, image: Any, styles: list[str] | None,
                 strength: Any, edit: Any = NO_EDIT, edit_strength: Any = 1.0, edit_rows: Any = AS_PRESET
                 ) -> tuple[list[StyleRef], float]:
    """(styles, strength) from the Invert tab's values, once the photo is an image file within the limits (its
    header is read, not its pixels) and the Edit row is usable (:func:`check_edit`, :func:`check_edit_rows`); an
    :class:`InputError` naming the input otherwise, files named by their own names. Cheap: the page runs it before
    the event."""
    strength = unit_value(strength, "Style strength", "strength")
    check_edit(edit, edit_strength)
    check_edit_rows(store, edit, edit_rows)
    if image is None or (isinstance(image, (str, bytes)) and not image):
        raise InputError("image", "Upload a photo with a face first (or use the webcam, the clipboard or an example).")
    with own_names(image if isinstance(image, (str, os.PathLike)) else None):
        if isinstance(image, (str, os.PathLike)):
            on_field("image", lambda: check_upload(image, MAX_IMAGE_MB, "photo"))
        if isinstance(image, (str, os.PathLike, bytes)):
            on_field("image", lambda: probe_image(image))
    source = store.invert_source()
    refs = [on_field("styles", lambda c=c: resolve_style(store, session, c)) for c in (styles or [])
            if c and c != NO_STYLE]
    for ref in refs:
        if ref.source != source:
            raise InputError("styles", f"The style '{ref.name}' belongs to the '{ref.source_label or ref.source}' "
                                       f"generator; inversion works with the '{source}' face generator only (e4e "
                                       "inverts faces into the FFHQ StyleGAN2 generator at 1024 px).")
    return refs, strength


def check_restyle(store: ModelStore, session: SessionStyles | None, image: Any, styles: list[str] | None,
                  strength: Any, edit: Any = NO_EDIT, edit_strength: Any = 1.0, edit_rows: Any = AS_PRESET
                  ) -> tuple[list[StyleRef], float]:
    """The checks of :func:`restyle_photo`: Invert's (:func:`check_invert`)."""
    return check_invert(store, session, image, styles, strength, edit, edit_strength, edit_rows)


# ----------------------------------------------------------------------------------------------- handlers
@dataclasses.dataclass
class InvertOutputs(Outputs):
    """What an Invert click shows; a field left at ``KEEP`` stays as it is (a failure changes the status alone)."""

    aligned: Any = KEEP  # the aligned face (the encoder's input)
    reconstruction: Any = KEEP  # e4e's reconstruction
    gallery: Any = KEEP  # (styled image, caption) per chosen style (first the edited face, with an edit)
    status: Any = KEEP  # the line under the buttons: "Done in 1.2 s: ..."


@dataclasses.dataclass
class RestyleOutputs(Outputs):
    """What a released strength (or a new edit or style pick) redraws from the kept codes."""

    gallery: Any = KEEP  # as Invert's
    status: Any = KEEP  # what was redrawn, or why nothing was


@dataclasses.dataclass
class InvertVideoOutputs(Outputs):
    """What the Invert tab's Video button shows."""

    video: Any = KEEP  # the MP4: the face through each style, the edit going forth and back
    gif: Any = KEEP  # the same as a smaller GIF, for sharing
    status: Any = KEEP  # "Done in 4.2 s: ..."


def results_text(n_styles: int, edit: str, lead: tuple[str, ...] = ()) -> str:
    """What was drawn, in words, after the ``lead`` items: "the aligned face, the edited face (smile +1.5) and
    2 styles"."""
    items = [*lead, *([f"the edited face ({edit})"] if edit else []),
             *([f"{n_styles} style{'' if n_styles == 1 else 's'}"] if n_styles else [])]
    if not items:
        return "no style or edit picked"
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


@user_errors
def invert_photo(store: ModelStore, session: SessionStyles, image: Any, styles: list[str] | None,
                 strength: Any, edit: Any = NO_EDIT, edit_strength: Any = 1.0, edit_rows: Any = AS_PRESET,
                 progress: Any = gr.Progress(),  # noqa: B008 - Gradio fills it
                 *, gpu: InvertGpu | None = None) -> InvertOutputs:
    """Align the face in ``image``, invert it with e4e, and render it in each chosen style (dropdown values); with an
    ``edit`` (a preset or free text, :mod:`nada.edits`) the face is edited at ``edit_strength`` first, on the W+
    ``edit_rows`` (:func:`check_edit_rows`), and the gallery starts with the edited face. An edit's direction is
    learned on its first use (with progress), then cached."""
    gpu = gpu or InvertGpu.direct(store)
    start = time.monotonic()
    refs, strength = check_invert(store, session, image, styles, strength, edit, edit_strength, edit_rows)
    pair, edit_strength = check_edit(edit, edit_strength)
    rows = check_edit_rows(store, edit, edit_rows)
    loading_notice(refs)
    face = aligned_face(store, image)  # no face: fails here, before the GPU and before learning an edit
    direction = edit_direction(store, pair, rows, str(edit).strip(), progress, gpu) if pair is not None else None
    aligned, reconstruction, styled, codes = gpu.invert(face, refs, strength, direction, edit_strength)
    what = edit_caption(edit, edit_strength, rows) if direction is not None else ""
    session.keep_inversion(photo_key(image), codes)  # unedited: a new strength or edit redraws them (restyle_photo)
    drawn = results_text(len(refs), what, ("the aligned face", "its reconstruction"))
    status = f"{done_in(time.monotonic() - start)}: {drawn}. A released slider redraws them at once."
    return InvertOutputs(aligned=display_image(aligned), reconstruction=display_image(reconstruction),
                         gallery=styled_gallery(styled, strength, what), status=status)


def edit_caption(edit: Any, edit_strength: float, rows: str | None = None) -> str:
    """An edit as the gallery captions it: "smile +1.5", with its rows when they are not the preset's own (every
    row for typed text) as the command line spells them: "smile +1.5 @medium"."""
    text = f"{str(edit).strip()} {edit_strength:+g}"
    return text if rows == rows_of_edit(str(edit), AS_PRESET) else f"{text} @{rows or 'all'}"


def aligned_face(store: ModelStore, image: Any) -> Image.Image:
    """The photo decoded by nada's loader (its messages say what is wrong with a file) and its face aligned for e4e,
    on the CPU (a soft face gets a warning)."""
    with own_names(image if isinstance(image, (str, os.PathLike)) else None):
        photo = load_image(image)
    face = store.aligner().align(photo, output_size=E4E_INPUT)
    if "nada_soft_face" in face.info:
        gr.Warning(SOFT_FACE_WARNING.format(px=face.info["nada_soft_face"]))
    return face


def styles_info(store: ModelStore) -> str:
    """The line under the tab's Styles: which styles it offers (those of the inversion generator,
    :func:`~nada.app.style_menus.invert_choices`), and why the others are absent."""
    source = store.invert_source()
    others = [name for _, name in store.source_choices() if name != source]
    text = f"Styles of '{source}', the generator photos are inverted into: trained, uploaded, mixed or published."
    if others:
        text += f" Styles of other generators ({', '.join(others)}) can't be used on photos."
    return text


def edit_choices() -> list[tuple[str, str]]:
    """(label, value) of the Edit dropdown: no edit, then the face presets; free text may be typed."""
    return [("No edit", NO_EDIT)] + [(name, name) for name in EDIT_PRESETS]


def edit_rows_info() -> str:
    """The line under the Edit rows menu: what the groups hold and each preset's own rows."""
    by_rows: dict[str, list[str]] = {}
    for name, preset in EDIT_PRESETS.items():
        by_rows.setdefault(preset.rows or "all", []).append(name)
    presets = "; ".join(f"{', '.join(names)}: {rows}" for rows, names in by_rows.items())
    return (f"coarse: pose, shape; medium: features; fine: colour, light. Preset's choice: {presets}; typed text: "
            "all. Row numbers may be typed (0+1+2)")


def edit_settings(store: ModelStore, pair: tuple[str, str], rows: str | None = None) -> EditConfig:
    """How the app learns the edit ``pair`` (from, to) on the W+ ``rows`` (None = every row): ViT-B/32 (tiny mode:
    the tiny CLIP, a few steps)."""
    clips = ("tiny",) if store.tiny else ("clip-vit-b32",)
    return EditConfig(source_text=pair[0], target_text=pair[1], clip_models=clips, rows=rows,
                      **(EDIT_TINY if store.tiny else {}))


def learned_direction(store: ModelStore, pair: tuple[str, str], rows: str | None = None) -> torch.Tensor | None:
    """The direction [n_latent, 512] of the edit ``pair`` on ``rows`` for the inversion generator when it is learned
    already (the weights cache), else None; nothing is learned here."""
    config = edit_settings(store, pair, rows)
    fingerprint = store.fingerprint(store.invert_source())
    for identity in (True, False):
        found = cached_edit(fingerprint, config, identity)
        if found is not None:
            return found.direction
    return None


def edit_direction(store: ModelStore, pair: tuple[str, str], rows: str | None, label: str, progress: Any,
                   gpu: InvertGpu) -> Any:
    """The direction [n_latent, 512] of the edit ``pair`` on the W+ ``rows`` (None = every row) for the inversion
    generator: from the weights cache, or learned now on the GPU (once), saying so with progress."""
    source = store.invert_source()
    config = edit_settings(store, pair, rows)
    found = learned_direction(store, pair, rows)
    if found is not None:
        return found
    seconds = format_seconds(learn_edit_duration({"config": config}))
    gr.Info(f"Learning the edit '{label}' on {rows_label(rows)} for this generator: once (up to {seconds} on a "
            "GPU); later uses are instant.")
    last = None
    progress(0.0, desc=f"Learning the edit '{label}' (first use)...")
    for upd in gpu.learn_edit(source, config):
        last = upd
        if not upd.done:
            progress(upd.step / upd.total, desc=f"Learning the edit '{label}' (first use): step {upd.step} of "
                                                f"{upd.total}")
    if last is None or last.direction is None:
        raise ValueError(f"Learning the edit '{label}' gave no direction; please try again.")
    return last.direction


@user_errors
def invert_video(store: ModelStore, session: SessionStyles, image: Any, styles: list[str] | None, strength: Any,
                 edit: Any = NO_EDIT, edit_strength: Any = 1.0, edit_rows: Any = AS_PRESET,
                 progress: Any = gr.Progress(),  # noqa: B008 - Gradio fills it
                 *, gpu: InvertGpu | None = None) -> InvertVideoOutputs:
    """A video of the photo, as the official demo made: the inverted face holds in each stop (the reconstruction,
    then each chosen style at ``strength``) while the edit goes forth and back, then morphs to the next stop; an MP4
    and a smaller GIF for sharing, with a progress bar when rendered in this process."""
    gpu = gpu or InvertGpu.direct(store)
    start = time.monotonic()
    refs, strength = check_invert(store, session, image, styles, strength, edit, edit_strength, edit_rows)
    pair, edit_strength = check_edit(edit, edit_strength)
    rows = check_edit_rows(store, edit, edit_rows)
    loading_notice(refs)
    face = aligned_face(store, image)
    direction = edit_direction(store, pair, rows, str(edit).strip(), progress, gpu) if pair is not None else None
    plan = PhotoVideoPlan(**(PHOTO_VIDEO_TINY if store.tiny else PHOTO_VIDEO), style_strength=strength,
                          edit_strength=edit_strength if direction is not None else 0.0)
    plan.validate(len(refs) + 1)
    stem = f"nada-photo-{uuid.uuid4().hex[:8]}"
    mp4, gif = str(session.scratch(stem + ".mp4")), str(session.scratch(stem + ".gif"))
    if gpu_mode() is not None:  # a callback cannot cross into the GPU worker
        video, animation = gpu.invert_video(face, refs, plan, direction, mp4, gif)
    else:
        video, animation = gpu.invert_video(face, refs, plan, direction, mp4, gif,
                                            lambda done, total: progress(done / total,
                                                                         desc=f"Video: frame {done} of {total}"))
    stops = f"the reconstruction and {len(refs)} style{'' if len(refs) == 1 else 's'}" if refs else \
        "the reconstruction"
    edited = f", the edit '{edit_caption(edit, edit_strength, rows)}' going forth and back" if direction is not None \
        else ""
    return InvertVideoOutputs(video=video, gif=animation,
                              status=f"{done_in(time.monotonic() - start)}: the video of {stops}{edited} (MP4 and "
                                     "GIF below).")


def styled_gallery(styled: list[tuple[Image.Image, str | None]], strength: float, edit: str = "") -> list:
    """The Invert tab's gallery: each styled image captioned with its style and strength, and with the ``edit`` in
    its codes when there is one (the edited face itself, named None, is captioned with the edit alone)."""
    return [(display_image(im), f"edited: {edit}" if name is None else
             f"{name} (strength {strength:g})" + (f" · {edit}" if edit else "")) for im, name in styled]


def photo_key(image: Any) -> str:
    """A key of a photo input's content (SHA-256 of its file or bytes): the same photo, the same key."""
    digest = hashlib.sha256()
    if isinstance(image, (bytes, bytearray)):
        digest.update(image)
    else:
        with open(image, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


@user_errors
def restyle_photo(store: ModelStore, session: SessionStyles, image: Any, styles: list[str] | None, strength: Any,
                  edit: Any = NO_EDIT, edit_strength: Any = 1.0, edit_rows: Any = AS_PRESET, *,
                  gpu: InvertGpu | None = None) -> RestyleOutputs:
    """The Invert tab's results again when a strength slider is released (or another edit or style is picked): the
    photo inverted last in this session (its unedited W+ codes are kept) edited and drawn in the chosen styles at
    the new strengths, without aligning or inverting it again. An edit not learned yet is not learned here: the
    status line says to press Invert. A photo not inverted yet leaves the results as they are, and the status line
    says so too."""
    gpu = gpu or InvertGpu.direct(store)
    start = time.monotonic()
    refs, strength = check_restyle(store, session, image, styles, strength, edit, edit_strength, edit_rows)
    pair, edit_strength = check_edit(edit, edit_strength)
    rows = check_edit_rows(store, edit, edit_rows)
    try:
        kept = session.inversion(photo_key(image))
    except OSError:  # the upload is gone (the page was idle for hours): Invert says so
        kept = None
    if kept is None:
        return RestyleOutputs(status="This photo is not inverted yet: press **Invert**; after that the sliders "
                                     "redraw the results at once.")
    codes = kept[0]  # [1, n_latent, 512], before any edit
    what = ""
    if pair is not None:
        direction = learned_direction(store, pair, rows)
        if direction is None:
            seconds = format_seconds(learn_edit_duration({"config": edit_settings(store, pair, rows)}))
            on_rows = "" if rows == rows_of_edit(str(edit), AS_PRESET) else f" on {rows_label(rows)}"
            return RestyleOutputs(status=f"The edit '{str(edit).strip()}'{on_rows} is not learned yet: press "
                                         f"**Invert** to learn it (once, up to {seconds} on a GPU). The results are "
                                         "as they were.")
        codes, what = apply_edit(codes, direction, edit_strength), edit_caption(edit, edit_strength, rows)
    if not refs and not what:  # nothing to draw (no GPU call): the results are the face and its reconstruction
        return RestyleOutputs(gallery=[], status=f"{done_in(time.monotonic() - start)}: no style or edit picked; "
                                                 "the aligned face and its reconstruction stay.")
    loading_notice(refs)
    gallery = styled_gallery(gpu.restyle(codes, ([None] if what else []) + refs, strength), strength, what)
    done = done_in(time.monotonic() - start)
    return RestyleOutputs(gallery=gallery, status=f"{done}: redrew {results_text(len(refs), what)} from the kept "
                                                  f"codes at style strength {strength:g} (no new inversion).")
