"""The front door: :class:`Studio` holds the loaded models and does the main jobs in one call each.

    studio = nada.Studio()                                   # NADA_TINY=1 (or tiny=True): tiny random models
    for rec in studio.adapt("Photo", "Sketch"):              # a style from two prompts
        print(rec.step, rec.losses)                          # rec.preview too; rec.style: the weights so far
    images = studio.generate([0, 1, 2], style=rec.style)     # seeds rendered in that style
    result = studio.invert("selfie.jpg", styles=[rec.style]) # .aligned, .reconstruction, .styled
    fast = studio.instant("Photo", "Sketch", hyper="hyper.safetensors")  # no training: a hypernetwork's one pass
    for rec in studio.adapt("Photo", "Sketch", recipe="compact", start=fast): ...  # refined: trained on from it

The default source generator is the one photos are inverted into (``"ffhq"``; tiny mode: ``"tiny-invert"``, a
256 px random stand-in), so a style trained with the defaults can be put on a photo. Other generators are named with
``source=`` (``"afhq-cat"``, ...; tiny mode: ``"tiny"``, the app's 32 px one). Models load once, on first use
(:class:`~nada.model_store.ModelStore`, the same store the app uses); nothing is global, so two studios on two
devices do not share state.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from . import limits
from .clip_loss import check_prompts
from .clip_models import JUDGE_CLIP
from .hyper.instant import hypernet_source, hypernet_style
from .images import ImageSource
from .invert import Inversion, invert, render_codes
from .metrics import Evaluation, evaluate
from .model_store import ModelStore
from .render import render_seeds, to_pil
from .runtime import tiny_mode
from .style_trainer import StyleTrainer
from .styles import (
    STYLE_SUFFIX,
    Style,
    StyleMismatchError,
    apply_style,
    list_saved_styles,
    load_any_style,
    load_style,
    save_style,
    style_path,
    verify_source,
)
from .train import AdaptConfig, Progress
from .video import VideoPlan, render_video
from .zoo.jobs import StoreSettings
from .zoo.prompts import parse_prompts, read_prompts
from .zoo.runner import ZooEvent, run_zoo

HYPERNET_SETTING = "NADA_HYPERNET"  # the environment variable naming the hypernetwork file (Studio.instant, the app)
StyleLike = Style | str | os.PathLike  # a Style, a saved style's name, a file, or a published style's name


@dataclass
class InvertResult:
    """A photo inverted and drawn in styles."""

    aligned: Image.Image  # the FFHQ-aligned 256 px face the encoder saw
    reconstruction: Image.Image  # the face as the source generator draws it
    styled: list[Image.Image] = field(default_factory=list)  # one per style, in the order asked
    inversion: Inversion | None = None  # the W+ codes ([1, n_latent, 512]), to reuse with other styles

    @property
    def images(self) -> list[Image.Image]:
        """Deprecated second name of :attr:`styled` (it goes in the next release)."""
        _deprecated("InvertResult.images", "InvertResult.styled")
        return self.styled


class Names(list):
    """A list of names (:attr:`Studio.sources`, :attr:`Studio.styles`); calling it, as when these were methods,
    still gives the list, with a deprecation warning."""

    def __call__(self) -> list[str]:
        _deprecated("studio.sources() / studio.styles()", "studio.sources / studio.styles (properties)")
        return list(self)


def _deprecated(old: str, new: str) -> None:
    """Warn that ``old`` works for one more release and ``new`` replaces it."""
    warnings.warn(f"{old} is deprecated and goes in the next release: use {new}.", DeprecationWarning, stacklevel=3)


class Studio:
    """Generate, adapt, invert, evaluate and make videos with one object; models load on first use.

    ``tiny``: tiny random stand-ins for every model (nothing downloaded; pictures are noise); ``None`` reads the
    ``NADA_TINY`` environment flag (1/true/yes/on), as the app and the notebooks do, else real models. ``device``:
    ``"cuda"``, ``"cpu"``, ... (default: ``NADA_DEVICE``, else the best one here; tiny mode: the CPU). ``hypernet``:
    the hypernetwork file :meth:`instant` uses (default: the ``NADA_HYPERNET`` setting, read here)."""

    def __init__(self, tiny: bool | None = None, device: torch.device | str | None = None, *,
                 hypernet: str | os.PathLike | None = None) -> None:
        self.store = ModelStore(tiny=tiny_mode() if tiny is None else bool(tiny), device=device, local_files=True)
        self.hypernet = hypernet_setting(hypernet)  # the hypernetwork file :meth:`instant` uses (None: none)

    @property
    def tiny(self) -> bool:
        """True when every model is a tiny random stand-in (nothing downloaded)."""
        return self.store.tiny

    @property
    def device(self) -> torch.device:
        """Where the models run."""
        return self.store.device

    @property
    def source(self) -> str:
        """The default source generator: the one photos are inverted into ("ffhq"; tiny mode: "tiny-invert")."""
        return self.store.invert_source()

    @property
    def sources(self) -> Names:
        """Names of the source generators ``source=`` accepts (a local checkpoint's path works too)."""
        names = [name for _, name in self.store.source_choices()]
        return Names(names if self.source in names else [self.source, *names])

    def __repr__(self) -> str:
        return f"Studio(tiny={self.tiny}, device='{self.device}', loaded={self.store.loaded()})"

    # ------------------------------------------------------------------------------------------ styles
    def load_style(self, name_or_path: StyleLike, source: str | None = None) -> Style:
        """A style from a ``.safetensors`` file, a saved style's name, a published style's name ("nada-pixar";
        tiny mode: "tiny-invert-demo") or a StyleGAN-NADA ``.pt``, checked against its source generator
        (``source``, else the one the style names): :class:`~nada.styles.StyleMismatchError` when it does not fit."""
        return self._resolve(name_or_path, source)[0]

    def save_style(self, style: Style, name_or_path: str | os.PathLike) -> Path:
        """Save ``style``: a name ("witcher") goes to the weights cache's ``styles/`` folder (slugged, never a path),
        a path ending in ``.safetensors`` is written there. Returns the file."""
        if not isinstance(style, Style):
            raise TypeError(f"save_style needs a Style (e.g. a training record's .style), got {type(style).__name__}.")
        key = os.fspath(name_or_path)
        is_path = key.endswith(STYLE_SUFFIX) or os.sep in key or bool(os.altsep and os.altsep in key)
        return save_style(style, Path(key).expanduser() if is_path else style_path(key))

    @property
    def styles(self) -> Names:
        """Names :meth:`load_style` accepts: the published (tiny mode: demo) styles, then the saved ones."""
        return Names([*self.store.published(), *list_saved_styles()])

    # ------------------------------------------------------------------------------------------ generate
    def generate(self, seeds: int | Iterable[int], style: StyleLike | None = None, source: str | None = None,
                 truncation: float = 0.7, strength: float = 1.0) -> list[Image.Image]:
        """One picture per seed, from the source generator or in ``style`` at ``strength`` (0 = the source's
        picture, exactly); ``truncation`` pulls each latent towards the average (1 = none)."""
        seeds = _seeds(seeds)
        truncation = _fraction(truncation, "Truncation")
        if style is None:
            name = self._source(source)
            generator = self.store.generator(name)
        else:
            chosen, name = self._resolve(style, source)
            generator = apply_style(self.store.generator(name), chosen, _fraction(strength, "Style strength"),
                                    check_source=False, source_name=name)
        with torch.no_grad():
            return to_pil(render_seeds(generator, seeds, truncation, w_avg=self.store.truncation_center(name)))

    # ------------------------------------------------------------------------------------------ adapt
    def adapt(self, source_text: str, target_text: str, recipe: str = "paper", source: str | None = None, *,
              stop: threading.Event | None = None, style_every: int = 1, start: StyleLike | None = None,
              **overrides) -> Iterator[Progress]:
        """Train a style from ``source_text`` to ``target_text`` with a recipe (``nada.RECIPES``) and any
        :class:`~nada.train.AdaptConfig` field as an override (``iterations=100``); yields a
        :class:`~nada.train.Progress` record per step.

        Each record's ``.style`` holds the weights trained so far (a CPU copy of the changed tensors: keep the records
        you need, not all of them); ``style_every=k`` snapshots every k-th record only (0: only the last), and the
        last record always has one. ``stop``: set it to end training after the current step. The source generator
        is never modified. Tiny mode trains with the tiny CLIP whatever ``clip_models`` says. The identity loss
        (``lambda_id``) applies to face generators with ArcFace at hand; elsewhere it is turned off with a warning
        (:meth:`nada.style_trainer.StyleTrainer.identity_rule`). Settings are checked, and the models loaded, when
        this is called. ``start``: a compact style of the source (e.g. :meth:`instant`'s) to refine: training
        starts from its offsets (use the ``"compact"`` recipe, whose offsets are of the same form); without
        ``source`` a :class:`Style` given as ``start`` names the generator."""
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(AdaptConfig)})
        if unknown:
            raise ValueError(f"Unknown training setting(s) {', '.join(unknown)}: use AdaptConfig fields "
                             "(iterations, lr, layers_k, ...).")
        every = limits.whole_number(style_every, "style_every", 0, limits.MAX_ITERATIONS)
        # a source's published values for the recipe apply (nada.train.SOURCE_RECIPES); a start style names its own
        name = self._source(source, start if isinstance(start, Style) else None)
        config = AdaptConfig.from_recipe(recipe, name, source_text=source_text, target_text=target_text, **overrides)
        begin = self._resolve(start, name)[0] if start is not None else None
        trainer = StyleTrainer(self.store, name, config, stop=stop, start=begin)
        for text in trainer.warnings:
            warnings.warn(text, UserWarning, stacklevel=2)
        return trainer.run(style_every=every)

    # ------------------------------------------------------------------------------------------ instant
    def instant(self, source_text: str, target_text: str, hyper: str | os.PathLike | None = None,
                source: str | None = None) -> Style:
        """A compact style from two prompts in one forward pass of a hypernetwork (about a second; no training).
        ``hyper``: its ``.safetensors`` file (default: :attr:`hypernet`, the ``NADA_HYPERNET`` setting). It must have
        been trained for ``source``'s generator (default: the one it records, else :attr:`source`) and its CLIP
        models are loaded: :class:`~nada.hyper.HypernetMismatchError` otherwise. Refine the result by training from
        it: ``adapt(source_text, target_text, recipe="compact", start=style)``."""
        source_text, target_text = check_prompts(source_text, target_text)  # before anything loads
        path = self._hypernet_file(hyper)
        name = self._source(source or hypernet_source(path))
        return hypernet_style(self.store, name, path, source_text, target_text)

    def _hypernet_file(self, hyper: str | os.PathLike | None) -> Path:
        """The hypernetwork file to use: ``hyper``, else :attr:`hypernet`; a readable error when there is none."""
        chosen = hyper if hyper is not None else self.hypernet
        if chosen is None or not os.fspath(chosen).strip():
            raise ValueError(f"No hypernetwork: pass hyper='hyper.safetensors' (made by `nada hyper train`), or set "
                             f"{HYPERNET_SETTING} to its file before the Studio is made.")
        path = Path(os.fspath(chosen)).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"Hypernetwork file '{path.name}' does not exist.")
        return path

    # ------------------------------------------------------------------------------------------ zoo
    def zoo(self, prompts: str | os.PathLike | Sequence[str], out: str | os.PathLike, source: str | None = None, *,
            recipe: str = "compact", source_text: str = "Photo", styles_per_batch: int = 4,
            address: str | None = None, gpus_per_job: float | None = None, judge_samples: int = 8,
            stop: threading.Event | None = None) -> Iterator[ZooEvent]:
        """Train a style per prompt into the zoo folder ``out``, as ``nada zoo`` does; yields
        :class:`~nada.zoo.runner.ZooEvent` records (``kind`` "style" once per finished style, "pictures" for
        ``sheet.png`` and ``index.html``).

        ``prompts``: a prompt file's path, or its lines as a list (``"Sketch"``, ``"Human -> Werewolf | seed=3"``).
        Compact styles train ``styles_per_batch`` at a time in one batch; styles already in ``out`` with the same
        settings are skipped. ``address``: None trains here with this studio's models; ``"local"``, ``"auto"`` or
        ``"ray://host:port"`` runs the batches as Ray tasks (``pip install nada[cluster]``). The prompts are read
        when this is called; everything else is checked before the first style trains."""
        name = self._source(source)
        read = dict(source_text=source_text, recipe=recipe, source=name)
        entries = read_prompts(prompts, **read) if isinstance(prompts, (str, os.PathLike)) \
            else parse_prompts("\n".join(prompts), filename="prompts", **read)
        settings = StoreSettings(tiny=self.tiny, device=str(self.device), judge_samples=judge_samples)
        return run_zoo(entries, out, source=name, styles_per_batch=styles_per_batch, address=address,
                       gpus_per_job=gpus_per_job, settings=settings, stop=stop, store=self.store)

    # ------------------------------------------------------------------------------------------ invert
    def invert(self, photo: ImageSource | Image.Image | InvertResult, styles: Sequence[StyleLike] = (),
               strength: float = 1.0) -> InvertResult:
        """Align the face in ``photo`` (a path, bytes or a PIL image), invert it with e4e into :attr:`source`'s
        generator ("ffhq"; tiny mode: "tiny-invert", whose random encoder gives noise) and draw it in each style.
        A previous result as ``photo`` reuses its codes (other styles or strengths, no second inversion)."""
        name = self.source
        strength = _fraction(strength, "Style strength")
        if isinstance(styles, (str, os.PathLike, Style)):  # one style given on its own
            styles = [styles]
        chosen = [self._photo_style(s, name) for s in styles]  # every style checked before the work
        generator = self.store.generator(name)
        with torch.no_grad():
            if isinstance(photo, InvertResult) and photo.inversion is not None:
                result = photo.inversion
            else:
                encoder, latent_avg = self.store.e4e()
                result = invert(photo, encoder, latent_avg, generator, aligner=self.store.aligner())
            styled = [render_codes(apply_style(generator, s, strength, check_source=False, source_name=name),
                                   result.codes) for s in chosen]
        return InvertResult(result.aligned, result.reconstruction, styled, result)

    # ------------------------------------------------------------------------------------------ judge
    def evaluate(self, style: StyleLike, source_text: str | None = None, target_text: str | None = None,
                 n: int = 64, seed: int = 0, truncation: float = 0.7, clip_models: Sequence[str] | None = None,
                 identity: bool = False) -> Evaluation:
        """The figures of :func:`nada.metrics.evaluate` (CLIP direction score ``s_dir``, target scores, diversity;
        ``id`` with ``identity=True``) for ``style`` against its source generator, on ``n`` seeded samples, as an
        :class:`~nada.metrics.Evaluation` that names its judge. The prompts default to the style's own, the judge to
        the held-out ViT-L/14 (``JUDGE_CLIP``; tiny mode: the tiny CLIP)."""
        style, name = self._resolve(style)
        source_text = source_text if source_text is not None else style.meta.get("source_text") or ""
        target_text = target_text if target_text is not None else style.meta.get("target_text") or ""
        generator = self.store.generator(name)
        judges = list(clip_models or (JUDGE_CLIP,))
        clips = self.store.clips(judges)
        id_loss = self.store.id_loss() if identity else None
        figures = evaluate(generator, apply_style(generator, style, check_source=False, source_name=name), clips,
                           source_text, target_text, n=n, seed=seed, id_loss=id_loss, truncation=truncation)
        config = style.meta.get("config")
        trained_with = config.get("clip_models") if isinstance(config, dict) else None
        return Evaluation.from_figures(figures, judge=["tiny-clip"] if self.tiny else judges,
                                       trained_with=trained_with, id_trained=bool(isinstance(config, dict)
                                                                                  and config.get("lambda_id")))

    # ------------------------------------------------------------------------------------------ video
    def video(self, seeds: Sequence[int] | StyleLike | None = (0, 1, 2, 3), style: StyleLike | None = None,
              path: str | os.PathLike | None = None, source: str | None = None, **plan) -> Path:
        """An MP4 at ``path`` walking through ``seeds`` while ``style`` fades in (the source alone without one), in
        the order :meth:`generate` takes them: ``studio.video([0, 1, 2], style="sketch", path="walk.mp4")``.
        ``plan``: any :class:`~nada.video.VideoPlan` field (``seconds_per_seed``, ``fps``, ``truncation``, ``ramp``,
        ``size``). The old order, ``video(style, path, seeds)``, works for one more release, with a warning."""
        if seeds is None or isinstance(seeds, (str, os.PathLike, Style)):  # the old order: (style, path, seeds)
            _deprecated("studio.video(style, path, seeds)", "studio.video(seeds, style=..., path=...)")
            old_style = seeds
            if style is not None:  # video(style, path[, seeds]) by position: they sit in (seeds, style, path)
                seeds, path = (path if path is not None else (0, 1, 2, 3)), style
            else:  # video(style, path=..., ...)
                seeds = (0, 1, 2, 3)
            style = old_style
        if path is None:
            raise ValueError("Say where to write the video: path='walk.mp4'.")
        fields = {f.name for f in dataclasses.fields(VideoPlan)} - {"seeds"}
        unknown = sorted(set(plan) - fields)
        if unknown:
            raise ValueError(f"Unknown video setting(s) {', '.join(unknown)}; choose from {', '.join(sorted(fields))}.")
        if style is None:
            chosen, name = None, self._source(source)
        else:
            chosen, name = self._resolve(style, source)
        video_plan = VideoPlan(seeds=tuple(_seeds(seeds)), **plan)
        return render_video(self.store.generator(name), chosen, video_plan, path,
                            w_avg=self.store.truncation_center(name))

    # ------------------------------------------------------------------------------------------ helpers
    def _source(self, source: str | None, style: Style | None = None) -> str:
        """The source generator's name: the one asked for, else the style's, else :attr:`source`."""
        name = source or (style.source if style is not None else None) or self.source
        if not self.store.is_source(name):
            raise ValueError(f"Unknown source generator '{name}'. Choose one of: {', '.join(self.sources)}.")
        return name

    def _resolve(self, name_or_path: StyleLike, source: str | None = None) -> tuple[Style, str]:
        """(the style, its source generator's name), loaded if need be and checked against that generator."""
        if isinstance(name_or_path, Style):
            style = name_or_path
        elif not isinstance(name_or_path, (str, os.PathLike)):
            raise TypeError(f"A style is a Style, a name or a path, not a {type(name_or_path).__name__}.")
        elif isinstance(name_or_path, str) and name_or_path in self.store.published():
            style = self.store.published_style(name_or_path)
        else:
            key = os.fspath(name_or_path)
            path = Path(key).expanduser()
            if not path.is_file() and isinstance(name_or_path, str) and not {os.sep, os.altsep} & set(key):
                path = _saved(key) or path  # a saved style's name
            if path.is_file() and path.suffix == STYLE_SUFFIX:
                style = load_style(path)  # it names its source generator
            else:  # a .pt generator (imported against ``source``), or a readable error from load_any_style
                name = self._source(source)
                style = load_any_style(path if path.is_file() else name_or_path, self.store.generator(name), name)
                style.meta["source"] = style.meta.get("source") or name
        name = self._source(source, style)
        generator = self.store.generator(name)
        advice = (f"Use its source generator (source='{style.source}')." if self.store.is_source(style.source)
                  else f"Use a style trained from '{name}'.")
        verify_source(style, generator, name, self.store.fingerprint(name), advice=advice)
        return style, name

    def _photo_style(self, style: StyleLike, photo_source: str) -> Style:
        """``style`` checked for the generator photos are inverted into: a clear error for a style of another (before
        its generator loads, when the style's name or object says which it is)."""
        declared = None  # the generator the style says it belongs to, when known without loading anything
        if isinstance(style, Style):
            declared = style.source
        elif isinstance(style, str) and style in self.store.published():
            declared = self.store.published()[style][1]
        if declared and declared != photo_source:
            chosen, name = None, declared
        else:
            chosen, name = self._resolve(style)
        if name != photo_source:
            why = "tiny mode's 256 px stand-in for FFHQ" if self.tiny else "the e4e encoder's generator"
            own = ", ".join(n for _, n in self.store.published_choices(photo_source)) or "none"
            raise StyleMismatchError(
                f"This style belongs to the '{name}' generator, but photos are inverted into '{photo_source}' ({why}). "
                f"Train it there (studio.adapt(..., source='{photo_source}'), the default), or pick a style of "
                f"'{photo_source}' (ready-made: {own}).")
        return chosen


def hypernet_setting(path: str | os.PathLike | None = None) -> str | None:
    """The hypernetwork file to use: ``path`` when given, else the ``NADA_HYPERNET`` setting; None for none."""
    value = os.fspath(path) if path is not None else os.environ.get(HYPERNET_SETTING, "")
    return value.strip() or None




def _saved(name: str) -> Path | None:
    """The file of the style saved as ``name`` (slugged as :meth:`Studio.save_style` does), if there is one."""
    try:
        path = style_path(name)
    except ValueError:  # no usable characters: not a saved style's name
        return None
    return path if path.is_file() else None


def _seeds(seeds: int | Iterable[int]) -> list[int]:
    """Seeds as a checked list of whole numbers (one seed or several)."""
    values = [seeds] if isinstance(seeds, int) else list(seeds)
    if not values:
        raise ValueError("Give at least one seed.")
    if len(values) > limits.MAX_SEEDS:
        raise ValueError(f"{len(values)} seeds; at most {limits.MAX_SEEDS} at a time.")
    return [limits.seed(s) for s in values]


def _fraction(value: float, what: str) -> float:
    """A number from 0 to 1 (truncation, style strength), else a readable ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{what} must be a number from 0 to 1, got {value!r}.")
    return float(value)


def __getattr__(name: str):
    """``StudioProgress``: the old name of :class:`~nada.train.Progress`, whose records now carry ``.style``."""
    if name == "StudioProgress":
        _deprecated("nada.StudioProgress", "nada.Progress (records carry .style)")
        return Progress
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Studio", "InvertResult", "Names", "HYPERNET_SETTING", "hypernet_setting", "hypernet_source"]
