"""The app's handlers: plain functions that take the model store, the session's styles and the UI values.

``app.py`` only lays the page out and wires these in (with :func:`bind`); tests call them directly. Every handler
turns bad input and known failures into a ``gr.Error`` whose message a person understands (:func:`user_errors`),
so one user's mistake never stops the app. Each handler's parameters are named like the components that feed them
and it returns (or streams) a named :class:`~nada.app_glue.Outputs` record whose fields are named like the components
it updates; ``app.py`` wires both by name (:func:`~nada.app_glue.wire`).
"""

from __future__ import annotations

import dataclasses
import io
import os
import random
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
import torch
from PIL import Image

from .app_glue import KEEP, Outputs, bind, on_gpu, session_id, user_errors, wire
from .e4e import INPUT_SIZE as E4E_INPUT
from .images import ImageInputError, load_image
from .invert import invert, stylize
from .model_store import DEFAULT_CLIPS, INVERT_ASSETS, ModelStore
from .render import to_pil
from .sampling import render_seeds
from .sessions import SessionStyles, TrainingRuns
from .styles import (
    Style,
    StyleFileError,
    StyleMismatchError,
    apply_style,
    import_style_pt,
    load_style,
    style_from_generators,
    verify_source,
)
from .train import AdaptConfig, adapt
from .weights import REGISTRY, WeightsUnavailableError

NO_STYLE = "none"  # style dropdown value: the source generator alone
SESSION_PREFIX = "session:"  # style dropdown values of this session's styles
MAX_IMAGES = 8  # images per Generate click
MAX_IMAGE_MB = 20  # photo uploads
MAX_STYLE_FILE_MB = 400  # style uploads (a full 1024 px generator .pt is ~130 MB)
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
    gallery: list  # (styled image, caption) per chosen style


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


def _display(img: Image.Image) -> Image.Image:
    """Enlarge small images (tiny mode) with nearest-neighbour so they are visible in the page."""
    side = min(img.size)
    if side >= DISPLAY_MIN:
        return img
    k = -(-DISPLAY_MIN // side)
    return img.resize((img.width * k, img.height * k), Image.Resampling.NEAREST)


def _check_upload(path: str | os.PathLike, max_mb: float, what: str) -> Path:
    """An uploaded file that exists and is under ``max_mb``; ``ValueError`` otherwise."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"The uploaded {what} could not be found on the server; please upload it again.")
    size = p.stat().st_size
    if size > max_mb * 2**20:
        raise ValueError(f"The {what} is {size / 2**20:.0f} MB; the limit is {max_mb:.0f} MB.")
    return p


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
    return notice + hint if notice else ""


# ------------------------------------------------------------------------------------------------- styles
def style_choices(store: ModelStore, session: SessionStyles | None, with_none: bool = True,
                  source: str | None = None) -> list[tuple[str, str]]:
    """(label, value) for the style dropdowns: this session's styles first, then the ready-made ones; only the
    styles of generator ``source`` when given (the Invert tab lists those that fit its generator)."""
    out = [("None: the source generator alone", NO_STYLE)] if with_none else []
    for name, style in (session.styles.items() if session else []):
        if source is not None and _style_source(store, style) != source:
            continue
        what = style.meta.get("target_text") or style.meta.get("imported_from") or ""
        out.append((f"{name} (this session{': ' + str(what) if what else ''})", SESSION_PREFIX + name))
    return out + store.published_choices(source)


def default_style(store: ModelStore) -> str:
    """The Generate tab's first choice: no style (tiny mode: the tiny demo style, to show both columns)."""
    choices = store.published_choices(store.default_source())
    return choices[0][1] if store.tiny and choices else NO_STYLE


def _style_source(store: ModelStore, style: Style) -> str:
    """The generator a style is applied to: the one it records, else the default source."""
    return style.source if store.is_source(style.source) else store.default_source()


def invert_choices(store: ModelStore, session: SessionStyles | None) -> list[tuple[str, str]]:
    """Styles that fit the inversion generator (for the Invert tab's multi-select)."""
    return style_choices(store, session, with_none=False, source=store.invert_source())


def resolve_style(store: ModelStore, session: SessionStyles | None, choice: str | None
                  ) -> tuple[str, Style | None, str]:
    """(source generator name, style or None, label) for a dropdown value."""
    if not choice or choice == NO_STYLE:
        return store.default_source(), None, "source"
    if choice.startswith(SESSION_PREFIX):
        name = choice[len(SESSION_PREFIX):]
        if session is None or name not in session:
            raise ValueError(f"The style '{name}' is no longer in this session (it may have been dropped to make "
                             "room, or the page was reloaded). Train or upload it again.")
        style = session.styles[name]
    else:
        if choice not in store.published():
            raise ValueError(f"Unknown style '{choice}'.")
        name = choice
        asset = REGISTRY.get(choice)
        if asset is not None:
            gr.Info(f"Loading the published style '{asset.description or choice}' (downloaded once, ~130 MB)...")
        style = store.published_style(choice)
        return store.published()[choice][1], style, name
    return _style_source(store, style), style, name


@user_errors
def upload_style(store: ModelStore, session: SessionStyles, file: str | None) -> UploadOutputs:
    """Add an uploaded style file (``.safetensors`` from nada, or a full ``.pt`` generator) to the session."""
    if not file:
        raise ValueError("Choose a style file to upload (.safetensors from nada, or a StyleGAN-NADA .pt).")
    path = _check_upload(file, MAX_STYLE_FILE_MB, "style file")
    suffix = path.suffix.lower()
    if suffix not in STYLE_SUFFIXES:
        raise StyleFileError(f"'{path.name}' is not a style file: upload a .safetensors style saved by nada, or a "
                             "full StyleGAN2 generator .pt (e.g. a StyleGAN-NADA model).")
    if suffix == ".safetensors":
        style = load_style(path)
        source = _style_source(store, style)
        verify_source(style, store.generator(source), source)
    else:
        source = store.default_source()
        style = import_style_pt(path, store.generator(source), {"source": source, "imported_from": path.name})
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


def _seed(value: Any) -> int:
    try:
        seed = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"The seed must be a whole number, got {value!r}.") from None
    if not 0 <= seed < 2**32 or float(value) != seed:
        raise ValueError(f"The seed must be a whole number from 0 to {2**32 - 1}, got {value!r}.")
    return seed


def _unit(value: Any, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number from 0 to 1, got {value!r}.") from None
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{what} must be from 0 to 1, got {v}.")
    return v


@user_errors
def generate(store: ModelStore, session: SessionStyles, style: str | None, seed: Any, truncation: Any,
             n_images: Any, strength: Any) -> GenerateOutputs:
    """Render ``n_images`` seeds from ``seed`` with the source generator and the chosen style (a dropdown value)."""
    seed, truncation, strength = _seed(seed), _unit(truncation, "Truncation"), _unit(strength, "Style strength")
    try:
        n = int(n_images)
    except (TypeError, ValueError):
        n = 0
    if not 1 <= n <= MAX_IMAGES:
        raise ValueError(f"Number of images must be from 1 to {MAX_IMAGES}, got {n}.")
    source, chosen, label = resolve_style(store, session, style)
    gen = store.generator(source)
    seeds = [(seed + i) % 2**32 for i in range(n)]
    w_avg = store.truncation_center(source)
    with torch.no_grad():
        src = to_pil(render_seeds(gen, seeds, truncation, w_avg=w_avg))
        sty = None
        if chosen is not None:
            # checked against this generator when it entered the session: no re-fingerprinting per click
            styled = apply_style(gen, chosen, strength, check_source=False, source_name=source)
            sty = to_pil(render_seeds(styled, seeds, truncation, w_avg=w_avg))
            del styled
    source_gallery = [(_display(im), f"seed {s} · source ({source})") for im, s in zip(src, seeds)]
    styled_gallery = [(_display(im), f"seed {s} · {label}") for im, s in zip(sty or [], seeds)]
    zpath = session.scratch(f"nada-{label}-seeds{seeds[0]}-{seeds[-1]}.zip")
    with zipfile.ZipFile(zpath, "w") as zf:
        for i, s in enumerate(seeds):
            for tag, imgs in (("source", src), ("styled", sty)):
                if imgs is not None:
                    buf = io.BytesIO()
                    imgs[i].save(buf, format="PNG")
                    zf.writestr(f"seed{s:04d}-{tag}.png", buf.getvalue())
    files = [str(zpath)]
    if style and style.startswith(SESSION_PREFIX) and label in session.files:
        files.append(str(session.files[label]))
    info = (f"Source generator **{source}**, style **{label}**"
            + (f" at strength {strength:g}" if chosen is not None else "")
            + f", truncation {truncation:g}, seeds {seeds[0]}–{seeds[-1]}.")
    if chosen is not None and not (style or "").startswith(SESSION_PREFIX):
        asset = REGISTRY.get(label)
        if asset is not None and asset.repo_id:
            info += f" Style file: https://huggingface.co/{asset.repo_id}/blob/main/{asset.filename}"
    return GenerateOutputs(source_gallery=source_gallery, styled_gallery=styled_gallery, files=files, info=info)


def generate_duration(args: dict) -> float:
    """ZeroGPU seconds for a Generate call."""
    return 15 + 3 * int(args.get("n_images") or 1)


# ------------------------------------------------------------------------------------------------- invert
@user_errors
def invert_photo(store: ModelStore, session: SessionStyles, image: Any, styles: list[str] | None,
                 strength: Any) -> InvertOutputs:
    """Align the face in ``image``, invert it with e4e, and render it in each chosen style (dropdown values)."""
    strength = _unit(strength, "Style strength")
    if image is None or (isinstance(image, str) and not image):
        raise ImageInputError("Upload a photo with a face first (or use the webcam, the clipboard or an example).")
    if isinstance(image, (str, os.PathLike)):
        image = _check_upload(image, MAX_IMAGE_MB, "photo")
    photo = load_image(image)
    source = store.invert_source()
    resolved = [resolve_style(store, session, c) for c in (styles or []) if c and c != NO_STYLE]
    for src, _, name in resolved:
        if src != source:
            raise StyleMismatchError(f"The style '{name}' belongs to the '{src}' generator; inversion works with the "
                                     f"'{source}' face generator only.")
    face = store.aligner().align(photo, output_size=E4E_INPUT)  # no face: fails here, before the encoder loads
    gen = store.generator(source)
    encoder, latent_avg = store.e4e()
    with torch.no_grad():
        result = invert(face, encoder, latent_avg, gen, align=False)
        gallery = []
        for _, style, name in resolved:
            # checked against this generator when it entered the session: no re-fingerprinting per click
            styled = apply_style(gen, style, strength, check_source=False, source_name=source)
            gallery.append((_display(stylize(result, styled, 1.0)), f"{name} (strength {strength:g})"))
            del styled
    return InvertOutputs(aligned=_display(result.aligned), reconstruction=_display(result.reconstruction),
                         gallery=gallery)


def invert_duration(args: dict) -> float:
    """ZeroGPU seconds for an Invert call."""
    return 20 + 5 * len(args.get("styles") or [])


# -------------------------------------------------------------------------------------------------- adapt
def adapt_config(iterations: Any, layers_k: Any, probe: bool, lambda_direction: Any, lambda_global: Any,
                 lambda_id: Any, lambda_l2: Any, seed: Any, lr: Any, batch_size: Any, source_text: str,
                 target_text: str, n_latent: int) -> AdaptConfig:
    """The :class:`AdaptConfig` for the Adapt tab's values (validated; ``ValueError`` with a readable message)."""
    try:
        iters, k, batch = int(iterations), int(layers_k or 0), int(batch_size)
        lams = [float(v) for v in (lambda_direction, lambda_global, lambda_id, lambda_l2)]
        lr = float(lr)
    except (TypeError, ValueError):
        raise ValueError("Iterations, layers, batch size, learning rate and loss weights must be numbers.") from None
    config = AdaptConfig(
        source_text=str(source_text or "").strip(), target_text=str(target_text or "").strip(), iterations=iters,
        batch_size=batch, lr=lr, layers_k=min(k, n_latent) if k > 0 else None, probe_iters=1 if probe else 0,
        lambda_direction=lams[0], lambda_global=lams[1], lambda_id=lams[2], lambda_l2=lams[3], seed=_seed(seed),
        preview_every=max(1, iters // 10))
    config.validate(n_latent)
    return config


def _layer_frame(scores: list[float] | None, k: int) -> pd.DataFrame:
    """Bar-chart data: one bar per W+ row, its probe score, and whether it trains this step."""
    if not scores:
        return pd.DataFrame({"row": [], "score": [], "trains": []})
    top = set(sorted(range(len(scores)), key=lambda i: -scores[i])[:k])
    return pd.DataFrame({"row": [f"w{i}" for i in range(len(scores))], "score": [float(s) for s in scores],
                         "trains": ["trained" if i in top else "frozen" for i in range(len(scores))]})


def _fmt_s(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


@user_errors
def adapt_stream(store: ModelStore, runs: TrainingRuns, session: SessionStyles, source: str, source_text: str,
                 target_text: str, iterations: Any, layers_k: Any, probe: bool, clip_names: list[str] | None,
                 lambda_direction: Any, lambda_global: Any, lambda_id: Any, lambda_l2: Any, seed: Any, lr: Any,
                 batch_size: Any, request: gr.Request | None = None, min_interval_s: float = 0.25
                 ) -> Iterator[AdaptOutputs]:
    """Train a style, streaming previews, losses, the layer chart and the status; at the end the style is in the
    session and both style dropdowns offer it. Stop keeps what was trained."""
    if not store.is_source(source):
        raise ValueError(f"Choose a source generator (one of: {', '.join(n for _, n in store.source_choices())}).")
    if not store.tiny and not clip_names:
        raise ValueError("Choose at least one CLIP model in Advanced settings.")
    config = adapt_config(iterations, layers_k, probe, lambda_direction, lambda_global, lambda_id, lambda_l2, seed, lr,
                          batch_size, source_text, target_text, store.generator_rows(source))  # before any loading
    yield AdaptOutputs(status="Loading the models...")
    gen = store.generator(source)
    config.validate(gen.n_latent)  # a local override may have another size than the registry says
    config, id_loss = _identity_loss(store, source, config)
    clips = store.clips(list(clip_names or DEFAULT_CLIPS))
    k = config.resolved_layers_k(gen.n_latent)
    rows: list[dict] = []
    last = None
    bars = _layer_frame(None, k)
    with runs.slot(session_id(request), config.iterations) as run:
        it = adapt(gen, clips, config, id_loss, stop=run.stop_event)
        shown = 0.0
        try:
            for rec in it:
                last = rec
                runs.beat(run, rec.step)
                rows += [{"step": rec.step, "loss": v, "term": t} for t, v in rec.losses.items()]
                if rec.scores:
                    bars = _layer_frame(rec.scores, k)
                now = time.monotonic()
                if rec.preview is None and not rec.done and now - shown < min_interval_s:
                    continue
                shown = now
                stopping = " · stopping after this step" if run.stop_event.is_set() and not rec.done else ""
                status = (f"Step **{rec.step}/{rec.total}** · {_fmt_s(rec.elapsed_s)} elapsed · about "
                          f"{_fmt_s(rec.eta_s)} left · loss {rec.losses.get('total', float('nan')):.4f}{stopping}")
                yield AdaptOutputs(preview=_display(rec.preview) if rec.preview is not None else KEEP,
                                   losses=pd.DataFrame(rows), layers=bars, status=status)
        finally:
            it.close()
    if last is None or last.generator is None or last.step == 0:
        yield AdaptOutputs(status="Stopped before the first step finished; nothing to save.")
        return
    meta = {"source": source, "source_text": config.source_text, "target_text": config.target_text,
            "config": config.to_dict(), "layers": last.layers, "steps": last.step}
    style = style_from_generators(gen, last.generator, meta)
    last.generator = None  # the trained copy: freed now that its differences are in the style
    name = session.unique_name(config.target_text)
    path, dropped = session.add(name, style)
    if dropped:
        gr.Warning(f"Dropped the oldest styles of this session to make room: {', '.join(dropped)}.")
    if last.error:
        gr.Warning(f"{last.error} The style was kept from step {last.step}.")
    how = "finished" if last.step == config.iterations else f"stopped at step {last.step}/{config.iterations}"
    status = (f"Training {how} in {_fmt_s(last.elapsed_s)}. Saved the style **{name}**: pick it in the Generate "
              "and Invert tabs, or download it below.")
    yield AdaptOutputs(losses=pd.DataFrame(rows), layers=bars, status=status, style_file=str(path), session=session,
                       generate_style=gr.Dropdown(choices=style_choices(store, session), value=SESSION_PREFIX + name),
                       invert_styles=gr.Dropdown(choices=invert_choices(store, session)))


def _identity_loss(store: ModelStore, source: str, config: AdaptConfig) -> tuple[AdaptConfig, Any]:
    """(config, identity loss or None): the identity weight is turned off, with a warning, where it cannot apply."""
    if config.lambda_id <= 0:
        return config, None
    if not store.faces(source):
        gr.Warning(f"The identity loss needs a face generator; '{source}' is not one, so it is off.")
        return dataclasses.replace(config, lambda_id=0.0), None
    try:
        return config, store.id_loss()
    except WeightsUnavailableError as exc:
        gr.Warning(f"Identity loss off: {exc}")
        return dataclasses.replace(config, lambda_id=0.0), None


def adapt_duration(args: dict) -> float:
    """ZeroGPU seconds for a training run: model loading plus ~0.5 s per step at 1024 px with two CLIP models."""
    try:
        iters = int(args.get("iterations") or 300)
    except (TypeError, ValueError):
        iters = 300
    return min(60 + 0.6 * iters, 1800)


def stop_training(runs: TrainingRuns, request: gr.Request | None = None) -> str:
    """Ask this session's training run to stop after its current step (the style is kept). Output: status text."""
    if runs.stop(session_id(request)):
        return "Stopping after the current step; the style trained so far will be saved..."
    gr.Info("Nothing is training in this session.")
    return gr.skip()


__all__ = [  # bind, on_gpu, session_id, user_errors and wire come from nada.app_glue, re-exported for app.py
    "UploadOutputs", "GenerateOutputs", "InvertOutputs", "AdaptOutputs", "wire",
    "NO_STYLE", "SESSION_PREFIX", "MAX_IMAGES", "MAX_IMAGE_MB", "MAX_STYLE_FILE_MB", "STYLE_SUFFIXES",
    "user_errors", "bind", "on_gpu", "session_id", "header_markdown", "tab_notice", "style_choices", "default_style",
    "invert_choices", "resolve_style", "upload_style", "random_seed", "generate", "generate_duration", "invert_photo",
    "invert_duration", "adapt_config", "adapt_stream", "adapt_duration", "stop_training",
]
