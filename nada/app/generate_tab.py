"""The Generate tab: a style (trained here, uploaded or published), seeds, truncation and strength; the source
generator's pictures and the styled ones side by side, re-rendered when a control settles; a video through the
seeds; a style file uploaded into the session.

Handlers (``generate``, ``generate_live``, ``make_video``, ``upload_style``, ``random_seed``) take the components'
values by their parameter names and return :class:`~nada.app.wiring.Outputs` records; :func:`check_generate` is their
input check, also run by the page before the event; the status line under Generate says "Done in 0.4 s: ..." after a
render, and why a press was refused or a run failed (:mod:`nada.app.status_line`). As the page opens, the tab shows the
default seeds in the default style (:func:`opening_images`, rendered once per process) and one thumbnail per published
style (:func:`published_gallery`, rendered once ever and cached on disk by :mod:`nada.app.thumbnails`); a click on one
picks it (:func:`select_published`). The rendering runs as GPU tasks (:class:`GenerateGpu`): module-level functions of
the model store and small picklable arguments, so that ZeroGPU can run them in its worker. The tab's "Mix styles" box
has a module of its own, :mod:`nada.app.mix`.
"""

from __future__ import annotations

import dataclasses
import io
import random
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import torch
from PIL import Image

from ..model_store import ModelStore
from ..render import render_seeds, to_pil
from ..styles import (
    Style,
    StyleFileError,
    StyleMismatchError,
    apply_style,
    import_style_pt,
    load_style,
    verify_source,
)
from ..video import VideoPlan, render_video
from ..weights import REGISTRY, CheckpointError, WeightsUnavailableError, offline
from .errors import InputError, own_names, to_user_error, user_errors
from .input_checks import check_upload, number_value, on_field, seed_value, unit_value
from .page import DISPLAY_MIN, display_image, format_seconds, loading_notice
from .sessions import SessionStyles
from .status_line import done_line
from .style_menus import (
    NO_STYLE,
    SESSION_PREFIX,
    StyleRef,
    invert_choices,
    load_ref,
    page_advice,
    resolve_style,
    source_name,
    style_choices,
    style_source,
)
from .thumbnails import StyleThumbnails, resize_thumbnail
from .wiring import KEEP, BoundTasks, Outputs
from .zerogpu import gpu_mode

MAX_IMAGES = 8  # images per Generate click
MAX_STYLE_FILE_MB = 400  # style uploads (a full 1024 px generator .pt is ~130 MB)
STYLE_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt")
OPENING_STYLE = "nada-witcher"  # the tab's first style: the product's own example, "Photo" -> "Witcher"
VIDEO_SECONDS_PER_SEED = 1.5  # the tab's video: this long from one seed to the next, at VIDEO_FPS
VIDEO_FPS = 24
CPU_S_PER_IMAGE = 1.5  # one 1024 px image on a CPU (2 shared cores: 1.5-2.5 s, README's Hardware); a GPU: ~0.05 s


@dataclasses.dataclass(frozen=True)
class GenerateDefaults:
    """The tab's starting values, shared by its controls and its opening pictures."""

    seed: int = 0
    truncation: float = 0.7
    n_images: int = 4
    strength: float = 1.0


GENERATE_DEFAULTS = GenerateDefaults()
THUMBNAILS_PER_LOAD = 4  # published styles rendered (and downloaded, if needed) per page load, at most


# ---------------------------------------------------------------------------------------------- GPU tasks
def render_images(store: ModelStore, source: str, ref: StyleRef | None, seeds: list[int], truncation: float,
                  strength: float) -> tuple[list[Image.Image], list[Image.Image] | None]:
    """(source images, styled images or None without a style) for ``seeds``."""
    return render_pair(store, source, load_ref(store, ref) if ref is not None else None, seeds, truncation, strength)


def render_pair(store: ModelStore, source: str, style: Style | None, seeds: list[int], truncation: float,
                strength: float) -> tuple[list[Image.Image], list[Image.Image] | None]:
    """(source images, images in ``style`` at ``strength`` or None without one) for ``seeds``, both truncated
    towards the source's centre: what the Generate tab shows side by side."""
    gen = store.generator(source)
    w_avg = store.truncation_center(source)  # [1, 512]
    with torch.no_grad():
        src = to_pil(render_seeds(gen, seeds, truncation, w_avg=w_avg))
        if style is None:
            return src, None
        styled = apply_style(gen, style, strength, check_source=False, source_name=source)
        return src, to_pil(render_seeds(styled, seeds, truncation, w_avg=w_avg))


def render_style_thumbnails(store: ModelStore, source: str, names: list[str], seed: int, truncation: float,
                            size: int) -> list[Image.Image | None]:
    """One ``size`` px image of ``seed`` per published style ``names`` (all of ``source``), at full strength; None
    for a style whose weights are unavailable. For :meth:`nada.app.thumbnails.StyleThumbnails.fill`."""
    published = store.published()
    for name in names:
        if name not in published or published[name][1] != source:
            raise ValueError(f"'{name}' is not a ready-made style of the generator '{source}'.")
    gen = store.generator(source)
    w_avg = store.truncation_center(source)  # [1, 512]
    out: list[Image.Image | None] = []
    with torch.no_grad():
        for name in names:  # one styled copy in memory at a time
            try:
                style = store.published_style(name)
            except (WeightsUnavailableError, CheckpointError, StyleMismatchError):  # e.g. a zoo's file
                out.append(None)
                continue
            styled = apply_style(gen, style, 1.0, check_source=False, source_name=source)
            image = to_pil(render_seeds(styled, [int(seed)], truncation, w_avg=w_avg))[0]  # [1, 3, H, W] -> PIL
            del styled, style
            out.append(resize_thumbnail(image, int(size)))
    return out


def render_walk_video(store: ModelStore, source: str, ref: StyleRef | None, plan: VideoPlan, path: str,
                      progress: Callable[[int], None] | None = None) -> str:
    """An MP4 at ``path`` walking through ``plan``'s seeds, the style (if any) fading in (:mod:`nada.video`);
    ``progress(frames_done)`` after each frame (in-process calls only: a callback does not cross to a GPU worker)."""
    gen = store.generator(source)
    style = load_ref(store, ref) if ref is not None else None
    return str(render_video(gen, style, plan, path, w_avg=store.truncation_center(source), progress=progress))


def import_pt_style(store: ModelStore, path: str, source: str, meta: dict) -> Style:
    """A style from an uploaded full generator ``.pt``: its tensors that differ from ``source`` (reads weights)."""
    return import_style_pt(path, store.generator(source), meta, store.fingerprint(source))


def generate_duration(args: dict) -> float:
    """ZeroGPU seconds for rendering (arguments of :func:`render_images`)."""
    return 15 + 3 * len(args.get("seeds") or [0])


def video_duration(args: dict) -> float:
    """GPU seconds for a video (arguments of :func:`render_walk_video`): ~0.3 s a frame at 1024."""
    plan = args.get("plan")
    return 20 + 0.3 * (plan.frames if isinstance(plan, VideoPlan) else 100)


def thumbnails_duration(args: dict) -> float:
    """GPU seconds for the published styles' thumbnails (:func:`render_style_thumbnails`)."""
    return 15 + 4 * len(args.get("names") or [0])


@dataclasses.dataclass(frozen=True)
class GenerateGpu(BoundTasks):
    """The tab's GPU tasks bound to the store (:class:`~nada.app.wiring.BoundTasks`)."""

    render: Callable
    video: Callable
    thumbnails: Callable
    import_pt: Callable

    @classmethod
    def tasks(cls) -> tuple[tuple[Callable, Any], ...]:
        return ((render_images, generate_duration), (render_walk_video, video_duration),
                (render_style_thumbnails, thumbnails_duration), (import_pt_style, 60))


# ------------------------------------------------------------------------------------------------- checks
def check_generate(store: ModelStore, session: SessionStyles | None, style: str | None, seed: Any, truncation: Any,
                   n_images: Any, strength: Any) -> tuple[StyleRef | None, int, float, int, float]:
    """(style, seed, truncation, number of images, strength) from the Generate tab's values; an
    :class:`InputError` naming the input otherwise. Cheap: reads no weights (the page runs it before the event)."""
    seed = seed_value(seed)
    truncation = unit_value(truncation, "Truncation", "truncation")
    n = number_value(n_images, "Number of images", "n_images", 1, MAX_IMAGES)
    if not float(n).is_integer():
        raise InputError("n_images", f"Number of images must be a whole number from 1 to {MAX_IMAGES}, got {n:g}.")
    strength = unit_value(strength, "Style strength", "strength")
    ref = on_field("style", lambda: resolve_style(store, session, style))
    return ref, seed, truncation, int(n), strength


def default_style(store: ModelStore) -> str:
    """The Generate tab's first choice, so that it opens on both columns: the published Witcher style when it is on
    this machine or can be downloaded (tiny mode: the tiny demo style); otherwise no style."""
    names = [name for _, name in store.published_choices(store.default_source())]
    if store.tiny:
        return names[0] if names else NO_STYLE
    if OPENING_STYLE in names and (not offline() or store.weights_status([OPENING_STYLE])[0].cached):
        return OPENING_STYLE
    return NO_STYLE


# ----------------------------------------------------------------------------------------------- handlers
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


@user_errors
def upload_style(store: ModelStore, session: SessionStyles, file: str | None, *, gpu: GenerateGpu | None = None
                 ) -> UploadOutputs:
    """Add an uploaded style file (``.safetensors`` from nada, or a full ``.pt`` generator) to the session."""
    gpu = gpu or GenerateGpu.direct(store)
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
            source = style_source(store, style, session)
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
    gr.Info(f"Style '{name}' added (source generator: {source_name(store, session, source)}).")
    return UploadOutputs(generate_style=gr.Dropdown(choices=style_choices(store, session), value=SESSION_PREFIX + name),
                         invert_styles=gr.Dropdown(choices=invert_choices(store, session)), session=session)


def random_seed() -> int:
    """A fresh seed for the dice button."""
    return random.randint(0, 2**31 - 1)


@user_errors
def generate(store: ModelStore, session: SessionStyles, style: str | None, seed: Any, truncation: Any,
             n_images: Any, strength: Any, *, gpu: GenerateGpu | None = None) -> GenerateOutputs:
    """Render ``n_images`` seeds from ``seed`` with the source generator and the chosen style (a dropdown value)."""
    gpu = gpu or GenerateGpu.direct(store)
    started = time.perf_counter()
    ref, seed, truncation, n, strength = check_generate(store, session, style, seed, truncation, n_images, strength)
    loading_notice([ref])
    seeds = [(seed + i) % 2**32 for i in range(n)]
    src, sty = gpu.render(ref.source if ref else store.default_source(), ref, seeds, truncation, strength)
    source_gallery, styled_gallery, info = rendered_galleries(store, ref, seeds, truncation, strength, src, sty)
    info = done_line(time.perf_counter() - started, n, sty is not None) + " " + info
    label = ref.file_label() if ref else "source"
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
    source = (ref.source_label or ref.source) if ref else store.default_source()
    styled = ref is not None and ref.styled
    label = ref.name if styled else "source"
    source_gallery = [(display_image(im), f"seed {s} · source ({source})") for im, s in zip(src, seeds)]
    styled_gallery = [(display_image(im), f"seed {s} · {label}") for im, s in zip(sty or [], seeds)]
    info = (f"Source generator **{source}**, style **{label}**"
            + (f" at strength {strength:g}" if styled else "")
            + f", truncation {truncation:g}, seeds {seeds[0]}–{seeds[-1]}.")
    asset = REGISTRY.get(ref.published) if ref is not None and ref.published else None
    if asset is not None and asset.repo_id:
        info += f" Style file: https://huggingface.co/{asset.repo_id}/blob/main/{asset.filename}"
    return source_gallery, styled_gallery, info


@user_errors
def make_video(store: ModelStore, session: SessionStyles, style: str | None, seed: Any, truncation: Any,
               n_images: Any, strength: Any, progress: Any = gr.Progress(),  # noqa: B008 - Gradio fills it
               *, gpu: GenerateGpu | None = None) -> str:
    """An MP4 walking through the same seeds as Generate while the chosen style fades in from the source to
    ``strength`` (without a style: a walk through the source generator), with a progress bar when rendered in this
    process (a ZeroGPU worker shows Gradio's timer instead). Output: the video file."""
    gpu = gpu or GenerateGpu.direct(store)
    ref, seed, truncation, n, strength = check_generate(store, session, style, seed, truncation, n_images, strength)
    loading_notice([ref])
    source = ref.source if ref else store.default_source()
    seeds = tuple((seed + i) % 2**32 for i in range(max(n, 2)))
    plan = VideoPlan(seeds=seeds, seconds_per_seed=VIDEO_SECONDS_PER_SEED, fps=VIDEO_FPS, truncation=truncation,
                     strength=strength, size=DISPLAY_MIN if store.tiny else None)
    plan.validate()
    label = ref.file_label() if ref else "source"
    path = str(session.scratch(f"nada-{label}-walk-{seeds[0]}-{seeds[-1]}.mp4"))
    if gpu_mode() is not None:  # a callback cannot cross into the GPU worker
        return gpu.video(source, ref, plan, path)
    return gpu.video(source, ref, plan, path,
                     lambda done: progress(done / plan.frames, desc=f"Video: frame {done} of {plan.frames}"))


def cpu_render_notice(store: ModelStore, images: int) -> str:
    """The info line while ``images`` pictures render on a CPU, with how long that takes; "" where rendering is
    quick (a GPU, ZeroGPU, the tiny models)."""
    if store.tiny or gpu_mode() == "zero" or store.device.type != "cpu":
        return ""
    return (f"Rendering {images} images on the CPU: about {format_seconds(CPU_S_PER_IMAGE * images)} "
            f"({CPU_S_PER_IMAGE:g} s an image)...")


@user_errors
def generate_live(store: ModelStore, session: SessionStyles, style: str | None, seed: Any, truncation: Any,
                  n_images: Any, strength: Any, *, gpu: GenerateGpu | None = None) -> Iterator[GenerateOutputs]:
    """:func:`generate` when a control of the Generate tab settles (a slider released, a new seed, a style picked;
    no button): on a CPU the info line first says how long the new pictures take."""
    ref, _, _, n, _ = check_generate(store, session, style, seed, truncation, n_images, strength)
    notice = cpu_render_notice(store, n * (1 if ref is None else 2))
    if notice:
        yield GenerateOutputs(source_gallery=KEEP, styled_gallery=KEEP, files=KEEP, info=notice)
    yield generate(store, session, style, seed, truncation, n_images, strength, gpu=gpu)


# ------------------------------------------------------------------------------ as the page opens (demo.load)
@dataclasses.dataclass
class OpeningOutputs(Outputs):
    """The Generate tab's opening pictures."""

    source_gallery: Any = KEEP
    styled_gallery: Any = KEEP
    info: Any = KEEP


@dataclasses.dataclass
class PublishedOutputs(Outputs):
    """The published styles' gallery and the style names in its order (for clicks)."""

    published: Any
    published_names: list[str]


class OpeningImages:
    """The Generate tab's opening pictures, rendered on the first page load and kept as PNG files for the process's
    lifetime (later loads only send the files). A failed render is not kept: the next load tries again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dir: Path | None = None
        self._shown: tuple[list, list, str] | None = None

    def get(self, render: Callable[[], tuple[list, list, str]]) -> tuple[list, list, str]:
        """(source gallery, styled gallery, info) as (PNG path, caption) lists; ``render`` runs once."""
        with self._lock:
            if self._shown is None:
                source, styled, info = render()
                self._dir = Path(tempfile.mkdtemp(prefix="nada-opening-"))
                self._shown = (self._save(source, "source"), self._save(styled, "styled"), info)
            return self._shown

    def _save(self, gallery: list, tag: str) -> list[tuple[str, str]]:
        out = []
        for i, (image, caption) in enumerate(gallery):
            path = self._dir / f"{tag}-{i}.png"
            image.save(path)
            out.append((str(path), caption))
        return out

    def close(self) -> None:
        """Delete the files (the app is closing)."""
        with self._lock:
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
            self._dir, self._shown = None, None


def opening_images(store: ModelStore, opening: OpeningImages, *, gpu: GenerateGpu | None = None) -> OpeningOutputs:
    """The default seeds in the default style, as the Generate tab opens (rendered once per process). A failure
    (missing weights) is said on the tab's info line instead of as an error."""
    gpu = gpu or GenerateGpu.direct(store)
    d = GENERATE_DEFAULTS
    seeds = [d.seed + i for i in range(d.n_images)]

    def render() -> tuple[list, list, str]:
        style = default_style(store)
        ref = None
        if style in store.published():
            ref = StyleRef(name=style, source=store.published()[style][1], published=style)
        source = ref.source if ref else store.default_source()
        src, sty = gpu.render(source, ref, seeds, d.truncation, d.strength)
        return rendered_galleries(store, ref, seeds, d.truncation, d.strength, src, sty)

    try:
        source, styled, info = opening.get(render)
    except Exception as exc:  # noqa: BLE001 - the first screen stays usable; the reason is shown in words
        return OpeningOutputs(info=f"The opening pictures could not be made: {to_user_error(exc).message} "
                                   "Press Generate to try again.")  # (a GPU task's failure is a gr.Error already)
    return OpeningOutputs(source_gallery=source, styled_gallery=styled,
                          info=info + " These are the opening pictures; change a control and they re-render.")


def published_gallery(store: ModelStore, thumbnails: StyleThumbnails, *, gpu: GenerateGpu | None = None,
                      limit: int = THUMBNAILS_PER_LOAD) -> PublishedOutputs:
    """One thumbnail per published style, rendering at most ``limit`` missing ones (tiny mode: all of them)."""
    gpu = gpu or GenerateGpu.direct(store)
    for line in thumbnails.fill(store, gpu.thumbnails, len(store.published()) if store.tiny else limit):
        print(f"warning: no thumbnail: {line}")  # server log only: the gallery lists the styles that have one
    shown, published = thumbnails.gallery(store), store.published()
    return PublishedOutputs(published=[(path, thumbnail_label(caption, published[name][1]))
                                       for path, caption, name in shown],
                            published_names=[name for _, _, name in shown])


def short_label(label: str) -> str:
    """A style's label without its parenthesised note ("Witcher (StyleGAN-NADA, from text)" -> "Witcher")."""
    return label.split(" (")[0].strip() or label


def thumbnail_label(label: str, source: str) -> str:
    """A published style's thumbnail caption: its short name and the generator it is for ("Witcher (ffhq)"), as
    the style pickers name it (:func:`~nada.app.style_menus.style_choices`); it fits under a thumbnail."""
    return f"{short_label(label)} ({source})"


def select_published(published_names: list[str] | None, evt: gr.SelectData) -> Any:
    """The Generate tab's style after a click on a published style's thumbnail."""
    names = published_names or []
    index = evt.index if isinstance(evt.index, int) else -1
    if not 0 <= index < len(names):
        return gr.skip()
    return names[index]
