"""The app's models: each one loaded once per process, on first use, shared read-only by every session.

A :class:`ModelStore` is created by the app (``build_demo``) and handed to every handler; there is no module-level
cache. Besides the registry's generators it serves generators a person uploaded (:meth:`ModelStore.add_generator`),
under keys made from their weights (``own:<fingerprint>``), never from a name or a path the page sends; which browser
session may use which key is the app's business (``nada.app.own_models``). Loading is thread-safe: concurrent first
requests for the same model wait for one load. A failed load is not cached (a later request retries, e.g. after the
weights were put in place). In tiny mode every model is a tiny random stand-in (``nada.tiny``), so the whole app runs
offline in seconds.
"""

from __future__ import annotations

import copy
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .align import AlignmentUnavailableError, FaceAligner
from .clip_models import DEFAULT_CLIPS, load_clip
from .id_loss import load_id_loss
from .invert import TINY_INVERT_GENERATOR, tiny_inversion_models
from .nets.autotune import ConvTuner
from .nets.stylegan2 import Generator
from .registry import FEATURE_ASSETS
from .runtime import pick_device
from .styles import (
    Style,
    StyleFileError,
    generator_fingerprint,
    import_style_pt,
    load_style,
    style_from_generators,
    verify_source,
)
from .tiny import TINY_GENERATOR, TINY_INVERT, TINY_NAME, tiny_clip, tiny_generator
from .weights import (
    REGISTRY,
    CheckpointError,
    WeightsStatus,
    WeightsUnavailableError,
    asset_status,
    can_run,
    load_e4e,
    load_generator,
)

TINY_DEMO_STYLES = {  # built-in styles in tiny mode: the tiny generators with their convolutions from seed 1
    "tiny-demo": ("Tiny demo style (random, tiny mode)", TINY_NAME),
    "tiny-invert-demo": ("Tiny demo style for inversion (random, tiny mode)", TINY_INVERT),
}
INVERT_ASSETS = FEATURE_ASSETS["Invert"]  # what the Invert tab needs (real mode)
OWN_PREFIX = "own:"  # keys of uploaded generators: OWN_PREFIX + the first 16 hex digits of their weights' fingerprint
MAX_OWN_LOADED = 2  # uploaded generators kept in memory (the others are read again from their file when used)


@dataclass(frozen=True)
class StyleFile:
    """A ready-made style kept in a file the server's owner put in place (e.g. a zoo folder, ``nada.zoo.gallery``)."""

    label: str  # how menus name it
    source: str  # the generator it was trained from (a registry name)
    file: Path  # its .safetensors file


@dataclass
class OwnSource:
    """A generator a person uploaded: how it is named and where its file is."""

    label: str  # "your model: cats.pkl"
    n_latent: int  # W+ rows
    files: list[Path]  # copies of the file (one per browser session that uploaded it); the first still there is read


class ModelStore:
    """Lazily loaded, process-wide models for the app (generators, CLIP, ArcFace, e4e, face aligner, styles)."""

    def __init__(self, tiny: bool = False, device: torch.device | str | None = None,
                 e4e_source: str = "e4e-ffhq", arcface_source: str = "arcface-ir-se50",
                 max_published_styles: int = 3, local_files: bool = False) -> None:
        self.tiny = bool(tiny)
        self.local_files = bool(local_files)  # generators may also be local checkpoint paths (the CLI and
        #                                       nada.Studio; never the app, whose source names come from a web page)
        if device is None:  # tiny models are fastest on the CPU; NADA_DEVICE overrides
            device = os.environ.get("NADA_DEVICE") or ("cpu" if self.tiny else "auto")
        self.device = pick_device(str(device))
        self.e4e_source = e4e_source
        self.arcface_source = arcface_source
        self.max_published_styles = max(1, int(max_published_styles))
        self._cache: dict[str, Any] = {}
        self._published: OrderedDict[str, Style] = OrderedDict()  # LRU of imported published styles
        self._own: dict[str, OwnSource] = {}  # uploaded generators by key
        self._own_loaded: OrderedDict[str, Generator] = OrderedDict()  # LRU of those in memory
        self._style_files: dict[str, StyleFile] = {}  # ready-made styles read from files (add_style_file)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.tuner = ConvTuner()  # the CPU convolution paths timed for every generator this store serves

    # ------------------------------------------------------------------------------------------ the cache
    def _get(self, key: str, load: Callable[[], Any]) -> Any:
        """The cached value for ``key``, loading it once (other threads asking meanwhile wait for that load)."""
        if key in self._cache:
            return self._cache[key]
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._cache:
                self._cache[key] = load()
            return self._cache[key]

    def loaded(self) -> list[str]:
        """Keys of the models loaded so far (for status displays and tests)."""
        return sorted(self._cache)

    # -------------------------------------------------------------------------------------------- choices
    def default_source(self) -> str:
        """The generator used when nothing else is chosen: "tiny" in tiny mode, else "ffhq"."""
        return TINY_NAME if self.tiny else "ffhq"

    def source_choices(self) -> list[tuple[str, str]]:
        """(label, name) of the source generators a user may pick."""
        if self.tiny:
            return [("Tiny random (32 px, tiny mode)", TINY_NAME)]
        return [(a.description or a.name, a.name) for a in REGISTRY.values()
                if a.kind == "generator" and can_run(a.architecture)]

    def source_label(self, name: str) -> str:
        """How a source generator is named for people: its menu label, an upload's "your model: <file>", else the
        name itself."""
        if name in self._own:
            return self._own[name].label
        return next((label for label, n in self.source_choices() if n == name), name)

    def invert_source(self) -> str:
        """The generator the e4e encoder inverts into: "ffhq" (tiny mode: the 256 px tiny generator)."""
        return TINY_INVERT if self.tiny else "ffhq"

    def published(self) -> dict[str, tuple[str, str]]:
        """Ready-made styles: name -> (label, source generator). Published StyleGAN-NADA models (or tiny demos), then
        the style files added with :meth:`add_style_file`."""
        files = {name: (entry.label, entry.source) for name, entry in list(self._style_files.items())}
        if self.tiny:
            return {**TINY_DEMO_STYLES, **files}
        return {**{a.name: (a.description or a.name, a.source or "ffhq") for a in REGISTRY.values()
                   if a.kind == "style"}, **files}

    def add_style_file(self, name: str, label: str, source: str, file: str | os.PathLike) -> None:
        """Offer the nada style file ``file`` (trained from the generator ``source``) as the ready-made style ``name``
        (the caller has checked the file's place; it is read, and checked against ``source``, when first used).
        ValueError for a name a published style already has; the same name again replaces the file."""
        with self._guard:
            if name in self.published() and name not in self._style_files:
                raise ValueError(f"'{name}' is already a ready-made style here.")
            self._style_files[name] = StyleFile(str(label), str(source), Path(file))
            self._published.pop(name, None)  # a replaced file is read again
            self._cache.pop(f"style:{name}", None)

    def style_file(self, name: str) -> Path | None:
        """The file of a ready-made style added with :meth:`add_style_file` (None for the others)."""
        entry = self._style_files.get(name)
        return entry.file if entry is not None else None

    def published_choices(self, source: str | None = None) -> list[tuple[str, str]]:
        """(label, name) of the ready-made styles (only those of ``source`` when given)."""
        return [(label, name) for name, (label, src) in self.published().items() if source in (None, src)]

    def is_source(self, name: str | None) -> bool:
        """True if ``name`` is a generator this store can load."""
        return name is not None and (name in {n for _, n in self.source_choices()} or name in self._own or
                                     (self.tiny and name == TINY_INVERT) or self.is_local_file(name))

    def is_own(self, name: str | None) -> bool:
        """True for the key of an uploaded generator (:meth:`add_generator`)."""
        return isinstance(name, str) and name in self._own

    def is_local_file(self, name: str | os.PathLike | None) -> bool:
        """True if ``name`` is a local checkpoint file this store may load (only with ``local_files``)."""
        return (self.local_files and name is not None and os.fspath(name) not in REGISTRY
                and os.path.isfile(os.path.expanduser(os.fspath(name))))

    def generator_rows(self, name: str) -> int | None:
        """W+ rows (n_latent) of a source generator, from its registry size: no loading (None for a local file,
        whose size is known once it is read)."""
        if self.is_local_file(name):
            return None
        if name in self._own:
            return self._own[name].n_latent
        if name in REGISTRY and REGISTRY[name].n_latent:
            return REGISTRY[name].n_latent
        size = TINY_GENERATOR["size"] if name == TINY_NAME else 256 if name == TINY_INVERT else 1024
        return 2 * int(math.log2(size)) - 2

    def faces(self, source: str) -> bool | None:
        """True for face generators (identity loss and inversion make sense), False for the others; None for a local
        checkpoint, which says nothing about what it draws."""
        if self.is_local_file(source) or source in self._own:
            return None
        asset = REGISTRY.get(source)
        return bool(asset and asset.faces)

    # ---------------------------------------------------------------------------------------------- models
    def generator(self, name: str):
        """The source generator ``name`` (eval mode, on the store's device); never modify it."""
        if not self.is_source(name):
            known = ", ".join(n for _, n in self.source_choices())
            raise ValueError(f"Unknown source generator '{name}'. Choose one of: {known}.")
        if name in self._own:
            return self._own_generator(name)
        if name == TINY_INVERT:  # alone: the random encoder paired with it (slow to draw) waits for a photo
            return self._get(f"generator:{name}", lambda: tiny_generator(**TINY_INVERT_GENERATOR).to(self.device))
        return self._get(f"generator:{name}",
                         lambda: load_source(name, self.device, self.tuner).eval().requires_grad_(False))

    def add_generator(self, generator: Generator, label: str, file: str | os.PathLike) -> str:
        """Serve a person's own ``generator`` (read from ``file`` and checked by the caller) as a source; returns its
        key, ``own:`` + the first 16 hex digits of its weights' fingerprint (the same weights get the same key, so a
        style trained on them finds them again after a new upload). The last :data:`MAX_OWN_LOADED` stay in memory;
        the others are read again from ``file`` when used."""
        fingerprint = generator_fingerprint(generator)
        key = OWN_PREFIX + fingerprint[:16]
        with self._guard:
            own = self._own.setdefault(key, OwnSource(label, generator.n_latent, []))
            own.label = label
            own.files = [f for f in own.files if f.is_file() and f != Path(file)] + [Path(file)]
            self._cache[f"fingerprint:{key}"] = fingerprint
        self._keep_own(key, serving_impl(generator.to(self.device).eval().requires_grad_(False), self.device,
                                         self.tuner))
        return key

    def _keep_own(self, key: str, generator: Generator) -> Generator:
        with self._guard:
            self._own_loaded[key] = generator
            self._own_loaded.move_to_end(key)
            while len(self._own_loaded) > MAX_OWN_LOADED:
                self._own_loaded.popitem(last=False)
        return generator

    def _own_generator(self, key: str) -> Generator:
        """An uploaded generator: in memory, else read again from a file of it that is still there."""
        with self._guard:
            if key in self._own_loaded:
                self._own_loaded.move_to_end(key)
                return self._own_loaded[key]
            own = self._own[key]
            files = [f for f in own.files if f.is_file()]
            lock = self._locks.setdefault(f"generator:{key}", threading.Lock())
        if not files:
            raise WeightsUnavailableError(f"The file of {own.label} is no longer on the server (its browser session "
                                          "ended); upload it again.")
        with lock:
            if key in self._own_loaded:
                return self._own_loaded[key]
            return self._keep_own(key, load_source(files[0], self.device, self.tuner).eval().requires_grad_(False))

    def fingerprint(self, name: str) -> str:
        """The source generator's weights fingerprint (:func:`nada.styles.generator_fingerprint`), computed once:
        later checks need not read its tensors (on ZeroGPU the main process cannot once they are offloaded)."""
        return self._get(f"fingerprint:{name}", lambda: generator_fingerprint(self.generator(name)))

    def truncation_center(self, name: str) -> torch.Tensor:
        """The source generator's truncation centre [1, 512], computed once."""
        def center() -> torch.Tensor:
            with torch.no_grad():
                return self.generator(name).truncation_center().detach()

        return self._get(f"center:{name}", center)

    def clips(self, names: list[str] | tuple[str, ...], weights: list[float] | None = None
              ) -> list[tuple[torch.nn.Module, float]]:
        """``[(clip_model, weight), ...]`` for CLIP registry names (or files), each weight 1 unless ``weights`` says
        otherwise; weight-0 models are not loaded. Tiny mode: one tiny CLIP, whatever the names."""
        if self.tiny:
            return [(self._get("clip:tiny", lambda: tiny_clip().to(self.device)), 1.0)]
        if not names:
            raise ValueError("Choose at least one CLIP model.")
        weights = [1.0] * len(names) if weights is None else [float(w) for w in weights]
        if len(weights) != len(names):
            raise ValueError(f"{len(names)} CLIP models but {len(weights)} weights.")
        return [(self._get(f"clip:{n}", lambda n=n: load_clip(n, self.device)), w)
                for n, w in zip(names, weights) if w > 0]

    def id_loss(self):
        """The ArcFace identity loss (real mode only; tiny generators are not faces)."""
        if self.tiny:
            raise ValueError("The identity loss needs a face generator; tiny mode has none. Set the identity weight "
                             "to 0.")
        return self._get("arcface", lambda: load_id_loss(self.arcface_source, self.device))

    def e4e(self) -> tuple[torch.nn.Module, torch.Tensor]:
        """(e4e encoder, latent_avg [n_latent, 512]); in tiny mode a random encoder matching the tiny generator."""
        if self.tiny:
            return self._tiny_inversion()[:2]
        return self._get(f"e4e:{self.e4e_source}", lambda: load_e4e(self.e4e_source, self.device))

    def _tiny_inversion(self) -> tuple:
        """(random e4e, latent_avg): those of ``nada.invert.tiny_inversion_models``, whose generator is the
        ``"tiny-invert"`` source (the same seed: tests/test_studio.py checks they agree), built once."""
        return self._get("tiny-inversion", lambda: tiny_inversion_models(device=self.device)[:2])

    def aligner(self):
        """dlib's face detector and landmark model (FFHQ alignment); the same in tiny mode (it is small)."""
        return self._get("aligner", FaceAligner.load)

    def published_style(self, name: str) -> Style:
        """A ready-made style by name, imported against its source generator; the last few are kept in memory."""
        with self._guard:
            if name in self._published:
                self._published.move_to_end(name)
                return self._published[name]
        if name not in self.published():
            raise ValueError(f"'{name}' is not a ready-made style here ({', '.join(self.published())}).")
        source = self.published()[name][1]
        src = self.generator(source)
        if name in self._style_files:
            style = self._get(f"style:{name}", lambda: self._read_style_file(self._style_files[name], src))
        elif self.tiny:
            style = self._get(f"style:{name}", lambda: _tiny_demo_style(src, source))
        else:
            style = self._get(f"style:{name}", lambda: import_style_pt(name, src, {"source": source},
                                                                       self.fingerprint(source)))
        with self._guard:
            self._cache.pop(f"style:{name}", None)  # the LRU below owns it (bounded memory)
            self._published[name] = style
            while len(self._published) > self.max_published_styles:
                self._published.popitem(last=False)
        return style

    def _read_style_file(self, entry: StyleFile, source: Generator) -> Style:
        """The style in ``entry``'s file, checked against its generator; errors name the file by its own name."""
        try:
            style = load_style(entry.file)
        except StyleFileError as exc:
            raise StyleFileError(str(exc).replace(str(entry.file), entry.file.name)) from None
        verify_source(style, source, entry.source, self.fingerprint(entry.source),
                      advice=f"The file {entry.file.name} does not belong to it: train that style again from it.")
        return style

    def preload(self, names: list[str] | None = None) -> list[str]:
        """Load everything the tabs need now, with fingerprints and truncation centres (ZeroGPU Spaces: models must
        exist before the first GPU call, and a model loaded inside a GPU worker would be loaded again on every call).
        Returns what could not be loaded (missing weights), each as a readable line; the rest is loaded."""
        missing = []
        loaders: list[Callable[[], Any]] = [lambda: self.clips(list(names or DEFAULT_CLIPS))]
        for source in dict.fromkeys((self.default_source(), self.invert_source())):
            loaders += [lambda s=source: self.fingerprint(s), lambda s=source: self.truncation_center(s)]
        loaders += [self.e4e, self.aligner] + ([] if self.tiny else [self.id_loss])
        for load in loaders:
            try:
                load()
            except (WeightsUnavailableError, CheckpointError, AlignmentUnavailableError) as exc:
                missing.append(str(exc))
        return missing

    # ------------------------------------------------------------------------------------- weights status
    def weights_status(self, names: list[str] | tuple[str, ...]) -> list[WeightsStatus]:
        """For each registry asset: is it on disk? If not, what will happen and how to provide it (no network)."""
        out = []
        for name in names:
            if self.tiny or name == TINY_NAME:
                out.append(WeightsStatus(name, True, ""))
                continue
            out.append(asset_status(name))
        return out

    def missing_message(self, names: list[str] | tuple[str, ...], what: str) -> str:
        """Markdown saying which weights ``what`` needs that are not cached (empty when all are)."""
        missing = [s for s in self.weights_status(names) if not s.cached]
        if not missing:
            return ""
        lines = "\n".join(f"- {s.message}" for s in missing)
        return f"**{what} needs weights that are not on this machine yet:**\n{lines}"


def _tiny_demo_style(source: torch.nn.Module, source_name: str) -> Style:
    """A style for a tiny generator: its synthesis convolutions replaced by those of the seed-1 generator."""
    other = tiny_generator(seed=1, **source.config()).to(next(source.parameters()).device)
    adapted = copy.deepcopy(source)
    with torch.no_grad():
        theirs = other.state_dict()
        for key, value in adapted.state_dict().items():
            if key.startswith(("conv1.conv.", "convs.")) and key.endswith(".weight"):
                value.copy_(theirs[key])
    return style_from_generators(source, adapted, {"source": source_name, "source_text": "tiny",
                                                   "target_text": "tiny demo"})


def load_source(name_or_path: str | os.PathLike, device: torch.device | str = "cpu",
                tuner: ConvTuner | None = None) -> Generator:
    """The source generator ``name_or_path``, eval mode, on ``device``: the tiny generator for ``"tiny"``, else a
    registry name (downloaded once, cached) or a local checkpoint (see :func:`nada.weights.load_generator`). On a
    CPU its convolutions run by the paths timed fastest there (``tuner``, a new one when None)."""
    if isinstance(name_or_path, str) and name_or_path == TINY_NAME:
        g = tiny_generator().to(device)
    else:
        g = load_generator(name_or_path, device)
    return serving_impl(g, device, tuner)


def serving_impl(generator: Generator, device: torch.device | str, tuner: ConvTuner | None = None) -> Generator:
    """Set how a served generator convolves: each shape by the path timed fastest on a CPU (the "auto" impl, with
    ``tuner`` or a new one), the default elsewhere (cuDNN chooses on a GPU). Returns ``generator``."""
    return generator.set_conv_impl("auto", tuner) if torch.device(device).type == "cpu" else generator


__all__ = ["ModelStore", "WeightsStatus", "DEFAULT_CLIPS", "TINY_DEMO_STYLES", "TINY_INVERT", "INVERT_ASSETS",
           "OWN_PREFIX", "OwnSource", "StyleFile"]
