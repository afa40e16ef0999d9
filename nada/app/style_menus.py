"""The style pickers every tab shares: their values, their choices, and where a picked style is.

A picker's value is :data:`NO_STYLE`, a published style's registry name, :data:`SESSION_PREFIX` + the name of a
style of this browser session, or (Generate) the key of a generator uploaded in this session, drawn alone
(``own:<fingerprint>``, :mod:`nada.app.own_models`; a key another session uploaded is refused).
:func:`resolve_style` turns a value into a :class:`StyleRef` (a file path or a
published name, never the weights: it crosses into a GPU worker pickled) and :func:`load_ref` reads the style in the
worker. :func:`style_choices` lists a session's styles and the published ones for a dropdown (each named with its
generator), and :func:`restore_session` fills the pickers with a browser's styles again as the page opens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from ..model_store import OWN_PREFIX, ModelStore
from ..styles import Style, load_style
from .sessions import BrowserSessions, SessionStyle, SessionStyles
from .wiring import Outputs

NO_STYLE = "none"  # style dropdown value: the source generator alone
SESSION_PREFIX = "session:"  # style dropdown values of this session's styles


@dataclass(frozen=True)
class StyleRef:
    """Where a worker finds a style: a session style's file, or a published style's name."""

    name: str  # what the user sees
    source: str  # the generator it applies to
    file: str | None = None  # a .safetensors file (this session's styles)
    published: str | None = None  # a ready-made style's registry name
    alone: bool = False  # no style: the generator ``source`` alone (an uploaded generator picked in Generate)
    source_label: str = ""  # how people know ``source`` when it is an upload ("your model: cats.pkl")

    @property
    def styled(self) -> bool:
        """True when the reference is a style (not a generator drawn alone)."""
        return not self.alone

    def file_label(self) -> str:
        """What names files made with it: the style's name, or "source" for a generator alone."""
        return self.name if self.styled else "source"


def load_ref(store: ModelStore, ref: StyleRef) -> Style:
    """The style a reference points to (checked against its generator when it entered the session); None for a
    generator drawn alone."""
    if ref.alone:
        return None
    if ref.published is not None:
        return store.published_style(ref.published)
    if ref.file is None:
        raise ValueError(f"The style '{ref.name}' has no file.")
    return load_style(ref.file)


def style_source(store: ModelStore, style: Style | SessionStyle, session: SessionStyles | None = None) -> str:
    """The generator a style is applied to: the one it records (an uploaded one only where ``session`` has it), else
    the default source."""
    if isinstance(style.source, str) and style.source.startswith(OWN_PREFIX):
        own = session.generator(style.source) if session is not None else None
        return style.source if own is not None and store.is_own(style.source) else store.default_source()
    return style.source if store.is_source(style.source) else store.default_source()


def source_choices(store: ModelStore, session: SessionStyles | None) -> list[tuple[str, str]]:
    """(label, value) of the Adapt tab's source picker: the generators nada offers, then those uploaded in this
    browser session."""
    own = session.generators if session is not None else {}
    return store.source_choices() + [(kept.label, key) for key, kept in own.items()]


def source_name(store: ModelStore, session: SessionStyles | None, source: str | None) -> str:
    """A generator as people know it: the key for registry generators ("ffhq"), an upload's label ("your model:
    cats.pkl"), or words for an upload this session no longer has."""
    if isinstance(source, str) and source.startswith(OWN_PREFIX):
        own = session.generator(source) if session is not None else None
        return own.label if own is not None else "an uploaded generator that is no longer in this session"
    return str(source)


def page_advice(store: ModelStore) -> str:
    """What a person can do in the page about a style from another generator (the command line names a flag)."""
    sources = ", ".join(f"'{label}'" for label, _ in store.source_choices())
    return (f"A style only works with the generator it was trained from, and this page offers {sources}, and the "
            "generators you upload (Your own generator). Upload a style trained from one of them (for a style of "
            "your own generator, upload that generator first), or train one here: pick the source generator in the "
            "Adapt tab.")


def resolve_style(store: ModelStore, session: SessionStyles | None, choice: str | None) -> StyleRef | None:
    """Where the style chosen in a dropdown is (None: the source generator alone); no weights are read."""
    if not choice or choice == NO_STYLE:
        return None
    if choice.startswith(OWN_PREFIX):
        own = session.generator(choice) if session is not None else None
        if own is None or not store.is_own(choice):
            raise ValueError("That generator was not uploaded in this browser session (or it was dropped to make "
                             "room): upload it again with 'Your own generator'.")
        return StyleRef(own.label, choice, alone=True, source_label=own.label)
    if choice.startswith(SESSION_PREFIX):
        name = choice[len(SESSION_PREFIX):]
        kept = session.styles.get(name) if session is not None else None
        if kept is None:
            raise ValueError(f"The style '{name}' is no longer in this session (it may have been dropped to make "
                             "room, or the page was reloaded). Train or upload it again.")
        source = style_source(store, kept, session)
        if source != kept.source and str(kept.source).startswith(OWN_PREFIX):
            raise ValueError(f"The style '{name}' was trained on your own generator, which is no longer in this "
                             "session: upload that generator again (Your own generator), then pick the style.")
        return StyleRef(name, source, file=str(kept.file), source_label=source_name(store, session, source))
    if choice not in store.published():
        raise ValueError(f"Unknown style '{choice}'.")
    return StyleRef(choice, store.published()[choice][1], published=choice)


def published_label(label: str, source: str) -> str:
    """A published style's label naming its generator: "Witcher (StyleGAN-NADA, from text)" of ffhq -> "Witcher
    (ffhq) · StyleGAN-NADA, from text"."""
    short, _, note = label.partition(" (")
    short, note = short.strip() or label, note.removesuffix(")").strip()
    return f"{short} ({source})" + (f" · {note}" if note else "")


def style_choices(store: ModelStore, session: SessionStyles | None, with_none: bool = True,
                  source: str | None = None) -> list[tuple[str, str]]:
    """(label, value) for the style dropdowns: this session's styles first, then the ready-made ones. Without
    ``source``, every style, each label naming the generator it is for after the style's name ("Witcher (ffhq) ·
    StyleGAN-NADA, from text", "sketch (tiny) · this session: Sketch"): only styles of one generator mix, and a style
    draws the source pictures of its own generator. With ``source``, only the styles of that generator (the Invert
    tab lists those that fit its generator), labelled without it."""
    named = source is None
    out = []
    if with_none:
        out.append((f"None: the source generator alone{f' ({store.default_source()})' if named else ''}", NO_STYLE))
        own = session.generators if session is not None else {}
        out += [(f"None: {kept.label} alone", key) for key, kept in own.items()]
    for name, kept in (list(session.styles.items()) if session else []):
        kept_source = style_source(store, kept, session)
        if not named and kept_source != source:
            continue
        what = kept.meta.get("target_text") or kept.meta.get("imported_from") or ""
        note = f"this session{': ' + str(what) if what else ''}"
        shown = source_name(store, session, kept.source if str(kept.source).startswith(OWN_PREFIX) else kept_source)
        out.append((f"{name} ({shown}) · {note}" if named else f"{name} ({note})", SESSION_PREFIX + name))
    if not named:
        return out + store.published_choices(source)
    return out + [(published_label(label, store.published()[name][1]), name)
                  for label, name in store.published_choices()]


def invert_choices(store: ModelStore, session: SessionStyles | None) -> list[tuple[str, str]]:
    """Styles that fit the inversion generator (for the Invert tab's multi-select): this session's styles of that
    generator (trained, uploaded or mixed), then the published ones."""
    return style_choices(store, session, with_none=False, source=store.invert_source())


# ------------------------------------------------------------------------------ as the page opens (demo.load)
@dataclass
class RestoreOutputs(Outputs):
    """What finding the browser's session again updates."""

    browser_key: str  # the opaque key the browser keeps
    session: SessionStyles
    generate_style: Any  # the style pickers, offering the session's styles
    invert_styles: Any
    adapt_source: Any  # the Adapt tab's source picker, offering the session's own generators


def restore_session(store: ModelStore, sessions: BrowserSessions, browser_key: str | None) -> RestoreOutputs:
    """This browser's session (the same styles after a reload), or a new one with a new key."""
    key, session = sessions.open(browser_key if isinstance(browser_key, str) else None)
    return RestoreOutputs(browser_key=key, session=session,
                          generate_style=gr.Dropdown(choices=style_choices(store, session)),
                          invert_styles=gr.Dropdown(choices=invert_choices(store, session)),
                          adapt_source=gr.Dropdown(choices=source_choices(store, session)))
