"""The app's handlers: plain functions that take the model store, the session's styles and the UI values.

This module holds the Generate tab's handlers and the style upload; the Adapt tab's are in
:mod:`nada.app.adapt_tab`, the Invert tab's in :mod:`nada.app.invert_tab`, the mixes in :mod:`nada.app.mix`, the GPU
halves and their durations in :mod:`nada.app.gpu_calls`; every handler is re-exported here, so ``app.py`` and tests
reach each as ``nada.app.handlers.<name>``. ``app.py`` only lays the page out and wires these in (with :func:`bind`);
tests call them directly. Every handler turns bad input and known failures into a ``gr.Error`` whose message a person
understands (:func:`user_errors`), so one user's mistake never stops the app. Each handler's parameters are named like
the components that feed them and it returns (or streams) a named :class:`~nada.app.glue.Outputs` record whose fields
are named like the components it updates; ``app.py`` wires both by name (:func:`~nada.app.glue.wire`). Each handler
starts with the checks of :mod:`nada.app.inputs`, which the page also runs before the event (a refused value changes
no output).
"""

from __future__ import annotations

import dataclasses
import io
import random
import zipfile
from collections.abc import Iterator
from typing import Any

import gradio as gr

from ..edits import MAX_STRENGTH as MAX_EDIT_STRENGTH
from ..model_store import DEFAULT_CLIPS, INVERT_ASSETS, ModelStore
from ..styles import StyleFileError, load_style, verify_source
from ..video import VideoPlan
from ..weights import REGISTRY
from .adapt_tab import (
    LOSS_NAMES,
    AdaptOutputs,
    RecipeOutputs,
    adapt_stream,
    loss_rows,
    metrics_markdown,
    picture_thumbnails,
    recipe_settings,
    run_cost,
    stop_training,
    train_button,
    train_button_state,
    waiting_status,
)
from .glue import (
    DISPLAY_MIN,
    KEEP,
    InputError,
    Outputs,
    bind,
    display_image,
    format_seconds,
    hide_server_paths,
    loading_notice,
    photo_input,
    session_id,
    user_errors,
    validator,
    wire,
    wire_live,
)
from .gpu_calls import (
    S_PER_STEP,
    ZERO_GPU_DEFAULT_STEPS,
    GpuCalls,
    adapt_duration,
    generate_duration,
    invert_duration,
    invert_video_duration,
    learn_edit_duration,
    restyle_duration,
    thumbnails_duration,
    train_seconds,
    train_time_limit,
    video_duration,
)
from .gpu_tasks import StyleRef
from .inputs import (
    MAX_BATCH,
    MAX_IMAGE_MB,
    MAX_IMAGES,
    MAX_INDOMAIN_WEIGHT,
    MAX_STYLE_FILE_MB,
    NO_EDIT,
    NO_STYLE,
    OPENING_STYLE,
    SESSION_PREFIX,
    adapt_config,
    check_adapt,
    check_edit,
    check_generate,
    check_invert,
    check_upload,
    default_style,
    invert_choices,
    max_steps,
    own_names,
    page_advice,
    resolve_style,
    style_choices,
    style_source,
)
from .invert_tab import (
    InvertOutputs,
    InvertVideoOutputs,
    aligned_face,
    check_restyle,
    edit_choices,
    edit_direction,
    edit_settings,
    invert_photo,
    invert_video,
    photo_key,
    restyle_photo,
    styled_gallery,
)
from .sessions import SessionStyles
from .zerogpu import gpu_mode, on_gpu

STYLE_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt")


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
    loading_notice([ref])
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
    source_gallery = [(display_image(im), f"seed {s} · source ({source})") for im, s in zip(src, seeds)]
    styled_gallery = [(display_image(im), f"seed {s} · {label}") for im, s in zip(sty or [], seeds)]
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
    loading_notice([ref])
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


CPU_S_PER_IMAGE = 1.5  # one 1024 px image on a CPU (2 shared cores: 1.5-2.5 s, README's Hardware); a GPU: ~0.05 s


def cpu_render_notice(store: ModelStore, images: int) -> str:
    """The info line while ``images`` pictures render on a CPU, with how long that takes; "" where rendering is
    quick (a GPU, ZeroGPU, the tiny models)."""
    if store.tiny or gpu_mode() == "zero" or store.device.type != "cpu":
        return ""
    return (f"Rendering {images} images on the CPU: about {format_seconds(CPU_S_PER_IMAGE * images)} "
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








__all__ = [  # the app's handlers by tab (adapt_tab, invert_tab; Generate's here), their checks and GPU calls,
    # re-exported so that app.py and callers reach every handler as nada.app.handlers.<name>
    "AdaptOutputs", "CPU_S_PER_IMAGE", "DISPLAY_MIN", "GenerateOutputs", "GpuCalls", "InputError", "InvertOutputs",
    "InvertVideoOutputs", "KEEP", "LOSS_NAMES", "MAX_BATCH", "MAX_EDIT_STRENGTH", "MAX_IMAGES", "MAX_IMAGE_MB",
    "MAX_INDOMAIN_WEIGHT", "MAX_STYLE_FILE_MB", "NO_EDIT", "NO_STYLE", "OPENING_STYLE", "RecipeOutputs",
    "SESSION_PREFIX", "STYLE_SUFFIXES", "S_PER_STEP", "UploadOutputs", "VIDEO_FPS", "VIDEO_SECONDS_PER_SEED",
    "ZERO_GPU_DEFAULT_STEPS", "adapt_config", "adapt_duration", "adapt_stream", "aligned_face", "bind", "check_adapt",
    "check_edit", "check_generate", "check_invert", "check_restyle", "cpu_render_notice", "default_style",
    "edit_choices", "edit_direction", "edit_settings", "generate", "generate_duration", "generate_live",
    "header_markdown", "invert_choices", "invert_duration", "invert_photo", "invert_video", "invert_video_duration",
    "learn_edit_duration", "loss_rows", "make_video", "max_steps", "metrics_markdown", "on_gpu", "own_names",
    "page_advice", "photo_input", "photo_key", "picture_thumbnails", "random_seed", "recipe_settings",
    "rendered_galleries", "resolve_style", "restyle_duration", "restyle_photo", "run_cost", "session_id",
    "stop_training", "style_choices", "styled_gallery", "tab_notice", "thumbnails_duration", "train_button",
    "train_button_state", "train_seconds", "train_time_limit", "upload_style", "user_errors", "validator",
    "video_duration", "waiting_status", "wire", "wire_live",
]
