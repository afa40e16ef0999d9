"""The Adapt tab: train a style from a source text and a target text (or target pictures), streaming previews,
losses, the probed rows and the status; the line of runs waiting for the GPU; recipe choices; what a run costs; the
figures at the end.

:func:`adapt_stream` checks the tab's values (:func:`check_adapt`, also run by the page before the event), waits its
turn in the training line (:mod:`nada.app.training_queue`), then streams the training GPU task (:class:`AdaptGpu`:
:func:`train_style`, a module-level function of the model store that writes the style file as it goes, so a worker
stopped at its time limit loses at most one preview interval). The finished file is moved into the session.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from .. import limits
from ..clip_loss import IMAGENET_TEMPLATES, tokenize
from ..clip_models import JUDGE_CLIP
from ..images import ImageInputError
from ..metrics import LABELS, Evaluation
from ..model_store import DEFAULT_CLIPS, ModelStore
from ..nets.rows import rows_label
from ..style_trainer import StyleTrainer
from ..styles import load_style, read_style_meta
from ..target_images import load_target_images
from ..train import RECIPES, AdaptConfig, Progress
from .errors import InputError, hide_upload_paths, user_errors
from .input_checks import number_value, on_field, seed_value, unit_value
from .own_models import session_source
from .page import display_image, format_seconds, session_id
from .sessions import SessionStyles
from .status_line import done_in
from .style_menus import SESSION_PREFIX, invert_choices, style_choices, style_source
from .training_queue import TrainingRuns, TrainingStopped
from .wiring import KEEP, BoundTasks, Outputs
from .zerogpu import gpu_mode

MAX_BATCH = 8  # training batch size (the Batch size slider's maximum)
MAX_LOSS_WEIGHT = 2.0  # the loss-weight sliders' maximum
MAX_INDOMAIN_WEIGHT = 10.0  # the in-domain ("keep variety") weight slider's maximum (the "diverse" recipe: 1)
METRICS_SAMPLES = 16  # images per generator for the figures shown when a run ends (seconds on a GPU) ...
METRICS_SAMPLES_CPU = 4  # ... and on a CPU, where 16 at 1024 px took ~100 s (python -m bench.rehearsal)


# ------------------------------------------------------------------------------------------- the GPU task
def train_style(store: ModelStore, source: str, config: AdaptConfig, style_file: str, meta: dict,
                stop: Any = None, start_file: str | None = None) -> Iterator[Progress]:
    """Adapt ``source`` with ``config`` through the library's coordinator (:class:`~nada.style_trainer.StyleTrainer`),
    streaming its :class:`~nada.train.Progress` records without their weights (they cross from the GPU worker,
    pickled). The style is written to ``style_file`` at every preview and at the end, so a worker stopped at its time
    limit loses at most one preview interval; the last record carries the figures measured with the training CLIPs.
    ``stop``: an object with ``is_set()`` (a :class:`~nada.app.training_queue.StopFlag` crosses processes).
    ``start_file``: a compact style file (an instant style) whose offsets training starts from."""
    start = load_style(start_file) if start_file else None
    trainer = StyleTrainer(store, source, config, meta=meta, stop=stop, start=start)
    n = METRICS_SAMPLES if trainer.generator.device.type == "cuda" else METRICS_SAMPLES_CPU
    for rec in trainer.run(style_every=0, style_file=style_file, metrics_samples=n):
        yield dataclasses.replace(rec, generator=None, style=None)


def style_file_step(path: str | Path) -> int:
    """The number of steps a saved training style holds (0 when there is none), read from its header."""
    try:
        return int(read_style_meta(path).get("steps") or 0)
    except Exception:  # not written yet, or cut off by the worker's end: nothing to keep
        return 0


GPU_SETUP_S = 30.0  # worker start, moving the models to the GPU, text directions, the first preview
S_PER_STEP = 0.6  # one step at 1024 px, batch 2, two CLIP models, no probe, on a ZeroGPU slice: an estimate until
#                   bench/gpu_check.sh measures it (probing about doubles it; one CLIP model saves about a third)
ZERO_GPU_DEFAULT_STEPS = 100  # ~90 s of GPU time: inside a free account's daily ZeroGPU quota (about 3.5 min)
MAX_GPU_S = 1800.0  # the most GPU time a run asks for


def train_seconds(iterations: int, probe: bool, n_clips: int) -> float:
    """Estimated GPU seconds of a training run (setup included)."""
    per_step = S_PER_STEP * (2.0 if probe else 1.0) * (0.67 + 0.33 * max(1, n_clips) / 2)
    return min(GPU_SETUP_S + per_step * iterations, MAX_GPU_S)


def adapt_duration(args: dict) -> float:
    """GPU seconds to ask for a training run (arguments of :func:`train_style`)."""
    config = args.get("config")
    if not isinstance(config, AdaptConfig):
        return 60 + S_PER_STEP * 300
    return train_seconds(config.iterations, config.probing(), len(config.clip_models))


def train_time_limit(config: AdaptConfig) -> float:
    """When training must end to leave the worker time to save and return: a margin under the granted duration."""
    granted = adapt_duration({"config": config})
    return max(5.0, granted - max(10.0, 0.1 * granted))


@dataclasses.dataclass(frozen=True)
class AdaptGpu(BoundTasks):
    """The tab's GPU task bound to the store (:class:`~nada.app.wiring.BoundTasks`)."""

    train: Callable

    @classmethod
    def tasks(cls) -> tuple[tuple[Callable, Any], ...]:
        return ((train_style, adapt_duration),)


# ------------------------------------------------------------------------------------------------- checks
def adapt_config(iterations: Any, layers_k: Any, probe: bool, lambda_direction: Any, lambda_global: Any,
                 lambda_id: Any, lambda_l2: Any, seed: Any, lr: Any, batch_size: Any, source_text: str,
                 target_text: str, n_latent: int, recipe: str = "paper", mixing: Any = None,
                 clip_names: list[str] | None = None, max_iterations: int = limits.MAX_ITERATIONS,
                 target_pictures: list[Any] | None = None, lambda_indomain: Any = None,
                 source: str | None = None) -> AdaptConfig:
    """The :class:`AdaptConfig` for the Adapt tab's values on top of ``recipe`` (and ``source``'s published values
    for it, :data:`nada.train.SOURCE_RECIPES`), every value checked (an
    :class:`InputError` naming the input; nothing is clamped or rounded). ``layers_k`` 0 keeps the recipe's rows;
    ``probe`` off trains every convolution. ``target_pictures`` (uploaded files): image-guided, the text optional.
    ``lambda_indomain`` None keeps the recipe's in-domain weight."""
    if recipe not in RECIPES:
        raise InputError("recipe", f"Choose a recipe ({', '.join(RECIPES)}).")
    iters = on_field("iterations", lambda: limits.iterations(iterations, max_iterations))
    k = int(on_field("layers_k", lambda: limits.whole_number(layers_k or 0, "W+ rows trained per step", 0, n_latent)))
    batch = on_field("batch_size", lambda: limits.whole_number(batch_size, "Batch size", 1, MAX_BATCH))
    names = {"lambda_direction": "The directional loss weight", "lambda_global": "The global loss weight",
             "lambda_id": "The identity loss weight", "lambda_l2": "The L2 loss weight"}
    lams = [number_value(v, what, name, 0.0, MAX_LOSS_WEIGHT)
            for v, (name, what) in zip((lambda_direction, lambda_global, lambda_id, lambda_l2), names.items())]
    if lams[0] + lams[1] <= 0:
        raise InputError("lambda_direction", "At least one CLIP loss (directional or global weight) must be on.")
    published = AdaptConfig.from_recipe(recipe, source)
    indomain = published.lambda_indomain if lambda_indomain is None else \
        number_value(lambda_indomain, "The keep-variety (in-domain) loss weight", "lambda_indomain", 0.0,
                MAX_INDOMAIN_WEIGHT)
    if indomain > 0 and batch < 2:
        raise InputError("batch_size", "The keep-variety (in-domain) loss compares pairs of samples: set the batch "
                                       "size to 2 or more, or its weight to 0.")
    lr = on_field("lr", lambda: limits.learning_rate(lr))
    mix = (published.mixing if mixing is None
           else unit_value(mixing, "Style mixing", "mixing"))
    pictures: tuple = ()
    if target_pictures:  # decoded and checked here, before any model loads
        files = [getattr(f, "name", f) for f in target_pictures]  # gr.File gives paths (or objects with .name)
        try:
            pictures = tuple(load_target_images(files))
        except ImageInputError as exc:  # named by their own names, never the server's temp paths
            raise InputError("target_pictures", hide_upload_paths(str(exc), [Path(f) for f in files])) from None
    check_prompt_texts(source_text, target_text, bool(pictures))
    rows = {"layers_k": 0} if not probe else {"layers_k": k if k > 0 else published.layers_k}
    clips = {"clip_models": tuple(clip_names)} if clip_names else {}
    config = AdaptConfig.from_recipe(
        recipe, source, source_text=str(source_text or "").strip(), target_text=str(target_text or "").strip(),
        iterations=iters, batch_size=batch, lr=lr, probe_iters=1, lambda_direction=lams[0], lambda_global=lams[1],
        lambda_id=lams[2], lambda_l2=lams[3], lambda_indomain=indomain, seed=seed_value(seed), mixing=mix,
        preview_every=max(1, iters // 10),
        target_images=pictures, **rows, **clips)
    on_field("target_text", lambda: config.validate(n_latent))  # anything the checks above missed
    return config


def check_prompt_texts(source_text: Any, target_text: Any, pictures: bool = False) -> None:
    """The Source and Target texts, or an :class:`InputError` whose words name the field at fault (the page also
    shows them beside Train, far from the fields): empty, the same, or too long for CLIP. With target ``pictures``
    the target text is optional."""
    source, target = str(source_text or "").strip(), str(target_text or "").strip()
    if not source:
        raise InputError("source_text", "Source text is empty: type what the source generator shows, e.g. 'Photo'.")
    if not target and not pictures:
        raise InputError("target_text", "Target text is empty: type what to adapt to, e.g. 'Witcher' (or add "
                                        "target pictures).")
    if target and " ".join(source.split()).casefold() == " ".join(target.split()).casefold():
        raise InputError("target_text", f"Source text and Target text are the same ({source!r}): the target names "
                                        "the new domain, e.g. 'Witcher'.")
    try:  # too long for CLIP, also inside the prompt templates training reads them in: the library's words
        for text, what in ((source, "source prompt"), (target, "target prompt")):
            if text:
                tokenize([template.format(text) for template in IMAGENET_TEMPLATES], what)
    except ValueError as exc:
        field = "source_text" if "source prompt" in str(exc) else "target_text"
        text = str(exc).replace("The source prompt", "Source text").replace("The target prompt", "Target text")
        raise InputError(field, text) from None


FIELD_PLACES = {name: "in Advanced settings" for name in (  # where an Adapt input is, when it may be out of sight
    "layers_k", "probe", "clip_names", "mixing", "lambda_direction", "lambda_global", "lambda_id", "lambda_l2",
    "lambda_indomain", "seed", "lr", "batch_size")} | {"target_pictures": "in Target pictures (optional)"}


def max_steps(store: ModelStore) -> int:
    """The most training steps one run of the app may take: 1000 with the real models (a run must fit a shared
    GPU's time), the command line's limit with the tiny ones (a tiny step takes milliseconds)."""
    return limits.MAX_ITERATIONS if store.tiny else 1000


def check_adapt(store: ModelStore, session: SessionStyles | None, source: str, source_text: str, target_text: str,
                iterations: Any, layers_k: Any, probe: bool, clip_names: list[str] | None, lambda_direction: Any,
                lambda_global: Any, lambda_id: Any, lambda_l2: Any, seed: Any, lr: Any, batch_size: Any,
                recipe: str = "paper", mixing: Any = None, target_pictures: list[Any] | None = None,
                lambda_indomain: Any = None) -> AdaptConfig:
    """The training settings of the Adapt tab's values (:func:`adapt_config`), or an :class:`InputError` naming the
    input. Cheap: reads no weights (the page runs it before the event)."""
    source = session_source(store, session, source)  # a generator offered, or one this session uploaded
    if not store.tiny and not clip_names:
        raise InputError("clip_names", "Choose at least one CLIP model in Advanced settings.")
    return adapt_config(iterations, layers_k, probe, lambda_direction, lambda_global, lambda_id, lambda_l2, seed, lr,
                        batch_size, source_text, target_text, store.generator_rows(source), recipe, mixing,
                        clip_names, max_iterations=max_steps(store), target_pictures=target_pictures,
                        lambda_indomain=lambda_indomain, source=source)


# ----------------------------------------------------------------------------------------------- handlers
@dataclasses.dataclass
class AdaptOutputs(Outputs):
    """What a training stream updates; a field left at ``KEEP`` stays as it is."""

    preview: Any = KEEP  # source row over adapted row
    losses: Any = KEEP  # DataFrame step, loss, term
    layers: Any = KEEP  # DataFrame row, score, trains
    status: Any = KEEP  # Markdown
    style_file: Any = KEEP  # the trained style's file
    session: Any = KEEP  # SessionStyles, once the style is in it
    generate_style: Any = KEEP  # Generate dropdown with the new style selected
    invert_styles: Any = KEEP  # Invert multi-select
    metrics: Any = KEEP  # Markdown: the run's figures once training ends (training CLIPs, said so)
    rows_note: Any = KEEP  # Markdown under the rows chart: why there is no chart (no probe: every row trains)
    train: Any = KEEP  # the Train button: "Training…" and not pressable while this session trains or waits


@dataclasses.dataclass
class RecipeOutputs(Outputs):
    """The Advanced settings a recipe choice sets."""

    layers_k: Any = KEEP
    probe: Any = KEEP
    clip_names: Any = KEEP
    mixing: Any = KEEP
    iterations: Any = KEEP
    lambda_indomain: Any = KEEP  # the keep-variety weight ("diverse": on)
    batch_size: Any = KEEP  # the recipe's batch ("diverse" needs pairs)
    lr: Any = KEEP  # the recipe's learning rate ("compact": 0.05; the paper's 0.002 would barely move the offsets)
    recipe_note: Any = KEEP  # Markdown beside the picker: which fields the recipe set, and to what


LOSS_NAMES = {"direction": "directional CLIP", "global": "global CLIP", "id": "identity", "l2": "L2",
              "indomain": "keep variety (in-domain)", "total": "total"}  # the loss chart's legend


def loss_rows(step: int, losses: dict[str, float]) -> list[dict]:
    """Loss-chart rows of one step: each weighted term and the total, or a single "loss" line when only one term is
    on (its total is the same number, and two identical lines would hide each other)."""
    terms = [t for t in losses if t != "total"]
    if len(terms) <= 1:
        value = losses.get("total", losses[terms[0]] if terms else None)
        return [] if value is None else [{"step": step, "loss": float(value), "term": "loss"}]
    return [{"step": step, "loss": float(v), "term": LOSS_NAMES.get(t, t)} for t, v in losses.items()]


def train_button(busy: bool) -> gr.Button:
    """The Train button: "Training…" and not pressable while a run of this session goes or waits."""
    return gr.Button("Training…" if busy else "Train", interactive=not busy)


def train_button_state(runs: TrainingRuns, request: gr.Request | None = None) -> gr.Button:
    """The Train button after a run's event ends (also a refused or failed one): pressable again unless this session
    still trains or waits (a second Enter in the target text must not re-enable it while the first run goes)."""
    return train_button(runs.involves(session_id(request)))


def waiting_status(ahead: int) -> str:
    """The status line of a run waiting for the training slot."""
    runs_ahead = "1 training run is" if ahead == 1 else f"{ahead} training runs are"
    return (f"Waiting in line: {runs_ahead} ahead of yours (you are **number {ahead + 1}**). Training starts by "
            "itself when its turn comes; keep this page open. Stop leaves the line.")


EVERY_ROW = ("**W+ rows:** no probe runs with these settings: {rows} trains at each step, so there is no probe "
             "chart.")
PROBED_ROWS = "**W+ rows:** the probe picks the rows each step; the chart shows its latest choice."


def probes_rows(config: AdaptConfig, n_rows: int | None) -> bool:
    """True when a run with ``config`` probes which W+ rows train (a choice among the rows, not all of them)."""
    if n_rows is None:
        return config.probing()
    return config.probing() and config.resolved_layers_k(n_rows) < n_rows - len(config.frozen(n_rows))


def rows_chart(probed: bool, frozen: str | tuple = ()) -> tuple[gr.BarPlot, str]:
    """(the rows chart, the line under it) as a run starts: an empty chart waiting for the first probe, or no chart
    and a line saying that every row trains, but the ``frozen`` ones (an empty chart drew a "NaN" legend)."""
    if probed:
        return gr.BarPlot(value=None, visible=True), PROBED_ROWS
    return gr.BarPlot(value=None, visible=False), every_row_line(frozen)


def every_row_line(frozen: str | tuple = ()) -> str:
    """The line under the (hidden) rows chart of a run without probe: every row trains, but the ``frozen`` ones."""
    return EVERY_ROW.format(rows=f"every row but the {rows_label(frozen)}, which stay frozen," if frozen
                            else "every row")


def _layer_frame(scores: list[float] | None, rows: list[int] | None) -> pd.DataFrame:
    """Bar-chart data: one bar per W+ row, its probe score, and whether the probe chose it this step."""
    if not scores:
        return pd.DataFrame({"row": [], "score": [], "trains": []})
    chosen = set(rows or [])
    return pd.DataFrame({"row": [f"w{i}" for i in range(len(scores))], "score": [float(s) for s in scores],
                         "trains": ["trained" if i in chosen else "frozen" for i in range(len(scores))]})


def picture_thumbnails(target_pictures: list | None) -> list:
    """The uploaded target pictures, shown small under the upload (their files; decoding is checked at Train)."""
    return [getattr(f, "name", f) for f in (target_pictures or [])]


def recipe_settings(recipe: str, source: str | None = None) -> RecipeOutputs:
    """The Advanced settings a recipe choice sets (rows, probing, CLIP models, mixing, steps, the keep-variety
    weight, the batch and the learning rate), with ``source``'s published values for it where it has some."""
    if recipe not in RECIPES:
        raise gr.Error(f"Unknown recipe '{recipe}'.")
    config = AdaptConfig.from_recipe(recipe, source)
    steps = KEEP if gpu_mode() == "zero" else config.iterations  # ZeroGPU keeps its quota-sized default
    return RecipeOutputs(layers_k=0, probe=config.probing(), clip_names=list(config.clip_models),
                         mixing=config.mixing, iterations=steps, lambda_indomain=config.lambda_indomain,
                         batch_size=config.batch_size, lr=config.lr,
                         recipe_note=recipe_note(recipe, config, steps_set=steps is not KEEP))


RECIPE_HINT = "A recipe sets Training steps and Advanced settings; this line says what it set."


def recipe_note(recipe: str, config: AdaptConfig, steps_set: bool = True) -> str:
    """The line beside the recipe picker once a recipe is picked: its name and every field it set, with the value
    ("**Compact** set: Training steps 301 · Learning rate 0.05 · ...")."""
    if not config.probing():
        rows = "no probe (the constant input and every convolution)" if config.params == "weights" else \
            "no probe (every convolution)"
    elif config.layers_k is None:
        rows = "every row"
    elif config.layers_k == 0:
        rows = "no probe (the constant input and every convolution)"
    elif isinstance(config.layers_k, float) and 0 < config.layers_k < 1:
        rows = f"the {Fraction(config.layers_k).limit_denominator(12)} the probe picks"
    else:
        rows = f"the {config.layers_k} the probe picks"
    fields = [f"Training steps {config.iterations}" if steps_set else "Training steps unchanged (ZeroGPU quota)",
              f"Learning rate {config.lr:g}", f"Batch size {config.batch_size}", f"Style mixing {config.mixing:g}",
              f"Keep variety {config.lambda_indomain:g}", f"W+ rows: {rows}",
              f"CLIP models {', '.join(config.clip_models)}"]
    if config.frozen_rows:
        fields.append(f"{config.frozen_rows} rows frozen")
    if config.train_to_rgb:
        fields.append("ToRGB layers train too")
    if config.params != "weights":
        fields.append("trains the style offsets only (a small file)")
    name = RECIPES[recipe].description.split(":")[0]
    return f"**{name}** set: " + " · ".join(fields)


def metrics_markdown(metrics: Evaluation | None) -> str:
    """A finished run's figures (:class:`nada.metrics.Evaluation`) as a small table under a line that says how they
    were measured: with the CLIP models the run trained against (partly circular), on random samples (empty: none)."""
    if metrics is None:
        return ""
    rows = [(f"{_cap(LABELS['clip_target'])}: CLIP similarity to the target text", metrics.clip_target_source,
             metrics.clip_target_adapted),
            (f"{_cap(LABELS['diversity'])}: mean CLIP distance between images", metrics.diversity_source,
             metrics.diversity_adapted)]
    judges = ", ".join(metrics.judge) or "the training CLIP models"
    lines = [f"Measured with the CLIP models it trained against ({judges}), so partly circular, on "
             f"{metrics.n} random samples at truncation {metrics.truncation:g}; "
             f"`nada evaluate` judges with a held-out CLIP ({JUDGE_CLIP}). Not the paper's tables.", "",
             "| figure | source | adapted |", "|---|---|---|"]
    lines += [f"| {label} | {a:.3f} | {b:.3f} |" for label, a, b in rows]
    lines.append(f"| {_cap(LABELS['s_dir'])} (s_dir): the change follows the text | | {metrics.s_dir:.3f} |")
    if metrics.id is not None:
        flag = " (trained with the identity loss: it optimised this)" if metrics.id_trained else ""
        lines.append(f"| {_cap(LABELS['id'])}: ArcFace similarity to the source image{flag} | | {metrics.id:.3f} |")
    return "\n".join(lines)


def _cap(label: str) -> str:
    """The label with its first letter upper-case (``str.capitalize`` would lower "CLIP")."""
    return label[:1].upper() + label[1:]


@user_errors
def adapt_stream(store: ModelStore, runs: TrainingRuns, session: SessionStyles, source: str, source_text: str,
                 target_text: str, iterations: Any, layers_k: Any, probe: bool, clip_names: list[str] | None,
                 lambda_direction: Any, lambda_global: Any, lambda_id: Any, lambda_l2: Any, seed: Any, lr: Any,
                 batch_size: Any, recipe: str = "paper", mixing: Any = None, target_pictures: list | None = None,
                 lambda_indomain: Any = None, request: gr.Request | None = None, min_interval_s: float = 0.25, *,
                 gpu: AdaptGpu | None = None, start: str | None = None) -> Iterator[AdaptOutputs]:
    """Train a style, streaming previews, losses, the layer chart and the status; at the end the style is in the
    session and both style dropdowns offer it. Stop keeps what was trained, and so does a GPU worker stopped at its
    time limit (the style file is saved as training goes). The training itself is a GPU task; the session stays here,
    so a style uploaded meanwhile is kept. ``start``: a compact style's file training starts from (Refine,
    :mod:`nada.app.instant`)."""
    gpu = gpu or AdaptGpu.direct(store)
    config = check_adapt(store, session, source, source_text, target_text, iterations, layers_k, probe, clip_names,
                         lambda_direction, lambda_global, lambda_id, lambda_l2, seed, lr, batch_size, recipe,
                         mixing, target_pictures, lambda_indomain)  # before any output changes or any loading
    if gpu_mode() is not None:  # the worker is stopped at its granted duration: end cleanly a little before
        config = dataclasses.replace(config, time_limit_s=train_time_limit(config))
    sid = session_id(request)
    try:
        for ahead in runs.waiting(sid):  # returns at once when nobody trains; refuses a second run of this session
            yield AdaptOutputs(status=waiting_status(ahead), train=train_button(True))
    except TrainingStopped:
        yield AdaptOutputs(status="Left the line before training started; nothing was trained.",
                           train=train_button(False))
        return
    probed = probes_rows(config, store.generator_rows(source))
    chart, rows_line = rows_chart(probed, config.frozen_rows)
    # A new run starts on a clean slate: the previous run's pictures, charts, figures and file go.
    yield AdaptOutputs(status="Loading the models...", train=train_button(True), preview=None, losses=None,
                       layers=chart, rows_note=rows_line, metrics="", style_file=None)
    rows: list[dict] = []
    bars: pd.DataFrame | None = None  # the latest probe's chart (None until a probe has run)
    last: Progress | None = None
    halted = None
    meta = {"source": source, "source_text": config.source_text, "target_text": config.target_text}
    with runs.slot(sid, config.iterations) as run:
        style_file = session.scratch(f".training-{uuid.uuid4().hex[:12]}.safetensors")
        try:
            shown = 0.0
            for upd in gpu.train(source, config, str(style_file), meta, run.stop_event, *([start] if start else [])):
                last = upd
                runs.beat(run, upd.step)
                for text in upd.warnings:
                    gr.Warning(text)
                rows += loss_rows(upd.step, upd.losses)
                if upd.scores:
                    bars = _layer_frame(upd.scores, upd.rows)
                now = time.monotonic()
                if upd.preview is None and not upd.done and now - shown < min_interval_s:
                    continue
                shown = now
                stopping = " · stopping after this step" if upd.stopping else ""
                loss = upd.losses.get("total", float("nan"))
                status = (f"Step **{upd.step}/{upd.total}** · {format_seconds(upd.elapsed_s)} elapsed · about "
                          f"{format_seconds(upd.eta_s)} left · loss {loss:.4f}{stopping}")
                yield AdaptOutputs(preview=display_image(upd.preview) if upd.preview is not None else KEEP,
                                   losses=pd.DataFrame(rows), layers=KEEP if bars is None else bars, status=status)
        except Exception as exc:  # the worker failed or was stopped: keep what it saved, if anything
            if style_file_step(style_file) == 0:
                style_file.unlink(missing_ok=True)
                raise
            halted = str(getattr(exc, "message", None) or exc)
        steps = style_file_step(style_file)
        if steps == 0:
            style_file.unlink(missing_ok=True)
            yield AdaptOutputs(status="Stopped before the first step finished; nothing to save.",
                               train=train_button(False))
            return
    name = session.unique_name(config.target_text or "image-style")
    kept, dropped = session.add_file(name, style_file)  # moved into place, not read again
    if dropped:
        gr.Warning(f"Dropped the oldest styles of this session to make room: {', '.join(dropped)}.")
    if halted:
        gr.Warning(f"{halted} The style was kept from step {steps}.")
    elif last is not None and last.error:
        gr.Warning(f"{last.error} The style was kept from step {steps}.")
    how = f"finished ({steps}/{steps} steps)" if steps == config.iterations else \
        f"stopped at step {steps}/{config.iterations}"
    done = done_in(last.elapsed_s) if last is not None else "Done"
    tabs = ("Generate and Invert tabs" if style_source(store, kept, session) == store.invert_source() else
            f"Generate tab (photos take styles of '{store.invert_source()}' only)")
    status = f"{done}. Training {how}. Saved the style **{name}**: pick it in the {tabs}, or download it below."
    no_probe = bars is None  # no probe ran (or none finished): no chart, in words
    yield AdaptOutputs(losses=pd.DataFrame(rows), layers=gr.BarPlot(visible=False) if no_probe else bars,
                       rows_note=every_row_line(config.frozen_rows) if no_probe else KEEP, status=status,
                       style_file=str(kept.file),
                       session=session, train=train_button(False),
                       metrics=metrics_markdown(last.metrics if last is not None and not halted else None),
                       generate_style=gr.Dropdown(choices=style_choices(store, session), value=SESSION_PREFIX + name),
                       invert_styles=gr.Dropdown(choices=invert_choices(store, session)))


def run_cost(iterations: Any, probe: bool, clip_names: list[str] | None, layers_k: Any = 0,
             recipe: str = "paper") -> str:
    """A line under the Train button: what a run will cost in GPU time (on ZeroGPU, against the daily quota)."""
    if gpu_mode() != "zero":
        return ""  # elsewhere there is no quota to speak of
    try:
        k = int(layers_k or 0)
        rows = k if k > 0 else RECIPES[recipe].settings.get("layers_k")
        probing = bool(probe) and rows is not None and rows != 0 and not (isinstance(rows, int) and rows >= 18)
        seconds = train_seconds(int(iterations), probing, len(clip_names or DEFAULT_CLIPS))
    except (TypeError, ValueError, KeyError):
        return ""
    return (f"This run asks ZeroGPU for about **{format_seconds(seconds)}** of GPU time. Free accounts get about "
            "3.5 min a day (2 min without an account); fewer steps or one CLIP model cost less.")


def stop_training(runs: TrainingRuns, request: gr.Request | None = None) -> str:
    """Ask this session's training run to stop after its current step (the style is kept), or take it out of the
    line when it waits. Output: status text."""
    sid = session_id(request)
    waiting = runs.is_waiting(sid)
    if runs.stop(sid):
        return ("Leaving the line..." if waiting else
                "Stopping after the current step; the style trained so far will be saved...")
    gr.Info("Nothing is training in this session.")
    return gr.skip()
