"""The first screen's gallery: one thumbnail of every ready-made style for one fixed seed, cached on disk.

Thumbnails live beside the weights (``cache_dir() / "thumbnails"``; tiny mode in its own ``tiny/`` folder), one PNG per
style, seed, truncation and size, so a Space renders each one once ever. :meth:`StyleThumbnails.fill` renders the
missing ones through a render function (on a Space, :func:`nada.app.generate_tab.render_style_thumbnails` as a GPU
task), one call per source generator; :meth:`StyleThumbnails.gallery` lists what is on disk. File names come from
registry names only, checked against a strict pattern: user text never becomes a path. A style served from a file (a
zoo's, :meth:`nada.model_store.ModelStore.style_file`) has its file's size and time in its thumbnail's name: a replaced
file gets a new thumbnail.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from ..styles import atomic_write
from ..weights import REGISTRY, asset_status, cache_dir, offline

if TYPE_CHECKING:
    from ..model_store import ModelStore

THUMBNAIL_SEED = 0  # the one seed every style is shown with
THUMBNAIL_TRUNCATION = 0.7  # the paper's sampling truncation: typical, clean faces
THUMBNAIL_SIZE = 256  # pixels per side of a thumbnail
RETRY_AFTER_S = 600.0  # a style whose thumbnail failed is not tried again sooner (page loads stay quick)

_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")

# render(source, names, seed, truncation, size) -> one image per name (None: the style could not be loaded)
RenderThumbnails = Callable[[str, list[str], int, float, int], list["Image.Image | None"]]


def resize_thumbnail(image: Image.Image, size: int) -> Image.Image:
    """``image`` as a ``size`` px RGB square: LANCZOS when shrinking, NEAREST when enlarging (tiny 32 px images stay
    visible blocks instead of a blur)."""
    image = image.convert("RGB")
    if image.size == (size, size):
        return image
    shrink = max(image.size) > size
    return image.resize((size, size), Image.LANCZOS if shrink else Image.NEAREST)


class StyleThumbnails:
    """A folder of style thumbnails for one seed, truncation and size; thread-safe (one lock per instance)."""

    def __init__(self, directory: Path, seed: int = THUMBNAIL_SEED, truncation: float = THUMBNAIL_TRUNCATION,
                 size: int = THUMBNAIL_SIZE, retry_after_s: float = RETRY_AFTER_S) -> None:
        if int(size) < 1:
            raise ValueError(f"A thumbnail size must be at least 1 pixel, got {size!r}.")
        self.directory = Path(directory)
        self.seed = int(seed)
        self.truncation = float(truncation)
        self.size = int(size)
        self.retry_after_s = float(retry_after_s)
        self._lock = threading.RLock()  # fill renders each missing thumbnail once; concurrent fills wait
        self._failed: dict[str, float] = {}  # name -> when its last render failed (monotonic)
        self._verified: dict[Path, tuple[int, int]] = {}  # path -> (mtime_ns, bytes) when it last decoded fine

    @classmethod
    def beside_weights(cls, tiny: bool) -> StyleThumbnails:
        """Thumbnails in the weights cache (``cache_dir() / "thumbnails"``; tiny mode: its ``tiny/`` subfolder)."""
        directory = cache_dir() / "thumbnails"
        return cls(directory / "tiny" if tiny else directory)

    def path(self, name: str) -> Path:
        """The PNG file of style ``name`` (a registry name: letters, digits, ``.``, ``_``, ``-``); else ValueError."""
        if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or name in {".", ".."}:
            raise ValueError(f"Not a style name a thumbnail can be stored under: {name!r}.")
        return self.directory / f"{name}-seed{self.seed}-t{self.truncation:g}-{self.size}.png"

    def missing(self, names: list[str], store: ModelStore | None = None) -> list[str]:
        """The names (in the given order) that have no readable thumbnail; corrupt files are removed."""
        return [name for name in names if not self._usable(self._path(store, name))]

    def fill(self, store: ModelStore, render: RenderThumbnails, limit: int) -> list[str]:
        """Render up to ``limit`` missing thumbnails of ``store.published()`` with one ``render`` call per source
        generator; returns a readable line per style that failed (nothing is raised for a failed render)."""
        published = store.published()  # name -> (label, source)
        with self._lock:  # a second visitor waits here, then finds the files
            now = time.monotonic()
            fresh = [n for n in published if now - self._failed.get(n, -math.inf) >= self.retry_after_s]
            todo, problems = self._choose(store, self.missing(fresh, store), max(0, int(limit)))
            if not todo:
                return problems
            self.directory.mkdir(parents=True, exist_ok=True)
            by_source: dict[str, list[str]] = {}
            for name in todo:
                by_source.setdefault(published[name][1], []).append(name)
            for source, names in by_source.items():
                problems += self._render_group(render, source, names, published, store)
            for name in todo:  # remembered: retried after retry_after_s, not on every page load
                if self._path(store, name).is_file():
                    self._failed.pop(name, None)
                else:
                    self._failed[name] = time.monotonic()
            return problems

    def gallery(self, store: ModelStore) -> list[tuple[str, str, str]]:
        """(PNG path, caption, style name) of each ready-made style with a thumbnail, in registry order."""
        out = []
        for name, (label, _source) in store.published().items():
            path = self._path(store, name)
            if self._usable(path):
                out.append((str(path), label, name))
        return out

    # ------------------------------------------------------------------------------------------- internals
    def _path(self, store: ModelStore | None, name: str) -> Path:
        """:meth:`path` of ``name``, stamped with its file's size and time when ``store`` serves it from a file."""
        file = getattr(store, "style_file", lambda _name: None)(name)  # None for published styles
        if file is None:
            return self.path(name)
        try:
            stat = Path(file).stat()
            stamp = f"{Path(file).resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        except OSError:
            stamp = "gone"
        return self.path(f"{name}.{hashlib.sha256(stamp.encode()).hexdigest()[:12]}")

    def _choose(self, store: ModelStore, missing: list[str], limit: int) -> tuple[list[str], list[str]]:
        """(names to render now, lines for those that cannot be): in real mode, styles whose weights are cached
        first, so a page load downloads as little as possible; offline, uncached ones are skipped."""
        if store.tiny:
            return missing[:limit], []
        published = store.published()
        cached: dict[str, bool] = {}

        def uncached(name: str) -> int:  # 0-2: how many of (style, source generator) would be downloaded
            assets = [a for a in (name, published[name][1]) if a in REGISTRY]  # a style file is on this machine
            for asset in assets:
                if asset not in cached:
                    cached[asset] = asset_status(asset).cached
            return sum(not cached[a] for a in assets)

        ranked = sorted(missing, key=uncached)  # stable: registry order within each rank
        skipped = [n for n in ranked if uncached(n) and offline()]
        lines = [f"{len(skipped)} ready-made style(s) have no thumbnail: their weights are not on this machine and "
                 "offline mode is on."] if skipped else []
        return [n for n in ranked if n not in skipped][:limit], lines

    def _render_group(self, render: RenderThumbnails, source: str, names: list[str],
                      published: dict[str, tuple[str, str]], store: ModelStore | None = None) -> list[str]:
        """Render ``names`` (all from ``source``) in one call and write their PNGs; lines for the failures."""
        try:
            images = list(render(source, list(names), self.seed, self.truncation, self.size))
        except Exception as exc:  # best effort: the gallery must never break the page; the reason is reported
            return [f"{published[n][0]}: no thumbnail ({exc})." for n in names]
        if len(images) != len(names):
            return [f"{published[n][0]}: no thumbnail (the renderer returned {len(images)} images for "
                    f"{len(names)} styles)." for n in names]
        problems = []
        for name, image in zip(names, images):
            if image is None:
                problems.append(f"{published[name][0]}: no thumbnail (its weights could not be loaded).")
                continue
            try:
                self._write(self._path(store, name), resize_thumbnail(image, self.size))
            except OSError as exc:
                problems.append(f"{published[name][0]}: the thumbnail could not be saved ({exc}).")
        return problems

    @staticmethod
    def _write(path: Path, image: Image.Image) -> None:
        """Write ``image`` as a PNG at ``path`` atomically (never a half file a page load could read)."""
        atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))

    def _usable(self, path: Path) -> bool:
        """True if ``path`` is a readable thumbnail of the right size; a corrupt one is removed (unless a fill is
        running in another thread: it may be replacing that very file)."""
        state = self._state(path)
        if state == "bad" and self._lock.acquire(blocking=False):
            try:
                if self._state(path) == "bad":  # still: no fill replaced it since it was read
                    path.unlink(missing_ok=True)
            finally:
                self._lock.release()
        return state == "ok"

    def _state(self, path: Path) -> str:
        """"ok" (a readable PNG of the right size), "missing" or "bad". A file is decoded once: while it keeps the
        time and size it had then, later page loads only look at its stat."""
        try:
            stat = path.stat()
            if self._verified.get(path) == (stat.st_mtime_ns, stat.st_size):
                return "ok"
            with Image.open(path) as image:
                image.load()
                ok = image.size == (self.size, self.size)
        except FileNotFoundError:
            return "missing"
        except (OSError, SyntaxError, ValueError):  # PIL's errors for truncated or garbled files
            ok = False
        if ok:
            self._verified[path] = (stat.st_mtime_ns, stat.st_size)
        return "ok" if ok else "bad"


__all__ = ["THUMBNAIL_SEED", "THUMBNAIL_TRUNCATION", "THUMBNAIL_SIZE", "RenderThumbnails", "resize_thumbnail",
           "StyleThumbnails"]
