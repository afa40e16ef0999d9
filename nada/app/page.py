"""What every tab's page shows the same way: the header and notices, pictures enlarged for display, the photo input,
durations in words, the loading toast of a published style; and the page's own style and script
(``page.css`` and ``page.js`` beside this module, read when the app is built).
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from ..model_store import DEFAULT_CLIPS, INVERT_ASSETS, ModelStore
from ..registry import REGISTRY
from .errors import hide_server_paths
from .style_menus import StyleRef

HERE = Path(__file__).resolve().parent
DISPLAY_MIN = 256  # small (tiny-mode) images are enlarged to this for display


def page_css() -> str:
    """The page's style sheet (``page.css``), for ``launch(css=...)``."""
    return (HERE / "page.css").read_text(encoding="utf-8")


def page_head() -> str:
    """The page's script (``page.js``: text alternatives for every picture, a slider released after keys), as the
    ``<script>`` element for ``launch(head=...)``."""
    return "<script>\n" + (HERE / "page.js").read_text(encoding="utf-8") + "</script>"


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


# ------------------------------------------------------------------------------------------- page helpers
def photo_input(**kwargs: Any) -> gr.Image:
    """A ``gr.Image`` input (upload, webcam, clipboard) whose value reaches the handler undecoded: the uploaded
    file's path (bytes for a ``data:`` URL). Gradio's own decoding fails with a bare "Error" on a file that is not an
    image or on a huge picture; the handler decodes with :func:`nada.images.load_image`, whose messages say what is
    wrong. The page shows the ordinary image input. (The instance's ``preprocess`` is replaced rather than
    subclassed: Gradio writes a ``.pyi`` stub beside the module of every Component subclass it sees.)"""
    image = gr.Image(type="filepath", **kwargs)
    image.preprocess = undecoded_photo
    return image


def undecoded_photo(payload: Any) -> str | bytes | None:
    """An image input's value as it was uploaded (Gradio checked that the file is an upload of this app)."""
    if payload is None:
        return None
    url = getattr(payload, "url", None)
    if isinstance(url, str) and url.startswith("data:"):
        _, _, encoded = url.partition(",")
        try:
            return base64.b64decode(encoded, validate=False)
        except (binascii.Error, ValueError):
            return b""
    return str(payload.path) if payload.path else None


def session_id(request: gr.Request | None) -> str:
    """The browser session behind a request ("local" when called without one, e.g. from tests)."""
    return str(getattr(request, "session_hash", None) or "local")


def display_image(img: Image.Image) -> Image.Image:
    """Enlarge small images (tiny mode) with nearest-neighbour so they are visible in the page."""
    side = min(img.size)
    if side >= DISPLAY_MIN:
        return img
    k = -(-DISPLAY_MIN // side)
    return img.resize((img.width * k, img.height * k), Image.Resampling.NEAREST)


def loading_notice(refs: list[StyleRef | None]) -> None:
    """A toast for each published style, which may need a download first."""
    for ref in refs:
        asset = REGISTRY.get(ref.published) if ref is not None and ref.published else None
        if asset is not None:
            gr.Info(f"Loading the published style '{asset.description or ref.name}' (downloaded once, ~130 MB)...")


def format_seconds(seconds: float) -> str:
    """"42 s" or "3 min 05 s"."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"
