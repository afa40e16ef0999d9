"""The Invert tab's handlers: align, invert with e4e, edit in W+ (:mod:`nada.edits`) and draw in every style; the
photo's video; a new strength redraws the session's kept codes without inverting again."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import uuid
from typing import Any

import gradio as gr
from PIL import Image

from ..align import SOFT_FACE_WARNING
from ..e4e import INPUT_SIZE as E4E_INPUT
from ..edits import PRESETS as EDIT_PRESETS
from ..edits import EditConfig, cached_edit
from ..images import load_image
from ..model_store import ModelStore
from ..video import PhotoVideoPlan
from .glue import Outputs, display_image, format_seconds, loading_notice, user_errors
from .gpu_calls import GpuCalls, learn_edit_duration
from .gpu_tasks import StyleRef
from .inputs import NO_EDIT, check_edit, check_invert, own_names
from .sessions import SessionStyles
from .zerogpu import gpu_mode


@dataclasses.dataclass
class InvertOutputs(Outputs):
    """What an Invert click shows."""

    aligned: Image.Image  # the aligned face (the encoder's input)
    reconstruction: Image.Image  # e4e's reconstruction
    gallery: list  # (styled image, caption) per chosen style (first the edited face, with an edit)


@dataclasses.dataclass
class InvertVideoOutputs(Outputs):
    """What the Invert tab's Video button shows."""

    video: str  # the MP4: the face through each style, the edit going forth and back
    gif: str  # the same as a smaller GIF, for sharing


@user_errors
def invert_photo(store: ModelStore, session: SessionStyles, image: Any, styles: list[str] | None,
                 strength: Any, edit: Any = NO_EDIT, edit_strength: Any = 1.0,
                 progress: Any = gr.Progress(),  # noqa: B008 - Gradio fills it
                 *, gpu: GpuCalls | None = None) -> InvertOutputs:
    """Align the face in ``image``, invert it with e4e, and render it in each chosen style (dropdown values); with an
    ``edit`` (a preset or free text, :mod:`nada.edits`) the face is edited at ``edit_strength`` first, and the gallery
    starts with the edited face. An edit's direction is learned on its first use (with progress), then cached."""
    gpu = gpu or GpuCalls.direct(store)
    refs, strength = check_invert(store, session, image, styles, strength, edit, edit_strength)
    pair, edit_strength = check_edit(edit, edit_strength)
    loading_notice(refs)
    face = aligned_face(store, image)  # no face: fails here, before the GPU and before learning an edit
    direction = edit_direction(store, pair, str(edit).strip(), progress, gpu) if pair is not None else None
    aligned, reconstruction, styled, codes = gpu.invert(face, refs, strength, direction, edit_strength)
    what = f"{str(edit).strip()} {edit_strength:+g}" if direction is not None else ""
    session.keep_inversion(photo_key(image), codes, what)  # a new strength redraws these codes (restyle_photo)
    return InvertOutputs(aligned=display_image(aligned), reconstruction=display_image(reconstruction),
                         gallery=styled_gallery(styled, strength, what))


def aligned_face(store: ModelStore, image: Any) -> Image.Image:
    """The photo decoded by nada's loader (its messages say what is wrong with a file) and its face aligned for e4e,
    on the CPU (a soft face gets a warning)."""
    with own_names(image if isinstance(image, (str, os.PathLike)) else None):
        photo = load_image(image)
    face = store.aligner().align(photo, output_size=E4E_INPUT)
    if "nada_soft_face" in face.info:
        gr.Warning(SOFT_FACE_WARNING.format(px=face.info["nada_soft_face"]))
    return face


EDIT_TINY = {"steps": 4, "batch": 1}  # tiny mode learns an edit in a few seconds (the tiny models are noise anyway)


def edit_choices() -> list[tuple[str, str]]:
    """(label, value) of the Edit dropdown: no edit, then the face presets; free text may be typed."""
    return [("No edit", NO_EDIT)] + [(name, name) for name in EDIT_PRESETS]


def edit_settings(store: ModelStore, pair: tuple[str, str]) -> EditConfig:
    """How the app learns the edit ``pair`` (from, to): ViT-B/32 (tiny mode: the tiny CLIP, a few steps)."""
    clips = ("tiny",) if store.tiny else ("clip-vit-b32",)
    return EditConfig(source_text=pair[0], target_text=pair[1], clip_models=clips, **(EDIT_TINY if store.tiny else {}))


def edit_direction(store: ModelStore, pair: tuple[str, str], label: str, progress: Any, gpu: GpuCalls) -> Any:
    """The direction [n_latent, 512] of the edit ``pair`` for the inversion generator: from the weights cache, or
    learned now on the GPU (once), saying so with progress."""
    source = store.invert_source()
    config = edit_settings(store, pair)
    fingerprint = store.fingerprint(source)
    for identity in (True, False):
        found = cached_edit(fingerprint, config, identity)
        if found is not None:
            return found.direction
    seconds = format_seconds(learn_edit_duration({"config": config}))
    gr.Info(f"Learning the edit '{label}' for this generator: once (up to {seconds} on a GPU); later uses are "
            "instant.")
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


PHOTO_VIDEO = {"fps": 24, "hold_s": 1.5, "morph_s": 1.0}  # the Invert tab's video


PHOTO_VIDEO_TINY = {"fps": 8, "hold_s": 1.0, "morph_s": 0.5}  # tiny mode: a few frames (tests, demos)


@user_errors
def invert_video(store: ModelStore, session: SessionStyles, image: Any, styles: list[str] | None, strength: Any,
                 edit: Any = NO_EDIT, edit_strength: Any = 1.0, progress: Any = gr.Progress(),  # noqa: B008
                 *, gpu: GpuCalls | None = None) -> InvertVideoOutputs:
    """A video of the photo, as the official demo made: the inverted face holds in each stop (the reconstruction,
    then each chosen style at ``strength``) while the edit goes forth and back, then morphs to the next stop; an MP4
    and a smaller GIF for sharing, with a progress bar when rendered in this process."""
    gpu = gpu or GpuCalls.direct(store)
    refs, strength = check_invert(store, session, image, styles, strength, edit, edit_strength)
    pair, edit_strength = check_edit(edit, edit_strength)
    loading_notice(refs)
    face = aligned_face(store, image)
    direction = edit_direction(store, pair, str(edit).strip(), progress, gpu) if pair is not None else None
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
    return InvertVideoOutputs(video=video, gif=animation)


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


def check_restyle(store: ModelStore, session: SessionStyles | None, image: Any, styles: list[str] | None,
                  strength: Any) -> tuple[list[StyleRef], float]:
    """The checks of :func:`restyle_photo`: Invert's (:func:`check_invert`)."""
    return check_invert(store, session, image, styles, strength)


@user_errors
def restyle_photo(store: ModelStore, session: SessionStyles, image: Any, styles: list[str] | None, strength: Any,
                  *, gpu: GpuCalls | None = None) -> Any:
    """The Invert tab's styled results again when its strength slider is released: the photo inverted last in this
    session (its W+ codes are kept) drawn in the chosen styles at the new strength, without aligning or inverting it
    again. A photo not inverted yet leaves the results as they are. Output: the gallery."""
    gpu = gpu or GpuCalls.direct(store)
    refs, strength = check_restyle(store, session, image, styles, strength)
    try:
        kept = session.inversion(photo_key(image))
    except OSError:  # the upload is gone (the page was idle for hours): Invert says so
        kept = None
    if kept is None:
        return gr.skip()
    codes, edit = kept  # [1, n_latent, 512], and the edit in them ("" for none): its face leads the gallery
    loading_notice(refs)
    return styled_gallery(gpu.restyle(codes, ([None] if edit else []) + refs, strength), strength, edit)
