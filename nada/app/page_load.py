"""What the page does when it opens: it finds the browser's session again and fills the first screen with pictures.

Handlers for ``demo.load`` (wired by name like those of :mod:`nada.app.handlers`):

- :func:`restore_session`: a browser keeps an opaque key (``gr.BrowserState``); the key finds its session's styles
  again after a reload (:class:`~nada.app.sessions.BrowserSessions`). The key is random, never a path.
- :func:`opening_images`: the Generate tab opens on the default seeds with the default style, rendered once per
  process (:class:`OpeningImages`) so a busy Space renders them once.
- :func:`published_gallery`: one thumbnail per published style, rendered once ever and cached on disk beside the
  weights (:class:`~nada.app.thumbnails.StyleThumbnails`); :func:`select_published` picks the clicked one in Generate.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from ..model_store import ModelStore
from .glue import KEEP, Outputs, to_user_error
from .gpu_tasks import StyleRef
from .handlers import GpuCalls, default_style, invert_choices, rendered_galleries, style_choices
from .sessions import BrowserSessions, SessionStyles
from .thumbnails import StyleThumbnails


@dataclasses.dataclass(frozen=True)
class GenerateDefaults:
    """The Generate tab's starting values, shared by its controls and its opening images."""

    seed: int = 0
    truncation: float = 0.7
    n_images: int = 4
    strength: float = 1.0


GENERATE_DEFAULTS = GenerateDefaults()
THUMBNAILS_PER_LOAD = 4  # published styles rendered (and downloaded, if needed) per page load, at most


@dataclasses.dataclass
class RestoreOutputs(Outputs):
    """What finding the browser's session again updates."""

    browser_key: str  # the opaque key the browser keeps
    session: SessionStyles
    generate_style: Any  # the style pickers, offering the session's styles
    invert_styles: Any


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


def restore_session(store: ModelStore, sessions: BrowserSessions, browser_key: str | None) -> RestoreOutputs:
    """This browser's session (the same styles after a reload), or a new one with a new key."""
    key, session = sessions.open(browser_key if isinstance(browser_key, str) else None)
    return RestoreOutputs(browser_key=key, session=session,
                          generate_style=gr.Dropdown(choices=style_choices(store, session)),
                          invert_styles=gr.Dropdown(choices=invert_choices(store, session)))


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


def opening_images(store: ModelStore, opening: OpeningImages, *, gpu: GpuCalls | None = None) -> OpeningOutputs:
    """The default seeds in the default style, as the Generate tab opens (rendered once per process). A failure
    (missing weights) is said on the tab's info line instead of as an error."""
    gpu = gpu or GpuCalls.direct(store)
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


def published_gallery(store: ModelStore, thumbnails: StyleThumbnails, *, gpu: GpuCalls | None = None,
                      limit: int = THUMBNAILS_PER_LOAD) -> PublishedOutputs:
    """One thumbnail per published style, rendering at most ``limit`` missing ones (tiny mode: all of them)."""
    gpu = gpu or GpuCalls.direct(store)
    for line in thumbnails.fill(store, gpu.thumbnails, len(store.published()) if store.tiny else limit):
        print(f"warning: no thumbnail: {line}")  # server log only: the gallery lists the styles that have one
    shown = thumbnails.gallery(store)
    return PublishedOutputs(published=[(path, short_label(caption)) for path, caption, _ in shown],
                            published_names=[name for _, _, name in shown])


def short_label(label: str) -> str:
    """A style's label without its parenthesised note ("Witcher (StyleGAN-NADA, from text)" -> "Witcher"): it fits
    under a thumbnail."""
    return label.split(" (")[0].strip() or label


def select_published(published_names: list[str] | None, evt: gr.SelectData) -> Any:
    """The Generate tab's style after a click on a published style's thumbnail."""
    names = published_names or []
    index = evt.index if isinstance(evt.index, int) else -1
    if not 0 <= index < len(names):
        return gr.skip()
    return names[index]


__all__ = ["GENERATE_DEFAULTS", "GenerateDefaults", "OpeningImages", "OpeningOutputs", "PublishedOutputs",
           "RestoreOutputs", "THUMBNAILS_PER_LOAD", "opening_images", "published_gallery", "restore_session",
           "select_published"]
