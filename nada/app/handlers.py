"""The app's handlers: plain functions that take the model store, the session's styles and the UI values.

``app.py`` only lays the page out and wires these in (with :func:`bind`); tests call them directly. Every handler
turns bad input and known failures into a ``gr.Error`` whose message a person understands (:func:`user_errors`),
so one user's mistake never stops the app. Each handler's parameters are named like the components that feed them
and it returns (or streams) a named :class:`~nada.app.glue.Outputs` record whose fields are named like the components
it updates; ``app.py`` wires both by name (:func:`~nada.app.glue.wire`). Each handler starts with the checks of
:mod:`nada.app.inputs`, which the page also runs before the event (a refused value changes no output).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import random
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr
import pandas as pd
from PIL import Image

from ..align import SOFT_FACE_WARNING
from ..clip_models import JUDGE_CLIP
from ..e4e import INPUT_SIZE as E4E_INPUT
from ..edits import MAX_STRENGTH as MAX_EDIT_STRENGTH
from ..edits import PRESETS as EDIT_PRESETS
from ..edits import EditConfig, cached_edit
from ..images import load_image
from ..metrics import LABELS
from ..model_store import DEFAULT_CLIPS, INVERT_ASSETS, ModelStore
from ..styles import (
    StyleFileError,
    load_style,
    verify_source,
)
from ..train import RECIPES, AdaptConfig
from ..video import PhotoVideoPlan, VideoPlan
from ..weights import REGISTRY, offline
from .glue import (
    KEEP,
    InputError,
    Outputs,
    bind,
    hide_server_paths,
    photo_input,
    session_id,
    user_errors,
    validator,
    wire,
    wire_live,
)
from .gpu_tasks import (
    StyleRef,
    TrainUpdate,
    import_pt_style,
    invert_in_styles,
    learn_edit,
    render_images,
    render_invert_video,
    render_style_thumbnails,
    render_walk_video,
    style_file_step,
    styled_codes,
    train_style,
)
from .inputs import (
    MAX_BATCH,
    MAX_IMAGE_MB,
    MAX_IMAGES,
    MAX_INDOMAIN_WEIGHT,
    MAX_STYLE_FILE_MB,
    NO_EDIT,
    NO_STYLE,
    SESSION_PREFIX,
    adapt_config,
    check_adapt,
    check_edit,
    check_generate,
    check_invert,
    check_upload,
    max_steps,
    own_names,
    page_advice,
    resolve_style,
    style_source,
)
from .sessions import SessionStyles, TrainingRuns, TrainingStopped
from .zerogpu import gpu_mode, on_gpu

STYLE_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt")
DISPLAY_MIN = 256  # small (tiny-mode) images are enlarged to this for display


# ------------------------------------------------------------------------------------------ handler outputs
@dataclasses.dataclass
class UploadOutputs(Outputs):
    """What an uploaded style updates."""

    generate_style: Any  # the Generate tab's style dropdown (the new style selected)
    invert_styles: Any  # the Invert tab's style multi-select
    session: SessionStyles


@dataclasses.dataclass
class GenerateOutputs(Outputs):
    """What a Generate click shows."""

    source_gallery: list  # (image, caption) per seed, source generator
    styled_gallery: list  # (image, caption) per seed, styled (empty without a style)
    files: list[str]  # downloads: a zip of the images, and the session's style file
    info: str  # Markdown: what was rendered


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


@dataclasses.dataclass
class AdaptOutputs(Outputs):
    """What a training stream updates; a field left at ``KEEP`` stays as it is."""

    preview: Any = KEEP  # source row over adapted row
    losses: Any = KEEP  # DataFrame step, loss, term
    layers: Any = KEEP  # DataFrame row, score, trains
    status: Any = KEEP  # Markdown
    style_file: Any = KEEP  # the trained style's file
    session: Any = KEEP  # SessionStyles, once the style is in it
    generate_style: Any = KEEP  # Generate dropdown with the new style selected
    invert_styles: Any = KEEP  # Invert multi-select
    metrics: Any = KEEP  # Markdown: the paper's figures once training ends
    train: Any = KEEP  # the Train button: "Training…" and not pressable while this session trains or waits


@dataclasses.dataclass
class RecipeOutputs(Outputs):
    """The Advanced settings a recipe choice sets."""

    layers_k: Any = KEEP
    probe: Any = KEEP
    clip_names: Any = KEEP
    mixing: Any = KEEP
    iterations: Any = KEEP
    lambda_indomain: Any = KEEP  # the keep-variety weight ("diverse": on)
    batch_size: Any = KEEP  # the recipe's batch ("diverse" needs pairs)
    lr: Any = KEEP  # the recipe's learning rate ("compact": 0.05; the paper's 0.002 would barely move the offsets)


def _display(img: Image.Image) -> Image.Image:
    """Enlarge small images (tiny mode) with nearest-neighbour so they are visible in the page."""
    side = min(img.size)
    if side >= DISPLAY_MIN:
        return img
    k = -(-DISPLAY_MIN // side)
    return img.resize((img.width * k, img.height * k), Image.Resampling.NEAREST)


# ---------------------------------------------------------------------------------------------- page texts
def header_markdown(store: ModelStore) -> str:
    """The page title, with the tiny-mode label when it applies."""
    text = ("# nada: text-driven domain adaptation of StyleGAN2\n"
            "Type a source and a target description (\"Photo\" → \"Witcher\"), train a style with CLIP guidance "
            "(StyleGAN-NADA), then generate with it or apply it to your own photo.")
    if store.tiny:
        text += ("\n\n> **TINY MODE** (`NADA_TINY=1`): every model is a tiny *random* stand-in (32 px), so the "
                 "images are noise. This mode exists for tests and offline demos of the interface.")
    return text


def tab_notice(store: ModelStore, tab: str) -> str:
    """Markdown naming the weights a tab needs that are not on this machine (empty when all are there)."""
    if store.tiny:
        return ""
    hint = "\n\nTo try the interface without any weights, start the app with `NADA_TINY=1` (tiny random models)."
    if tab == "adapt":
        notice = store.missing_message([store.default_source(), *DEFAULT_CLIPS], "Training")
    elif tab == "generate":
        notice = store.missing_message([store.default_source()], "Generating")
    elif tab == "invert":
        notice = store.missing_message(list(INVERT_ASSETS), "Inversion")
    else:
        raise ValueError(f"unknown tab {tab!r}")
    return hide_server_paths(notice) + hint if notice else ""


# ------------------------------------------------------------------------------------------------- styles
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


def _loading_notice(refs: list[StyleRef | None]) -> None:
    """A toast for each published style, which may need a download first."""
    for ref in refs:
        asset = REGISTRY.get(ref.published) if ref is not None and ref.published else None
        if asset is not None:
            gr.Info(f"Loading the published style '{asset.description or ref.name}' (downloaded once, ~130 MB)...")


@user_errors
def upload_style(store: ModelStore, session: SessionStyles, file: str | None, *, gpu: GpuCalls | None = None
                 ) -> UploadOutputs:
    """Add an uploaded style file (``.safetensors`` from nada, or a full ``.pt`` generator) to the session."""
    gpu = gpu or GpuCalls.direct(store)
    if not file:
        raise ValueError("Choose a style file to upload (.safetensors from nada, or a StyleGAN-NADA .pt).")
    with own_names(file):  # messages name the file as the person knows it, not by its server path
        path = check_upload(file, MAX_STYLE_FILE_MB, "style file")
        suffix = path.suffix.lower()
        if suffix not in STYLE_SUFFIXES:
            raise StyleFileError(f"'{path.name}' is not a style file: upload a .safetensors style saved by nada, or "
                                 "a full StyleGAN2 generator .pt (e.g. a StyleGAN-NADA model).")
        if suffix == ".safetensors":
            style = load_style(path)
            source = style_source(store, style)
            verify_source(style, store.generator(source), source, store.fingerprint(source),  # reads no weights
                          advice=page_advice(store))
        else:  # the weights must be compared: a GPU task
            source = store.default_source()
            style = gpu.import_pt(str(path), source, {"source": source, "imported_from": path.name})
    try:
        name = session.unique_name(path.stem)
    except ValueError:  # a file name without a single usable character
        name = session.unique_name("uploaded-style")
    _, dropped = session.add(name, style)
    if dropped:
        gr.Warning(f"Dropped the oldest styles to make room: {', '.join(dropped)}.")
    gr.Info(f"Style '{name}' added (source generator: {source}).")
    return UploadOutputs(generate_style=gr.Dropdown(choices=style_choices(store, session), value=SESSION_PREFIX + name),
                         invert_styles=gr.Dropdown(choices=invert_choices(store, session)), session=session)


# ----------------------------------------------------------------------------------------------- generate
def random_seed() -> int:
    """A fresh seed for the dice button."""
    return random.randint(0, 2**31 - 1)


@user_errors
def generate(store: ModelStore, session: SessionStyles, style: str | None, seed: Any, truncation: Any,
             n_images: Any, strength: Any, *, gpu: GpuCalls | None = None) -> GenerateOutputs:
    """Render ``n_images`` seeds from ``seed`` with the source generator and the chosen style (a dropdown value)."""
    gpu = gpu or GpuCalls.direct(store)
    ref, seed, truncation, n, strength = check_generate(store, session, style, seed, truncation, n_images, strength)
    _loading_notice([ref])
    seeds = [(seed + i) % 2**32 for i in range(n)]
    src, sty = gpu.render(ref.source if ref else store.default_source(), ref, seeds, truncation, strength)
    source_gallery, styled_gallery, info = rendered_galleries(store, ref, seeds, truncation, strength, src, sty)
    label = ref.name if ref else "source"
    zpath = session.scratch(f"nada-{label}-seeds{seeds[0]}-{seeds[-1]}.zip")
    with zipfile.ZipFile(zpath, "w") as zf:
        for i, s in enumerate(seeds):
            for tag, imgs in (("source", src), ("styled", sty)):
                if imgs is not None:
                    buf = io.BytesIO()
                    imgs[i].save(buf, format="PNG")
                    zf.writestr(f"seed{s:04d}-{tag}.png", buf.getvalue())
    files = [str(zpath)] + ([ref.file] if ref is not None and ref.file else [])
    return GenerateOutputs(source_gallery=source_gallery, styled_gallery=styled_gallery, files=files, info=info)


def rendered_galleries(store: ModelStore, ref: StyleRef | None, seeds: list[int], truncation: float, strength: float,
                       src: list, sty: list | None) -> tuple[list, list, str]:
    """(source gallery, styled gallery, info line) for images rendered from ``seeds``: each captioned with its seed
    and generator or style (the captions are also the pictures' alt text)."""
    source = ref.source if ref else store.default_source()
    label = ref.name if ref else "source"
    source_gallery = [(_display(im), f"seed {s} · source ({source})") for im, s in zip(src, seeds)]
    styled_gallery = [(_display(im), f"seed {s} · {label}") for im, s in zip(sty or [], seeds)]
    info = (f"Source generator **{source}**, style **{label}**"
            + (f" at strength {strength:g}" if ref is not None else "")
            + f", truncation {truncation:g}, seeds {seeds[0]}–{seeds[-1]}.")
    asset = REGISTRY.get(ref.published) if ref is not None and ref.published else None
    if asset is not None and asset.repo_id:
        info += f" Style file: https://huggingface.co/{asset.repo_id}/blob/main/{asset.filename}"
    return source_gallery, styled_gallery, info


VIDEO_SECONDS_PER_SEED = 1.5  # the Generate tab's video: this long from one seed to the next, at VIDEO_FPS
VIDEO_FPS = 24


@user_errors
def make_video(store: ModelStore, session: SessionStyles, style: str | None, seed: Any, truncation: Any,
               n_images: Any, strength: Any, progress: Any = gr.Progress(),  # noqa: B008 - Gradio fills it
               *, gpu: GpuCalls | None = None) -> str:
    """An MP4 walking through the same seeds as Generate while the chosen style fades in from the source to
    ``strength`` (without a style: a walk through the source generator), with a progress bar when rendered in this
    process (a ZeroGPU worker shows Gradio's timer instead). Output: the video file."""
    gpu = gpu or GpuCalls.direct(store)
    ref, seed, truncation, n, strength = check_generate(store, session, style, seed, truncation, n_images, strength)
    _loading_notice([ref])
    source = ref.source if ref else store.default_source()
    seeds = tuple((seed + i) % 2**32 for i in range(max(n, 2)))
    plan = VideoPlan(seeds=seeds, seconds_per_seed=VIDEO_SECONDS_PER_SEED, fps=VIDEO_FPS, truncation=truncation,
                     strength=strength, size=DISPLAY_MIN if store.tiny else None)
    plan.validate()
    label = ref.name if ref else "source"
    path = str(session.scratch(f"nada-{label}-walk-{seeds[0]}-{seeds[-1]}.mp4"))
    if gpu_mode() is not None:  # a callback cannot cross into the GPU worker
        return gpu.video(source, ref, plan, path)
    return gpu.video(source, ref, plan, path,
                     lambda done: progress(done / plan.frames, desc=f"Video: frame {done} of {plan.frames}"))


def video_duration(args: dict) -> float:
    """GPU seconds for a video (arguments of :func:`nada.app.gpu_tasks.render_walk_video`): ~0.3 s a frame at 1024."""
    plan = args.get("plan")
    return 20 + 0.3 * (plan.frames if isinstance(plan, VideoPlan) else 100)


def thumbnails_duration(args: dict) -> float:
    """GPU seconds for the published styles' thumbnails (:func:`nada.app.gpu_tasks.render_style_thumbnails`)."""
    return 15 + 4 * len(args.get("names") or [0])


def generate_duration(args: dict) -> float:
    """ZeroGPU seconds for rendering (arguments of :func:`nada.app.gpu_tasks.render_images`)."""
    return 15 + 3 * len(args.get("seeds") or [0])


CPU_S_PER_IMAGE = 1.5  # one 1024 px image on a CPU (2 shared cores: 1.5-2.5 s, README's Hardware); a GPU: ~0.05 s


def cpu_render_notice(store: ModelStore, images: int) -> str:
    """The info line while ``images`` pictures render on a CPU, with how long that takes; "" where rendering is
    quick (a GPU, ZeroGPU, the tiny models)."""
    if store.tiny or gpu_mode() == "zero" or store.device.type != "cpu":
        return ""
    return (f"Rendering {images} images on the CPU: about {_fmt_s(CPU_S_PER_IMAGE * images)} "
            f"({CPU_S_PER_IMAGE:g} s an image)...")


@user_errors
def generate_live(store: ModelStore, session: SessionStyles, style: str | None, seed: Any, truncation: Any,
                  n_images: Any, strength: Any, *, gpu: GpuCalls | None = None) -> Iterator[GenerateOutputs]:
    """:func:`generate` when a control of the Generate tab settles (a slider released, a new seed, a style picked;
    no button): on a CPU the info line first says how long the new pictures take."""
    ref, _, _, n, _ = check_generate(store, session, style, seed, truncation, n_images, strength)
    notice = cpu_render_notice(store, n * (1 if ref is None else 2))
    if notice:
        yield GenerateOutputs(source_gallery=KEEP, styled_gallery=KEEP, files=KEEP, info=notice)
    yield generate(store, session, style, seed, truncation, n_images, strength, gpu=gpu)


# ------------------------------------------------------------------------------------------------- invert
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
    _loading_notice(refs)
    face = aligned_face(store, image)  # no face: fails here, before the GPU and before learning an edit
    direction = edit_direction(store, pair, str(edit).strip(), progress, gpu) if pair is not None else None
    aligned, reconstruction, styled, codes = gpu.invert(face, refs, strength, direction, edit_strength)
    what = f"{str(edit).strip()} {edit_strength:+g}" if direction is not None else ""
    session.keep_inversion(photo_key(image), codes, what)  # a new strength redraws these codes (restyle_photo)
    return InvertOutputs(aligned=_display(aligned), reconstruction=_display(reconstruction),
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
EDIT_S_PER_STEP = 0.8  # GPU seconds per learning step at 1024 px, batch 4, ViT-B/32: an estimate (nada.edits)


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
    seconds = _fmt_s(learn_edit_duration({"config": config}))
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


def learn_edit_duration(args: dict) -> float:
    """ZeroGPU seconds for learning an edit (arguments of :func:`nada.app.gpu_tasks.learn_edit`)."""
    config = args.get("config")
    return 30 + EDIT_S_PER_STEP * (config.steps if isinstance(config, EditConfig) else EditConfig.steps)


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
    _loading_notice(refs)
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


def invert_video_duration(args: dict) -> float:
    """ZeroGPU seconds for a photo's video (arguments of :func:`nada.app.gpu_tasks.render_invert_video`)."""
    plan, refs = args.get("plan"), args.get("refs") or []
    frames = plan.frames(len(refs) + 1) if isinstance(plan, PhotoVideoPlan) else 200
    return 30 + 0.3 * frames


def invert_duration(args: dict) -> float:
    """ZeroGPU seconds for an inversion (arguments of :func:`nada.app.gpu_tasks.invert_in_styles`)."""
    return 20 + 5 * len(args.get("refs") or [])


def styled_gallery(styled: list[tuple[Image.Image, str | None]], strength: float, edit: str = "") -> list:
    """The Invert tab's gallery: each styled image captioned with its style and strength, and with the ``edit`` in
    its codes when there is one (the edited face itself, named None, is captioned with the edit alone)."""
    return [(_display(im), f"edited: {edit}" if name is None else
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
    _loading_notice(refs)
    return styled_gallery(gpu.restyle(codes, ([None] if edit else []) + refs, strength), strength, edit)


def restyle_duration(args: dict) -> float:
    """ZeroGPU seconds for redrawing kept codes (arguments of :func:`nada.app.gpu_tasks.styled_codes`)."""
    return 10 + 3 * len(args.get("refs") or [])


# -------------------------------------------------------------------------------------------------- adapt
LOSS_NAMES = {"direction": "directional CLIP", "global": "global CLIP", "id": "identity", "l2": "L2",
              "indomain": "keep variety (in-domain)", "total": "total"}  # the loss chart's legend


def loss_rows(step: int, losses: dict[str, float]) -> list[dict]:
    """Loss-chart rows of one step: each weighted term and the total, or a single "loss" line when only one term is
    on (its total is the same number, and two identical lines would hide each other)."""
    terms = [t for t in losses if t != "total"]
    if len(terms) <= 1:
        value = losses.get("total", losses[terms[0]] if terms else None)
        return [] if value is None else [{"step": step, "loss": float(value), "term": "loss"}]
    return [{"step": step, "loss": float(v), "term": LOSS_NAMES.get(t, t)} for t, v in losses.items()]


def train_button(busy: bool) -> gr.Button:
    """The Train button: "Training…" and not pressable while a run of this session goes or waits."""
    return gr.Button("Training…" if busy else "Train", interactive=not busy)


def train_button_state(runs: TrainingRuns, request: gr.Request | None = None) -> gr.Button:
    """The Train button after a run's event ends (also a refused or failed one): pressable again unless this session
    still trains or waits (a second Enter in the target text must not re-enable it while the first run goes)."""
    return train_button(runs.involves(session_id(request)))


def waiting_status(ahead: int) -> str:
    """The status line of a run waiting for the training slot."""
    runs_ahead = "1 training run is" if ahead == 1 else f"{ahead} training runs are"
    return (f"Waiting in line: {runs_ahead} ahead of yours (you are **number {ahead + 1}**). Training starts by "
            "itself when its turn comes; keep this page open. Stop leaves the line.")


def _layer_frame(scores: list[float] | None, rows: list[int] | None) -> pd.DataFrame:
    """Bar-chart data: one bar per W+ row, its probe score, and whether the probe chose it this step."""
    if not scores:
        return pd.DataFrame({"row": [], "score": [], "trains": []})
    chosen = set(rows or [])
    return pd.DataFrame({"row": [f"w{i}" for i in range(len(scores))], "score": [float(s) for s in scores],
                         "trains": ["trained" if i in chosen else "frozen" for i in range(len(scores))]})


def picture_thumbnails(target_pictures: list | None) -> list:
    """The uploaded target pictures, shown small under the upload (their files; decoding is checked at Train)."""
    return [getattr(f, "name", f) for f in (target_pictures or [])]


def recipe_settings(recipe: str) -> RecipeOutputs:
    """The Advanced settings a recipe choice sets (rows, probing, CLIP models, mixing, steps, the keep-variety
    weight, the batch and the learning rate)."""
    if recipe not in RECIPES:
        raise gr.Error(f"Unknown recipe '{recipe}'.")
    config = AdaptConfig.from_recipe(recipe)
    steps = KEEP if gpu_mode() == "zero" else config.iterations  # ZeroGPU keeps its quota-sized default
    return RecipeOutputs(layers_k=0, probe=config.layers_k != 0, clip_names=list(config.clip_models),
                         mixing=config.mixing, iterations=steps, lambda_indomain=config.lambda_indomain,
                         batch_size=config.batch_size, lr=config.lr)


def metrics_markdown(metrics: dict | None) -> str:
    """A finished run's figures (:func:`nada.metrics.evaluate`) as a small table under a line that says how they were
    measured: with the CLIP models the run trained against (partly circular), on random samples (empty: none)."""
    if not metrics:
        return ""
    rows = [(f"{_cap(LABELS['clip_target'])}: CLIP similarity to the target text", "clip_target_source",
             "clip_target_adapted"),
            (f"{_cap(LABELS['diversity'])}: mean CLIP distance between images", "diversity_source",
             "diversity_adapted")]
    judges = ", ".join(metrics.get("clip_models") or []) or "the training CLIP models"
    lines = [f"Measured with the CLIP models it trained against ({judges}), so partly circular, on "
             f"{metrics.get('n', '')} random samples at truncation {metrics.get('truncation', 0.7):g}; "
             f"`nada evaluate` judges with a held-out CLIP ({JUDGE_CLIP}). Not the paper's tables.", "",
             "| figure | source | adapted |", "|---|---|---|"]
    lines += [f"| {label} | {metrics[a]:.3f} | {metrics[b]:.3f} |" for label, a, b in rows]
    lines.append(f"| {_cap(LABELS['s_dir'])} (s_dir): the change follows the text | | {metrics['s_dir']:.3f} |")
    if "id" in metrics:
        flag = " (trained with the identity loss: it optimised this)" if metrics.get("id_trained") else ""
        lines.append(f"| {_cap(LABELS['id'])}: ArcFace similarity to the source image{flag} | | "
                     f"{metrics['id']:.3f} |")
    return "\n".join(lines)


def _cap(label: str) -> str:
    """The label with its first letter upper-case (``str.capitalize`` would lower "CLIP")."""
    return label[:1].upper() + label[1:]


def _fmt_s(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


@user_errors
def adapt_stream(store: ModelStore, runs: TrainingRuns, session: SessionStyles, source: str, source_text: str,
                 target_text: str, iterations: Any, layers_k: Any, probe: bool, clip_names: list[str] | None,
                 lambda_direction: Any, lambda_global: Any, lambda_id: Any, lambda_l2: Any, seed: Any, lr: Any,
                 batch_size: Any, recipe: str = "paper", mixing: Any = None, target_pictures: list | None = None,
                 lambda_indomain: Any = None, request: gr.Request | None = None, min_interval_s: float = 0.25, *,
                 gpu: GpuCalls | None = None) -> Iterator[AdaptOutputs]:
    """Train a style, streaming previews, losses, the layer chart and the status; at the end the style is in the
    session and both style dropdowns offer it. Stop keeps what was trained, and so does a GPU worker stopped at its
    time limit (the style file is saved as training goes). The training itself is a GPU task; the session stays here,
    so a style uploaded meanwhile is kept."""
    gpu = gpu or GpuCalls.direct(store)
    config = check_adapt(store, session, source, source_text, target_text, iterations, layers_k, probe, clip_names,
                         lambda_direction, lambda_global, lambda_id, lambda_l2, seed, lr, batch_size, recipe,
                         mixing, target_pictures, lambda_indomain)  # before any output changes or any loading
    clips = list(config.clip_models)
    if gpu_mode() is not None:  # the worker is stopped at its granted duration: end cleanly a little before
        config = dataclasses.replace(config, time_limit_s=train_time_limit(config, clips))
    sid = session_id(request)
    try:
        for ahead in runs.waiting(sid):  # returns at once when nobody trains; refuses a second run of this session
            yield AdaptOutputs(status=waiting_status(ahead), train=train_button(True))
    except TrainingStopped:
        yield AdaptOutputs(status="Left the line before training started; nothing was trained.",
                           train=train_button(False))
        return
    yield AdaptOutputs(status="Loading the models...", train=train_button(True))
    rows: list[dict] = []
    bars = _layer_frame(None, None)
    last: TrainUpdate | None = None
    halted = None
    meta = {"source": source, "source_text": config.source_text, "target_text": config.target_text}
    with runs.slot(sid, config.iterations) as run:
        style_file = session.scratch(f".training-{uuid.uuid4().hex[:12]}.safetensors")
        try:
            shown = 0.0
            for upd in gpu.train(source, config, clips, str(style_file), meta, run.stop_event):
                last = upd
                runs.beat(run, upd.step)
                for text in upd.warnings:
                    gr.Warning(text)
                rows += loss_rows(upd.step, upd.losses)
                if upd.scores:
                    bars = _layer_frame(upd.scores, upd.rows)
                now = time.monotonic()
                if upd.preview is None and not upd.done and now - shown < min_interval_s:
                    continue
                shown = now
                stopping = " · stopping after this step" if upd.stopping else ""
                status = (f"Step **{upd.step}/{upd.total}** · {_fmt_s(upd.elapsed_s)} elapsed · about "
                          f"{_fmt_s(upd.eta_s)} left · loss {upd.losses.get('total', float('nan')):.4f}{stopping}")
                yield AdaptOutputs(preview=_display(upd.preview) if upd.preview is not None else KEEP,
                                   losses=pd.DataFrame(rows), layers=bars, status=status)
        except Exception as exc:  # the worker failed or was stopped: keep what it saved, if anything
            if style_file_step(style_file) == 0:
                style_file.unlink(missing_ok=True)
                raise
            halted = str(getattr(exc, "message", None) or exc)
        steps = style_file_step(style_file)
        if steps == 0:
            style_file.unlink(missing_ok=True)
            yield AdaptOutputs(status="Stopped before the first step finished; nothing to save.",
                           train=train_button(False))
            return
        style = load_style(style_file)
        style_file.unlink(missing_ok=True)
    name = session.unique_name(config.target_text or "image-style")
    path, dropped = session.add(name, style)
    if dropped:
        gr.Warning(f"Dropped the oldest styles of this session to make room: {', '.join(dropped)}.")
    if halted:
        gr.Warning(f"{halted} The style was kept from step {steps}.")
    elif last is not None and last.error:
        gr.Warning(f"{last.error} The style was kept from step {steps}.")
    how = "finished" if steps == config.iterations else f"stopped at step {steps}/{config.iterations}"
    took = f" in {_fmt_s(last.elapsed_s)}" if last is not None else ""
    tabs = "Generate and Invert tabs" if style_source(store, style) == store.invert_source() else "Generate tab"
    status = f"Training {how}{took}. Saved the style **{name}**: pick it in the {tabs}, or download it below."
    yield AdaptOutputs(losses=pd.DataFrame(rows), layers=bars, status=status, style_file=str(path), session=session,
                       train=train_button(False),
                       metrics=metrics_markdown(last.metrics if last is not None and not halted else None),
                       generate_style=gr.Dropdown(choices=style_choices(store, session), value=SESSION_PREFIX + name),
                       invert_styles=gr.Dropdown(choices=invert_choices(store, session)))


# ---------------------------------------------------------------------------------------------- GPU time
GPU_SETUP_S = 30.0  # worker start, moving the models to the GPU, text directions, the first preview
S_PER_STEP = 0.6  # one step at 1024 px, batch 2, two CLIP models, no probe, on a ZeroGPU slice: an estimate until
#                   bench/gpu_check.sh measures it (probing about doubles it; one CLIP model saves about a third)
ZERO_GPU_DEFAULT_STEPS = 100  # ~90 s of GPU time: inside a free account's daily ZeroGPU quota (about 3.5 min)
MAX_GPU_S = 1800.0


def train_seconds(iterations: int, probe: bool, n_clips: int) -> float:
    """Estimated GPU seconds of a training run (setup included)."""
    per_step = S_PER_STEP * (2.0 if probe else 1.0) * (0.67 + 0.33 * max(1, n_clips) / 2)
    return min(GPU_SETUP_S + per_step * iterations, MAX_GPU_S)


def adapt_duration(args: dict) -> float:
    """GPU seconds to ask for a training run (arguments of :func:`nada.app.gpu_tasks.train_style`)."""
    config = args.get("config")
    if not isinstance(config, AdaptConfig):
        return 60 + S_PER_STEP * 300
    return train_seconds(config.iterations, config.probing(), len(args.get("clip_names") or DEFAULT_CLIPS))


def train_time_limit(config: AdaptConfig, clip_names: list[str]) -> float:
    """When training must end to leave the worker time to save and return: a margin under the granted duration."""
    granted = adapt_duration({"config": config, "clip_names": clip_names})
    return max(5.0, granted - max(10.0, 0.1 * granted))


def run_cost(iterations: Any, probe: bool, clip_names: list[str] | None, layers_k: Any = 0,
             recipe: str = "paper") -> str:
    """A line under the Train button: what a run will cost in GPU time (on ZeroGPU, against the daily quota)."""
    if gpu_mode() != "zero":
        return ""  # elsewhere there is no quota to speak of
    try:
        k = int(layers_k or 0)
        rows = k if k > 0 else RECIPES[recipe].settings.get("layers_k")
        probing = bool(probe) and rows is not None and rows != 0 and not (isinstance(rows, int) and rows >= 18)
        seconds = train_seconds(int(iterations), probing, len(clip_names or DEFAULT_CLIPS))
    except (TypeError, ValueError, KeyError):
        return ""
    return (f"This run asks ZeroGPU for about **{_fmt_s(seconds)}** of GPU time. Free accounts get about 3.5 min a "
            "day (2 min without an account); fewer steps or one CLIP model cost less.")


@dataclasses.dataclass(frozen=True)
class GpuCalls:
    """The GPU halves of the handlers (:mod:`nada.app.gpu_tasks`), bound to the store. :meth:`wrapped` runs them as
    ZeroGPU tasks (or in a forked worker with ``NADA_FORK_GPU=1``); :meth:`direct` in this process."""

    render: Callable
    invert: Callable
    import_pt: Callable
    train: Callable
    video: Callable
    thumbnails: Callable
    restyle: Callable
    learn_edit: Callable
    invert_video: Callable

    @classmethod
    def direct(cls, store: ModelStore) -> GpuCalls:
        """In this process (tests, CPU machines, dedicated GPUs)."""
        return cls(*(user_errors(bind(fn, store)) for fn, _ in _GPU_TASKS))

    @classmethod
    def wrapped(cls, store: ModelStore) -> GpuCalls:
        """As GPU tasks; build once per app (``spaces`` registers each wrapped function when it is wrapped)."""
        return cls(*(on_gpu(user_errors(bind(fn, store)), duration) for fn, duration in _GPU_TASKS))


_GPU_TASKS = ((render_images, generate_duration), (invert_in_styles, invert_duration),
              (import_pt_style, 60), (train_style, adapt_duration), (render_walk_video, video_duration),
              (render_style_thumbnails, thumbnails_duration), (styled_codes, restyle_duration),
              (learn_edit, learn_edit_duration), (render_invert_video, invert_video_duration))


def stop_training(runs: TrainingRuns, request: gr.Request | None = None) -> str:
    """Ask this session's training run to stop after its current step (the style is kept), or take it out of the
    line when it waits. Output: status text."""
    sid = session_id(request)
    waiting = runs.is_waiting(sid)
    if runs.stop(sid):
        return ("Leaving the line..." if waiting else
                "Stopping after the current step; the style trained so far will be saved...")
    gr.Info("Nothing is training in this session.")
    return gr.skip()


__all__ = [  # bind, session_id, user_errors and wire (nada.app.glue), on_gpu (nada.app.zerogpu): re-exported for app.py
    "UploadOutputs", "GenerateOutputs", "InvertOutputs", "AdaptOutputs", "RecipeOutputs", "wire", "GpuCalls",
    "run_cost", "recipe_settings", "metrics_markdown", "picture_thumbnails", "make_video",
    "train_seconds", "train_time_limit", "ZERO_GPU_DEFAULT_STEPS",
    "NO_STYLE", "SESSION_PREFIX", "MAX_IMAGES", "MAX_IMAGE_MB", "MAX_STYLE_FILE_MB", "STYLE_SUFFIXES",
    "user_errors", "bind", "on_gpu", "session_id", "header_markdown", "tab_notice", "style_choices", "default_style",
    "invert_choices", "resolve_style", "upload_style", "random_seed", "generate", "generate_duration", "invert_photo",
    "invert_duration", "adapt_config", "adapt_stream", "adapt_duration", "stop_training", "check_generate",
    "check_invert", "check_adapt", "max_steps", "own_names", "page_advice", "InputError", "MAX_BATCH",
    "MAX_INDOMAIN_WEIGHT",
    "photo_input", "validator", "wire_live", "generate_live", "cpu_render_notice", "CPU_S_PER_IMAGE",
    "restyle_photo", "check_restyle", "restyle_duration", "photo_key", "styled_gallery",
    "InvertVideoOutputs", "invert_video", "invert_video_duration", "edit_choices", "edit_settings", "edit_direction",
    "learn_edit_duration", "aligned_face", "check_edit", "NO_EDIT", "MAX_EDIT_STRENGTH",
]
