"""Your own generator: an uploaded ``.pkl`` (NVIDIA network pickle) or ``.pt`` (rosinality checkpoint) becomes a
source generator of its browser session, in Adapt and Generate, and nowhere else.

:func:`upload_generator` checks the file before anything changes: its size (:data:`MAX_GENERATOR_FILE_MB`, read off
the file system, so a 2 GB upload is refused unread), its kind, then its content, read as data only (a ``.pt`` with
``weights_only=True``, a pickle by :mod:`nada.nets.nvidia_pickle`'s restricted reader: a file that asks for any other
Python global "may run code" and is refused, and so are class-conditional, discriminator-only, truncated and unknown
networks); every message names the file by its own name. A generator that passes is copied into the session's folder
and served by the model store under a key made from its weights (``own:<fingerprint>``,
:meth:`nada.model_store.ModelStore.add_generator`). The page sends that key back as a value; :func:`session_source`
lets a session use only the keys it uploaded, so a typed or forged value never reaches another session's generator
and never becomes a path. :func:`invert_scope` says which generators photos can be inverted into.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from pathlib import Path
from typing import Any

import gradio as gr

from ..model_store import OWN_PREFIX, ModelStore
from ..nets.nvidia_pickle import NetworkPickleError, describe_generator, read_generator
from ..nets.stylegan2 import Generator
from ..registry import REGISTRY
from ..weights import CheckpointError, generator_from_network, is_network_pickle, load_generator
from .errors import InputError, own_names, user_errors
from .input_checks import check_upload
from .sessions import SessionGenerator, SessionStyles
from .style_menus import (
    NO_STYLE,
    SESSION_PREFIX,
    source_choices,
    source_name,
    style_choices,
    style_source,
)
from .wiring import KEEP, Outputs

MAX_GENERATOR_FILE_MB = 512  # the public 1024 px pickles (G, D and G_ema) are 360-385 MB
GENERATOR_SUFFIXES = (".pkl", ".pt", ".pth")
INVERT_GENERATOR = "FFHQ StyleGAN2 at 1024 px"  # what e4e (the encoder Invert uses) was trained to invert into


# --------------------------------------------------------------------------------------------------- reading
def check_generator_file(file: Any) -> Path:
    """The uploaded file, if it exists, is at most :data:`MAX_GENERATOR_FILE_MB` (its size is read off the file
    system: nothing of it is read) and has a generator's suffix; ``ValueError`` in words otherwise."""
    if not file:
        raise ValueError("Choose a generator file to upload: an NVIDIA network pickle (.pkl, StyleGAN2-ADA) or a "
                         "StyleGAN2 checkpoint in rosinality's layout (.pt).")
    path = check_upload(getattr(file, "name", file), MAX_GENERATOR_FILE_MB, "generator file")
    if path.suffix.lower() not in GENERATOR_SUFFIXES:
        raise ValueError(f"'{path.name}' is not a generator file: upload an NVIDIA network pickle (.pkl) or a "
                         "StyleGAN2 checkpoint (.pt, rosinality's layout with 'g_ema').")
    return path


def read_generator_file(path: Path) -> tuple[Generator, str]:
    """(generator, what the file holds in words) of a checked upload, read as data only: a network pickle by the
    restricted reader (its embedded code is never run), any other file with ``weights_only=True``. Every refusal is a
    :class:`~nada.weights.CheckpointError` naming the file by its own name."""
    name = path.name
    if is_network_pickle(path):
        try:
            module = read_generator(path)
            info = describe_generator(module)
            generator = generator_from_network(module, name)
        except NetworkPickleError as exc:
            raise CheckpointError(str(exc)) from None
        except OSError as exc:
            raise CheckpointError(f"{name} could not be read ({exc.strerror or exc}).") from None
        return generator, f"{info.summary()}; an NVIDIA network pickle, read as data (none of its code ran)"
    generator = load_generator(path)
    return generator, (f"a StyleGAN2 generator, {generator.size} px, {generator.n_latent} W+ rows; a PyTorch "
                       "checkpoint, read as tensors only")


def stored_name(filename: str) -> str:
    """The upload's own name as a file name of the session's folder (letters, digits, ``._-``; its suffix kept)."""
    stem, suffix = os.path.splitext(filename)
    stem = re.sub(r"[^\w.-]", "_", stem).strip("._")[:80] or "generator"
    return stem + (suffix.lower() if suffix.lower() in GENERATOR_SUFFIXES else ".pkl")


def _copy_into(source: Path, dest: Path) -> Path:
    """``source`` at ``dest`` (a hard link where the file system allows, else a copy): the session's own copy, which
    outlives Gradio's upload cache."""
    dest.unlink(missing_ok=True)
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)
    return dest


# -------------------------------------------------------------------------------------------- session sources
def session_source(store: ModelStore, session: SessionStyles | None, source: Any, field: str = "source") -> str:
    """``source`` when this browser session may adapt or draw it: a generator the page offers, or one uploaded in
    this session (by its key); an :class:`InputError` on ``field`` otherwise (a key of another session's upload is
    refused, whatever the store holds). Reads no weights."""
    if isinstance(source, str) and source.startswith(OWN_PREFIX):
        if session is None or session.generator(source) is None or not store.is_own(source):
            raise InputError(field, "That generator was not uploaded in this browser session (or it was dropped to "
                                    "make room): upload it again with 'Your own generator'.")
        return source
    if not isinstance(source, str) or not store.is_source(source) or store.is_own(source):
        names = ", ".join(n for _, n in store.source_choices())
        raise InputError(field, f"Choose a source generator (one of: {names}), or upload your own generator "
                                "(.pkl or .pt).")
    return source


@dataclasses.dataclass
class OwnOutputs(Outputs):
    """What an uploaded generator updates."""

    adapt_source: Any = KEEP  # Adapt's source picker: the upload among the choices (picked, from Adapt)
    generate_style: Any = KEEP  # Generate's style picker: "None: <upload> alone" (picked, from Generate)
    invert_scope: Any = KEEP  # the Invert tab's line on which generators photos can be inverted into
    session: Any = KEEP


@user_errors
def upload_generator(store: ModelStore, session: SessionStyles, own_file: Any, *, pick: str = "adapt"
                     ) -> OwnOutputs:
    """Make an uploaded generator a source of this browser session: checked and read as data first (nothing changes
    when it is refused), then kept in the session's folder and picked in the tab it was uploaded from (``pick``:
    "adapt" picks it as Adapt's source, "generate" draws it alone in Generate)."""
    upload = getattr(own_file, "name", own_file)
    with own_names(upload if isinstance(upload, (str, os.PathLike)) else None):  # messages: the file's own name
        path = check_generator_file(upload)
        generator, summary = read_generator_file(path)
    label = f"your model: {path.name} ({generator.size} px)"
    copy = _copy_into(path, session.generator_file(stored_name(path.name)))
    key = store.add_generator(generator, label, copy)
    dropped = session.keep_generator(SessionGenerator(key=key, file=copy, label=label, summary=summary))
    if dropped:
        gr.Warning(f"Dropped the oldest uploaded generator to make room: {', '.join(dropped)}.")
    where = ("picked as the source generator here; Generate draws it alone as 'None: "
             f"{label} alone'") if pick == "adapt" else ("drawn alone here; the Adapt tab offers it as a source "
                                                         "generator")
    gr.Info(f"{path.name} holds {summary}. It is {where}. Only this browser session sees it.")
    return OwnOutputs(adapt_source=gr.Dropdown(choices=source_choices(store, session),
                                               **({"value": key} if pick == "adapt" else {})),
                      generate_style=gr.Dropdown(choices=style_choices(store, session),
                                                 **({"value": key} if pick == "generate" else {})),
                      invert_scope=invert_scope(store, session, key), session=session)


# ------------------------------------------------------------------------------------------------ Invert's scope
def invertible(store: ModelStore, source: str) -> bool:
    """True for the generator photos are inverted into (e4e's, :meth:`ModelStore.invert_source`)."""
    return source == store.invert_source()


def invert_scope(store: ModelStore, session: SessionStyles | None, adapt_source: Any = None,
                 generate_style: Any = None) -> str:
    """The Invert tab's line on which generators it inverts photos into: e4e's alone (:data:`INVERT_GENERATOR`), and
    in words why the generator picked in Adapt (``adapt_source``) or the one of Generate's style (``generate_style``)
    cannot take photos when it is another one. Reads no weights."""
    target = store.invert_source()
    what = "the tiny 256 px generator (tiny mode)" if store.tiny else f"'{target}' ({INVERT_GENERATOR})"
    text = (f"**Which generators take photos:** e4e inverts a face into {what} only, so Invert offers the styles of "
            "that generator alone.")
    picked = []
    if isinstance(adapt_source, str) and adapt_source:
        picked.append(("Adapt's source", adapt_source))
    if isinstance(generate_style, str) and generate_style not in ("", NO_STYLE):
        picked.append(("Generate's style", _style_generator(store, session, generate_style)))
    for where, source in picked:
        if not source or invertible(store, source):
            continue
        name = source_name(store, session, source)
        if source in REGISTRY and REGISTRY[source].description:
            name = REGISTRY[source].description
        text += (f" {where} is for {name}, another generator: photos cannot be inverted into it (e4e was trained on "
                 f"{INVERT_GENERATOR} faces only); its styles work in Generate.")
    return text


def _style_generator(store: ModelStore, session: SessionStyles | None, choice: str) -> str | None:
    """The generator a style picker's value draws (None when it is unknown here)."""
    if choice.startswith(OWN_PREFIX):
        return choice
    if choice.startswith(SESSION_PREFIX):
        kept = session.styles.get(choice[len(SESSION_PREFIX):]) if session is not None else None
        return style_source(store, kept, session) if kept is not None else None
    published = store.published()
    return published[choice][1] if choice in published else None
