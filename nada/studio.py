"""The front door: :class:`Studio` holds the loaded models and does the main jobs in one call each.

    studio = nada.Studio()                                   # tiny=True: tiny random models, nothing downloaded
    for rec in studio.adapt("Photo", "Sketch"):              # a style from two prompts
        ...                                                  # rec.preview, rec.losses; rec.style
    images = studio.generate([0, 1, 2], style=rec.style)     # seeds rendered in that style
    result = studio.invert("selfie.jpg", styles=[rec.style]) # .aligned, .reconstruction, .styled

Models load once, on first use (:class:`~nada.model_store.ModelStore`, the same store the app uses); nothing is
global, so two studios on two devices do not share state.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from .images import ImageSource
from .invert import Inversion, invert, stylize
from .metrics import evaluate
from .model_store import ModelStore
from .render import render_seeds, to_pil
from .styles import (
    STYLE_SUFFIX,
    Style,
    apply_style,
    load_any_style,
    load_style,
    save_style,
    style_from_generators,
    style_path,
)
from .train import AdaptConfig, Progress, adapt
from .video import VideoPlan, render_video

StyleLike = Style | str | os.PathLike  # a Style, a saved style's name, a file, or a published style's name


@dataclass
class StudioProgress(Progress):
    """A :class:`~nada.train.Progress` record with the trained weights as a ready-to-save :class:`Style`."""

    style: Style | None = None  # a snapshot of this step's weights (every record; the last one is the result)


@dataclass
class InvertResult:
    """A photo inverted and drawn in styles."""

    aligned: Image.Image  # the FFHQ-aligned 256 px face the encoder saw
    reconstruction: Image.Image  # the face as the source generator draws it
    styled: list[Image.Image] = field(default_factory=list)  # one per style, in the order asked
    inversion: Inversion | None = None  # the W+ codes ([1, n_latent, 512]), to reuse with other styles

    @property
    def images(self) -> list[Image.Image]:
        """The styled images (same as :attr:`styled`)."""
        return self.styled


class Studio:
    """Generate, adapt, invert, evaluate and make videos with one object; models load on first use."""

    def __init__(self, tiny: bool = False, device: torch.device | str | None = None) -> None:
        self.store = ModelStore(tiny=tiny, device=device)

    @property
    def tiny(self) -> bool:
        """True when every model is a tiny random stand-in (nothing downloaded)."""
        return self.store.tiny

    @property
    def device(self) -> torch.device:
        """Where the models run."""
        return self.store.device

    def __repr__(self) -> str:
        return f"Studio(tiny={self.tiny}, device='{self.device}', loaded={self.store.loaded()})"

    # ------------------------------------------------------------------------------------------ styles
    def load_style(self, name_or_path: StyleLike, source: str | None = None) -> Style:
        """A style from a ``.safetensors`` file, a saved style's name, a published style's name ("nada-pixar") or a
        StyleGAN-NADA ``.pt``; checked against its source generator (``source``, else the one the style names)."""
        if isinstance(name_or_path, Style):
            return name_or_path
        key = os.fspath(name_or_path)
        if key in self.store.published():
            return self.store.published_style(key)
        path = Path(key).expanduser()
        if path.suffix == STYLE_SUFFIX and path.is_file() and source is None:
            source = load_style(path).source  # the style names its generator
        source = self._source(source)
        return load_any_style(name_or_path, self.store.generator(source), source)

    def save_style(self, style: Style, name_or_path: str | os.PathLike) -> Path:
        """Save ``style``: a name ("witcher") goes to the weights cache's ``styles/`` folder (slugged, never a path),
        a path ending in ``.safetensors`` is written there. Returns the file."""
        key = os.fspath(name_or_path)
        is_path = key.endswith(STYLE_SUFFIX) or os.sep in key or (os.altsep and os.altsep in key)
        return save_style(style, Path(key).expanduser() if is_path else style_path(key))

    def styles(self) -> list[str]:
        """Names of the published (tiny mode: demo) styles this studio can load by name."""
        return list(self.store.published())

    # ------------------------------------------------------------------------------------------ generate
    def generate(self, seeds: int | Iterable[int], style: StyleLike | None = None, source: str | None = None,
                 truncation: float = 0.7, strength: float = 1.0) -> list[Image.Image]:
        """One picture per seed, from the source generator or in ``style`` at ``strength`` (0 = source)."""
        seeds = [seeds] if isinstance(seeds, int) else [int(s) for s in seeds]
        style = self.load_style(style, source) if style is not None else None
        source = self._source(source, style)
        generator = self._styled(source, style, strength)
        with torch.no_grad():
            return to_pil(render_seeds(generator, seeds, truncation, w_avg=self.store.truncation_center(source)))

    # ------------------------------------------------------------------------------------------ adapt
    def adapt(self, source_text: str, target_text: str, recipe: str = "paper", source: str | None = None, *,
              stop: threading.Event | None = None, **overrides) -> Iterator[StudioProgress]:
        """Train a style from ``source_text`` to ``target_text`` with a recipe (``nada.RECIPES``) and any
        :class:`~nada.train.AdaptConfig` field as an override; yields a record per step, each with ``.style``.
        Tiny mode runs the tiny CLIP whatever ``clip_models`` says, and the identity loss needs a face generator."""
        config = AdaptConfig.from_recipe(recipe, source_text=source_text, target_text=target_text, **overrides)
        source = self._source(source)
        generator = self.store.generator(source)
        config.validate(generator.n_latent)
        id_loss = self.store.id_loss() if config.lambda_id > 0 else None
        clips = self.store.clips(list(config.clip_models))
        meta = {"source": source, "source_text": config.source_text, "target_text": config.target_text,
                "mode": config.mode, "config": config.to_dict()}
        fingerprint = self.store.fingerprint(source)
        steps = adapt(generator, clips, config, id_loss, stop=stop)
        try:
            for rec in steps:
                style = style_from_generators(generator, rec.generator,
                                              {**meta, "layers": rec.layers, "steps": rec.step}, fingerprint)
                yield StudioProgress(**{f.name: getattr(rec, f.name) for f in dataclasses.fields(rec)}, style=style)
        finally:
            steps.close()

    # ------------------------------------------------------------------------------------------ invert
    def invert(self, photo: ImageSource | Image.Image, styles: Sequence[StyleLike] = (),
               strength: float = 1.0) -> InvertResult:
        """Align the face in ``photo`` (a path, bytes or a PIL image), invert it with e4e into the inversion
        generator ("ffhq"; tiny mode: a 256 px tiny one) and draw it in each style."""
        source = self.store.invert_source()
        generator = self.store.generator(source)
        chosen = [self.load_style(s, source) for s in styles]  # every style checked before the work
        encoder, latent_avg = self.store.e4e()
        with torch.no_grad():
            result = invert(photo, encoder, latent_avg, generator, aligner=self.store.aligner())
            styled = [stylize(result, style, strength, source=generator) for style in chosen]
        return InvertResult(result.aligned, result.reconstruction, styled, result)

    # ------------------------------------------------------------------------------------------ judge
    def evaluate(self, style: StyleLike, source_text: str | None = None, target_text: str | None = None,
                 n: int = 64, seed: int = 0, truncation: float = 0.7, clip_models: Sequence[str] | None = None,
                 identity: bool = False) -> dict:
        """The figures of :func:`nada.metrics.evaluate` for ``style`` against its source generator, on ``n`` seeded
        samples; the prompts default to the style's own, the CLIP models to the recipe defaults."""
        style = self.load_style(style)
        source = self._source(None, style)
        source_text = source_text if source_text is not None else style.meta.get("source_text") or ""
        target_text = target_text if target_text is not None else style.meta.get("target_text") or ""
        generator = self.store.generator(source)
        clips = self.store.clips(list(clip_models or AdaptConfig().clip_models))
        id_loss = self.store.id_loss() if identity else None
        return evaluate(generator, apply_style(generator, style, check_source=False), clips, source_text,
                        target_text, n=n, seed=seed, id_loss=id_loss, truncation=truncation)

    # ------------------------------------------------------------------------------------------ video
    def video(self, style: StyleLike | None, path: str | os.PathLike, seeds: Sequence[int] = (0, 1, 2, 3),
              source: str | None = None, **plan) -> Path:
        """An MP4 at ``path`` walking through ``seeds`` while ``style`` fades in; ``plan``: any
        :class:`~nada.video.VideoPlan` field (``seconds_per_seed``, ``fps``, ``truncation``, ``ramp``, ...)."""
        style = self.load_style(style, source) if style is not None else None
        source = self._source(source, style)
        video_plan = VideoPlan(seeds=tuple(int(s) for s in seeds), **plan)
        return render_video(self.store.generator(source), style, video_plan, path,
                            w_avg=self.store.truncation_center(source))

    # ------------------------------------------------------------------------------------------ helpers
    def _source(self, source: str | None, style: Style | None = None) -> str:
        """The source generator's name: the one asked for, else the style's, else the default."""
        name = source or (style.source if style is not None else None) or self.store.default_source()
        if not self.store.is_source(name):
            known = ", ".join(n for _, n in self.store.source_choices())
            raise ValueError(f"Unknown source generator '{name}'. Choose one of: {known}.")
        return name

    def _styled(self, source: str, style: Style | None, strength: float) -> torch.nn.Module:
        generator = self.store.generator(source)
        if style is None:
            return generator
        return apply_style(generator, style, strength, source_name=source)


__all__ = ["Studio", "StudioProgress", "InvertResult"]
