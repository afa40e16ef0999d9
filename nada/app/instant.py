"""The Adapt tab's **Instant** button: a compact style from the Source and Target texts in one forward pass of a
hypernetwork (:mod:`nada.hyper`), with its preview, saved to the session like a finished training run's style; and
**Refine by training**, which trains on from that style's offsets (the compact recipe).

The hypernetwork file is named by the ``NADA_HYPERNET`` setting (or ``build_demo(hypernet=...)``), read once as the
app is built (:func:`serve_hypernet`); only its header is read then. The button shows while the picked source is the
generator the file records; its first use checks the file against that generator's weights (a clear error beside the
button otherwise). A file that cannot be served is said in the server log, and the app starts without the button.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from ..hyper.instant import hypernet_source, hypernet_style
from ..model_store import ModelStore
from ..studio import HYPERNET_SETTING, hypernet_setting
from ..styles import save_style
from ..train import AdaptConfig, PreviewRenderer
from .adapt_tab import AdaptGpu, AdaptOutputs, adapt_stream, check_adapt, check_prompt_texts
from .errors import InputError, user_errors
from .page import display_image
from .sessions import SessionStyles
from .status_line import done_in
from .style_menus import SESSION_PREFIX, invert_choices, style_choices
from .training_queue import TrainingRuns
from .wiring import KEEP, BoundTasks, Outputs
from .zoo_styles import log, serves

INSTANT_GPU_S = 20.0  # GPU seconds an Instant press asks for: loading the file, one pass, a preview (~1 s warm)


@dataclasses.dataclass(frozen=True)
class HypernetOffer:
    """The hypernetwork the app offers: its file and the generator it was trained for (as its header says)."""

    file: Path
    source: str


def serve_hypernet(store: ModelStore, hypernet: str | os.PathLike | None) -> HypernetOffer | None:
    """The hypernetwork to offer from the file ``hypernet`` (None: none), read by its header only; a file that is
    missing or for a generator this app does not serve is said in the server log and skipped (the app must start)."""
    if hypernet is None or not str(hypernet).strip():
        return None
    path = Path(os.fspath(hypernet)).expanduser()
    if not path.is_file():
        log(f"warning: {HYPERNET_SETTING}: the hypernetwork file '{path.name}' does not exist; no Instant button.")
        return None
    source = hypernet_source(path) or store.default_source()
    if not serves(store, source):
        known = ", ".join(name for _, name in store.source_choices())
        log(f"warning: {HYPERNET_SETTING}: '{path.name}' was trained for the generator '{source}', which this app "
            f"does not serve ({known}); no Instant button.")
        return None
    log(f"hypernetwork '{path.name}': instant styles of '{source}'.")
    return HypernetOffer(path.resolve(), source)


def offer_for(store: ModelStore, hypernet: str | os.PathLike | None = None) -> HypernetOffer | None:
    """:func:`serve_hypernet` of ``hypernet``, else of the ``NADA_HYPERNET`` setting."""
    return serve_hypernet(store, hypernet_setting(hypernet))


def shows(offer: HypernetOffer | None, source: str | None) -> bool:
    """True when the Instant button is for ``source`` (a hypernetwork trained for that generator is offered)."""
    return offer is not None and source == offer.source


def instant_button(offer: HypernetOffer | None, source: str | None) -> Any:
    """The Instant button for the picked ``source``: shown only where a hypernetwork for it is offered."""
    return gr.Button(visible=shows(offer, source))


# ------------------------------------------------------------------------------------------- the GPU task
def make_instant(store: ModelStore, source: str, hypernet_file: str, source_text: str, target_text: str,
                 style_file: str, seeds: tuple[int, ...], truncation: float) -> Any:
    """The instant style of the prompt pair, written to ``style_file``; returns the preview grid (source row over
    styled row, the training preview's seeds). The file is checked against ``source``'s weights and CLIP models."""
    generator = store.generator(source)
    style = hypernet_style(store, source, hypernet_file, source_text, target_text)
    save_style(style, style_file)
    offsets = {k: v.to(generator.device) for k, v in style.offsets.items()}  # [in] each
    styled = generator.shared_copy().set_style_offsets(offsets)  # the source's tensors, the style's offsets
    return PreviewRenderer(generator, seeds, truncation)(styled)


@dataclasses.dataclass(frozen=True)
class InstantGpu(BoundTasks):
    """The Instant button's GPU task bound to the store (:class:`~nada.app.wiring.BoundTasks`)."""

    make: Callable

    @classmethod
    def tasks(cls) -> tuple[tuple[Callable, Any], ...]:
        return ((make_instant, lambda args: INSTANT_GPU_S),)


# ------------------------------------------------------------------------------------------------- checks
def check_instant(store: ModelStore, offer: HypernetOffer | None, session: SessionStyles | None, source: str,
                  source_text: str, target_text: str) -> tuple[str, str]:
    """(source text, target text) cleaned, or an :class:`InputError` naming the input: no hypernetwork for the
    picked generator, an empty, equal or over-long prompt. Reads no weights."""
    if offer is None:
        raise InputError("source", f"No hypernetwork is set up for instant styles (the {HYPERNET_SETTING} setting).")
    if source != offer.source:
        raise InputError("source", f"The hypernetwork was trained for '{offer.source}', not '{source}': pick "
                                   f"'{offer.source}' for instant styles, or press Train.")
    check_prompt_texts(source_text, target_text)
    return " ".join(str(source_text).split()), " ".join(str(target_text).split())


def check_refine(store: ModelStore, session: SessionStyles | None, instant_start: str | None, source: str,
                 source_text: str, target_text: str, iterations: Any, layers_k: Any, probe: bool,
                 clip_names: list[str] | None, lambda_direction: Any, lambda_global: Any, lambda_id: Any,
                 lambda_l2: Any, seed: Any, lr: Any, batch_size: Any, recipe: str = "paper", mixing: Any = None,
                 target_pictures: list[Any] | None = None, lambda_indomain: Any = None) -> tuple[AdaptConfig, Path]:
    """(training settings, the instant style's file) to refine the last instant style of this session, or an
    :class:`InputError`: no instant style (or it was dropped), another generator picked, a recipe that trains
    something else than its offsets. The Adapt tab's own checks first (:func:`~nada.app.adapt_tab.check_adapt`)."""
    config = check_adapt(store, session, source, source_text, target_text, iterations, layers_k, probe, clip_names,
                         lambda_direction, lambda_global, lambda_id, lambda_l2, seed, lr, batch_size, recipe, mixing,
                         target_pictures, lambda_indomain)
    kept = session.styles.get(instant_start) if session is not None and instant_start else None
    if kept is None:
        raise InputError("target_text", "No instant style to refine in this session: press Instant first.")
    if kept.source != source:
        raise InputError("source", f"The instant style '{instant_start}' is of '{kept.source}': pick that generator "
                                   "to refine it.")
    if config.params != kept.kind:
        raise InputError("recipe", "Refining an instant style trains its style offsets: pick the Compact recipe.")
    return config, kept.file


# ----------------------------------------------------------------------------------------------- handlers
@dataclasses.dataclass
class InstantOutputs(Outputs):
    """What the Instant button updates; a field left at ``KEEP`` stays as it is."""

    preview: Any = KEEP  # source row over styled row
    status: Any = KEEP  # the line beside the buttons
    style_file: Any = KEEP  # the style's file, to download
    session: Any = KEEP
    generate_style: Any = KEEP  # Generate's picker, the new style picked
    invert_styles: Any = KEEP
    metrics: Any = KEEP  # the last run's figures: cleared (they were another style's)
    instant_start: Any = KEEP  # the session name of the style Refine starts from
    refine: Any = KEEP  # the Refine button, shown once there is an instant style
    recipe: Any = KEEP  # Compact: the recipe Refine trains with (its change sets the fields it needs)


@user_errors
def instant_style(store: ModelStore, offer: HypernetOffer | None, session: SessionStyles, source: str,
                  source_text: str, target_text: str, *, gpu: InstantGpu | None = None) -> InstantOutputs:
    """Make the instant style of the two texts, show its preview and keep it in the session as a trained style is
    kept (Generate picks it; Invert offers it when it fits); Refine can then train on from it."""
    source_text, target_text = check_instant(store, offer, session, source, source_text, target_text)
    gpu = gpu or InstantGpu.direct(store)
    config = AdaptConfig()  # the training preview's seeds and truncation
    t0 = time.perf_counter()
    name, kept, dropped, preview = session.add_written(
        target_text, "instant", lambda tmp: gpu.make(source, str(offer.file), source_text, target_text, str(tmp),
                                                     config.preview_seeds, config.truncation))
    if dropped:
        gr.Warning(f"Dropped the oldest styles of this session to make room: {', '.join(dropped)}.")
    tabs = "Generate and Invert tabs" if source == store.invert_source() else \
        f"Generate tab (photos take styles of '{store.invert_source()}' only)"
    status = (f"{done_in(time.perf_counter() - t0)}. Instant style **{name}** (no training: one pass of the "
              f"hypernetwork): pick it in the {tabs}, download it below, or press **Refine by training** to train on "
              "from it.")
    return InstantOutputs(preview=display_image(preview), status=status, style_file=str(kept.file), session=session,
                          generate_style=gr.Dropdown(choices=style_choices(store, session),
                                                     value=SESSION_PREFIX + name),
                          invert_styles=gr.Dropdown(choices=invert_choices(store, session)), metrics="",
                          instant_start=name, refine=gr.Button(visible=True), recipe="compact")


@user_errors
def refine_stream(store: ModelStore, runs: TrainingRuns, session: SessionStyles, instant_start: str | None,
                  source: str, source_text: str, target_text: str, iterations: Any, layers_k: Any, probe: bool,
                  clip_names: list[str] | None, lambda_direction: Any, lambda_global: Any, lambda_id: Any,
                  lambda_l2: Any, seed: Any, lr: Any, batch_size: Any, recipe: str = "paper", mixing: Any = None,
                  target_pictures: list | None = None, lambda_indomain: Any = None,
                  request: gr.Request | None = None, min_interval_s: float = 0.25, *, gpu: AdaptGpu | None = None
                  ) -> Iterator[AdaptOutputs]:
    """Train as Train does, starting from the offsets of this session's last instant style: the run's style holds
    them plus what training adds (saved as a new style; the instant one stays)."""
    _, start = check_refine(store, session, instant_start, source, source_text, target_text, iterations, layers_k,
                            probe, clip_names, lambda_direction, lambda_global, lambda_id, lambda_l2, seed, lr,
                            batch_size, recipe, mixing, target_pictures, lambda_indomain)
    yield from adapt_stream(store, runs, session, source, source_text, target_text, iterations, layers_k, probe,
                            clip_names, lambda_direction, lambda_global, lambda_id, lambda_l2, seed, lr, batch_size,
                            recipe, mixing, target_pictures, lambda_indomain, request, min_interval_s, gpu=gpu,
                            start=str(start))


__all__ = ["HypernetOffer", "serve_hypernet", "offer_for", "shows", "instant_button", "make_instant", "InstantGpu",
           "check_instant", "check_refine", "InstantOutputs", "instant_style", "refine_stream"]
