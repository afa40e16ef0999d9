"""The app's GPU work, as functions of the model store and small, picklable arguments.

On ZeroGPU (and with ``NADA_FORK_GPU=1``) each of these runs in a worker process: its arguments and results are
pickled across, so none takes a browser session (which may hold gigabytes of styles). A style travels as a
:class:`StyleRef` (a file path or a published name), and training saves its style to a file as it goes, so the main
process keeps the work even when the worker is stopped at its time limit. Nothing here imports the UI toolkit;
``nada.app.handlers`` turns these results into what the page shows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..edits import EditConfig, apply_edit, learn_cached
from ..invert import invert, render_codes
from ..metrics import evaluate
from ..model_store import ModelStore
from ..render import render_seeds, to_pil
from ..styles import Style, apply_style, import_style_pt, load_style, save_style, style_from_generators
from ..train import AdaptConfig, adapt
from ..video import PhotoVideoPlan, VideoPlan, render_photo_video, render_video
from ..weights import CheckpointError, WeightsUnavailableError
from .thumbnails import resize_thumbnail

METRICS_SAMPLES = 16  # images per generator for the figures shown when a run ends (seconds on a GPU) ...
METRICS_SAMPLES_CPU = 4  # ... and on a CPU, where 16 at 1024 px took ~100 s (python -m bench.rehearsal)


@dataclass(frozen=True)
class StyleRef:
    """Where a worker finds a style: a session style's file, or a published style's name."""

    name: str  # what the user sees
    source: str  # the generator it applies to
    file: str | None = None  # a .safetensors file (this session's styles)
    published: str | None = None  # a ready-made style's registry name


def load_ref(store: ModelStore, ref: StyleRef) -> Style:
    """The style a reference points to (checked against its generator when it entered the session)."""
    if ref.published is not None:
        return store.published_style(ref.published)
    if ref.file is None:
        raise ValueError(f"The style '{ref.name}' has no file.")
    return load_style(ref.file)


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
            except (WeightsUnavailableError, CheckpointError):
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


def invert_in_styles(store: ModelStore, face: Image.Image, refs: list[StyleRef], strength: float,
                     edit: torch.Tensor | None = None, edit_strength: float = 0.0
                     ) -> tuple[Image.Image, Image.Image, list[tuple[Image.Image, str | None]], torch.Tensor]:
    """(aligned face, e4e reconstruction, [(styled image, style name)], W+ codes) of an aligned face crop; the codes
    ([1, n_latent, 512], on the CPU) are those the styled images were drawn from (:func:`styled_codes` redraws them).
    With an ``edit`` direction ([n_latent, 512]) the codes are edited at ``edit_strength`` (:func:`nada.edits.
    apply_edit`) and the list starts with the edited face drawn by the source generator, named None."""
    source = store.invert_source()
    gen = store.generator(source)
    encoder, latent_avg = store.e4e()
    with torch.no_grad():
        result = invert(face, encoder, latent_avg, gen, align=False)
    codes = result.codes if edit is None else apply_edit(result.codes, edit, edit_strength)  # [1, n_latent, 512]
    edited = [(render_codes(gen, codes), None)] if edit is not None else []
    styled = edited + styled_codes(store, codes, refs, strength)
    return result.aligned, result.reconstruction, styled, codes.cpu()


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


def import_pt_style(store: ModelStore, path: str, source: str, meta: dict) -> Style:
    """A style from an uploaded full generator ``.pt``: its tensors that differ from ``source`` (reads weights)."""
    return import_style_pt(path, store.generator(source), meta, store.fingerprint(source))


@dataclass
class TrainUpdate:
    """A training run's report to the page (picklable: it crosses from the GPU worker)."""

    step: int
    total: int
    losses: dict[str, float] = field(default_factory=dict)
    scores: list[float] | None = None  # probe scores, on steps that probed
    rows: list[int] | None = None  # the rows the probe chose, on steps that probed
    preview: Image.Image | None = None
    elapsed_s: float = 0.0
    eta_s: float = 0.0
    stopping: bool = False  # a stop was asked for and the current step is finishing
    done: bool = False
    error: str | None = None  # why training stopped early
    layers: list[str] = field(default_factory=list)
    saved_step: int = 0  # the step the style file holds (0: nothing saved yet)
    warnings: list[str] = field(default_factory=list)  # for the page to show (a worker cannot raise UI toasts)
    metrics: dict | None = None  # nada.metrics.evaluate's figures with the training CLIPs, on a run's last update


def train_style(store: ModelStore, source: str, config: AdaptConfig, clip_names: list[str], style_file: str,
                meta: dict, stop: Any = None) -> Iterator[TrainUpdate]:
    """Adapt ``source`` with ``config``, streaming :class:`TrainUpdate` s; the style is written to ``style_file`` with
    every preview and at the end (so a worker stopped at its time limit loses at most one preview interval).
    ``stop``: an object with ``is_set()`` (a :class:`~nada.app.training_queue.StopFlag` crosses processes)."""
    warnings: list[str] = []
    gen = store.generator(source)
    config.validate(gen.n_latent)  # a local override may have another size than the registry says
    config, id_loss = _identity_loss(store, source, config, warnings)
    clips = store.clips(list(clip_names))
    fingerprint = store.fingerprint(source)
    saved = 0
    settings = config.to_dict()  # target pictures become their hashes here, once

    def save(rec) -> int:
        info = {**meta, "mode": config.mode, "config": settings, "layers": rec.layers, "steps": rec.step}
        save_style(style_from_generators(gen, rec.generator, info, fingerprint), style_file)
        return rec.step

    it = adapt(gen, clips, config, id_loss, stop=stop)
    try:
        for rec in it:
            if rec.step > saved and (rec.preview is not None or rec.done):  # at previews: cheap next to a step
                saved = save(rec)
            metrics = None
            if rec.done and rec.step > 0 and config.target_text.strip():  # after the save (a worker stopped
                #  meanwhile loses no training); the figures are defined against a target text
                n = METRICS_SAMPLES if gen.input.input.is_cuda else METRICS_SAMPLES_CPU
                metrics = evaluate(gen, rec.generator, clips, config.source_text, config.target_text,
                                   n=n, id_loss=id_loss, truncation=config.truncation)
                metrics.update(clip_models=list(clip_names), id_trained=id_loss is not None)  # what judged it
            yield TrainUpdate(step=rec.step, total=rec.total, losses=rec.losses, scores=rec.scores, rows=rec.rows,
                              metrics=metrics,
                              preview=rec.preview, elapsed_s=rec.elapsed_s, eta_s=rec.eta_s,
                              stopping=stop is not None and stop.is_set() and not rec.done, done=rec.done,
                              error=rec.error,
                              layers=rec.layers, saved_step=saved, warnings=warnings)
            warnings = []
    finally:
        it.close()


def _identity_loss(store: ModelStore, source: str, config: AdaptConfig, warnings: list[str]
                   ) -> tuple[AdaptConfig, Any]:
    """(config, identity loss or None): the identity weight is turned off, with a warning, where it cannot apply."""
    if config.lambda_id <= 0:
        return config, None
    if not store.faces(source):
        warnings.append(f"The identity loss needs a face generator; '{source}' is not one, so it is off.")
        return dataclasses.replace(config, lambda_id=0.0), None
    try:
        return config, store.id_loss()
    except WeightsUnavailableError as exc:
        warnings.append(f"Identity loss off: {exc}")
        return dataclasses.replace(config, lambda_id=0.0), None


def style_file_step(path: str | Path) -> int:
    """The number of steps a saved training style holds (0 when there is none)."""
    try:
        return int(load_style(path).meta.get("steps") or 0)
    except Exception:  # not written yet, or cut off by the worker's end: nothing to keep
        return 0


__all__ = ["StyleRef", "load_ref", "render_images", "render_style_thumbnails", "render_walk_video", "invert_in_styles",
           "styled_codes", "EditUpdate", "learn_edit", "render_invert_video",
           "import_pt_style", "TrainUpdate", "train_style", "style_file_step"]
