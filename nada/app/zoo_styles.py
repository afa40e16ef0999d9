"""A zoo folder served as the app's gallery: its finished styles become ready-made styles of the model store (so every
style picker, the first screen's thumbnails and Mix offer them), and its contact sheet is shown in the Generate tab.

The folder is named by the ``NADA_ZOO_DIR`` setting (or ``build_demo(zoo_dir=...)``), read once as the app is built
(:func:`serve_zoo`). The folder is read by :func:`nada.zoo.gallery.read_zoo`, which trusts nothing in ``zoo.json``;
a folder that cannot be served is said in the server log, and the app starts without it.
"""

from __future__ import annotations

import os
import sys

from ..model_store import ModelStore
from ..zoo.gallery import ZooError, ZooGallery, ZooStyle, read_zoo

ZOO_SETTING = "NADA_ZOO_DIR"  # the environment variable naming the zoo folder the app serves
ZOO_PREFIX = "zoo."  # style picker values of zoo styles: "zoo.<name>" (never a registry name or a slug)


def zoo_setting(zoo_dir: str | os.PathLike | None = None) -> str | None:
    """The zoo folder to serve: ``zoo_dir`` when given, else the ``NADA_ZOO_DIR`` setting; None for none."""
    value = os.fspath(zoo_dir) if zoo_dir is not None else os.environ.get(ZOO_SETTING, "")
    return value.strip() or None


def zoo_label(style: ZooStyle) -> str:
    """A zoo style's menu label: "witcher (zoo: Photo -> Witcher)" (the pickers add its generator)."""
    return f"{style.name} (zoo: {style.prompt})" if style.prompt else f"{style.name} (zoo)"


def serve_zoo(store: ModelStore, zoo_dir: str | os.PathLike | None) -> ZooGallery | None:
    """Offer the finished styles of the zoo folder ``zoo_dir`` as ready-made styles of ``store`` (values
    ``zoo.<name>``); returns the zoo (for its sheet), or None when there is none to serve. A folder that cannot be
    read, or whose generator this app does not serve, is said in the server log and skipped; so is each style left
    out. Never raises for a bad zoo: the app must start."""
    if zoo_dir is None or not str(zoo_dir).strip():
        return None
    try:
        zoo = read_zoo(zoo_dir)
    except ZooError as exc:
        log(f"warning: {ZOO_SETTING}: {exc} The app starts without the zoo.")
        return None
    if not serves(store, zoo.source):
        known = ", ".join(name for _, name in store.source_choices())
        log(f"warning: {ZOO_SETTING}: the zoo '{zoo.directory.name}' was trained from the generator '{zoo.source}', "
            f"which this app does not serve ({known}); the zoo is skipped.")
        return None
    for line in zoo.skipped:
        log(f"warning: zoo '{zoo.directory.name}': {line}")
    for style in zoo.styles:
        store.add_style_file(ZOO_PREFIX + style.name, zoo_label(style), zoo.source, style.file)
    log(f"zoo '{zoo.directory.name}': {len(zoo.styles)} styles served ({zoo.source}), "
        f"{zoo.unfinished} unfinished and {len(zoo.skipped)} left out.")
    return zoo


def serves(store: ModelStore, source: str) -> bool:
    """True if ``source`` is one of the generators the app offers (never an upload's key or a file)."""
    return store.is_source(source) and not store.is_own(source) and not store.is_local_file(source)


def sheet_title(zoo: ZooGallery) -> str:
    """The Generate tab's accordion title for the zoo's contact sheet."""
    return (f"Zoo sheet: {len(zoo.styles)} styles of '{zoo.source}' (a row each, the source first; columns: fixed "
            "seeds)")


def log(line: str) -> None:
    """A line in the server log (standard output, as the app's other warnings)."""
    print(line, file=sys.stdout, flush=True)


__all__ = ["ZOO_SETTING", "ZOO_PREFIX", "zoo_setting", "zoo_label", "serve_zoo", "serves", "sheet_title"]
