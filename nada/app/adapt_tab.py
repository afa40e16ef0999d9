"""The Adapt tab's handlers: train a style in a GPU task while streaming previews, losses, the probed rows and the
status; the training line; recipe choices; what a run costs; the figures at the end."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from typing import Any

import gradio as gr
import pandas as pd

from ..clip_models import JUDGE_CLIP
from ..metrics import LABELS
from ..model_store import DEFAULT_CLIPS, ModelStore
from ..styles import load_style
from ..train import RECIPES, AdaptConfig
from .glue import KEEP, Outputs, display_image, format_seconds, session_id, user_errors
from .gpu_calls import GpuCalls, train_seconds, train_time_limit
from .gpu_tasks import TrainUpdate, style_file_step
from .inputs import SESSION_PREFIX, check_adapt, invert_choices, style_choices, style_source
from .sessions import SessionStyles
from .training_queue import TrainingRuns, TrainingStopped
from .zerogpu import gpu_mode


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


def recipe_settings(recipe: str) -> RecipeOutputs:
    """The Advanced settings a recipe choice sets (rows, probing, CLIP models, mixing, steps, the keep-variety
    weight, the batch and the learning rate)."""
    if recipe not in RECIPES:
        raise gr.Error(f"Unknown recipe '{recipe}'.")
    config = AdaptConfig.from_recipe(recipe)
    steps = KEEP if gpu_mode() == "zero" else config.iterations  # ZeroGPU keeps its quota-sized default
    return RecipeOutputs(layers_k=0, probe=config.layers_k != 0, clip_names=list(config.clip_models),
                         mixing=config.mixing, iterations=steps, lambda_indomain=config.lambda_indomain,
                         batch_size=config.batch_size, lr=config.lr)


def metrics_markdown(metrics: dict | None) -> str:
    """A finished run's figures (:func:`nada.metrics.evaluate`) as a small table under a line that says how they were
    measured: with the CLIP models the run trained against (partly circular), on random samples (empty: none)."""
    if not metrics:
        return ""
    rows = [(f"{_cap(LABELS['clip_target'])}: CLIP similarity to the target text", "clip_target_source",
             "clip_target_adapted"),
            (f"{_cap(LABELS['diversity'])}: mean CLIP distance between images", "diversity_source",
             "diversity_adapted")]
    judges = ", ".join(metrics.get("clip_models") or []) or "the training CLIP models"
    lines = [f"Measured with the CLIP models it trained against ({judges}), so partly circular, on "
             f"{metrics.get('n', '')} random samples at truncation {metrics.get('truncation', 0.7):g}; "
             f"`nada evaluate` judges with a held-out CLIP ({JUDGE_CLIP}). Not the paper's tables.", "",
             "| figure | source | adapted |", "|---|---|---|"]
    lines += [f"| {label} | {metrics[a]:.3f} | {metrics[b]:.3f} |" for label, a, b in rows]
    lines.append(f"| {_cap(LABELS['s_dir'])} (s_dir): the change follows the text | | {metrics['s_dir']:.3f} |")
    if "id" in metrics:
        flag = " (trained with the identity loss: it optimised this)" if metrics.get("id_trained") else ""
        lines.append(f"| {_cap(LABELS['id'])}: ArcFace similarity to the source image{flag} | | "
                     f"{metrics['id']:.3f} |")
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
                 gpu: GpuCalls | None = None) -> Iterator[AdaptOutputs]:
    """Train a style, streaming previews, losses, the layer chart and the status; at the end the style is in the
    session and both style dropdowns offer it. Stop keeps what was trained, and so does a GPU worker stopped at its
    time limit (the style file is saved as training goes). The training itself is a GPU task; the session stays here,
    so a style uploaded meanwhile is kept."""
    gpu = gpu or GpuCalls.direct(store)
    config = check_adapt(store, session, source, source_text, target_text, iterations, layers_k, probe, clip_names,
                         lambda_direction, lambda_global, lambda_id, lambda_l2, seed, lr, batch_size, recipe,
                         mixing, target_pictures, lambda_indomain)  # before any output changes or any loading
    clips = list(config.clip_models)
    if gpu_mode() is not None:  # the worker is stopped at its granted duration: end cleanly a little before
        config = dataclasses.replace(config, time_limit_s=train_time_limit(config, clips))
    sid = session_id(request)
    try:
        for ahead in runs.waiting(sid):  # returns at once when nobody trains; refuses a second run of this session
            yield AdaptOutputs(status=waiting_status(ahead), train=train_button(True))
    except TrainingStopped:
        yield AdaptOutputs(status="Left the line before training started; nothing was trained.",
                           train=train_button(False))
        return
    yield AdaptOutputs(status="Loading the models...", train=train_button(True))
    rows: list[dict] = []
    bars = _layer_frame(None, None)
    last: TrainUpdate | None = None
    halted = None
    meta = {"source": source, "source_text": config.source_text, "target_text": config.target_text}
    with runs.slot(sid, config.iterations) as run:
        style_file = session.scratch(f".training-{uuid.uuid4().hex[:12]}.safetensors")
        try:
            shown = 0.0
            for upd in gpu.train(source, config, clips, str(style_file), meta, run.stop_event):
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
                                   losses=pd.DataFrame(rows), layers=bars, status=status)
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
        style = load_style(style_file)
        style_file.unlink(missing_ok=True)
    name = session.unique_name(config.target_text or "image-style")
    path, dropped = session.add(name, style)
    if dropped:
        gr.Warning(f"Dropped the oldest styles of this session to make room: {', '.join(dropped)}.")
    if halted:
        gr.Warning(f"{halted} The style was kept from step {steps}.")
    elif last is not None and last.error:
        gr.Warning(f"{last.error} The style was kept from step {steps}.")
    how = "finished" if steps == config.iterations else f"stopped at step {steps}/{config.iterations}"
    took = f" in {format_seconds(last.elapsed_s)}" if last is not None else ""
    tabs = "Generate and Invert tabs" if style_source(store, style) == store.invert_source() else "Generate tab"
    status = f"Training {how}{took}. Saved the style **{name}**: pick it in the {tabs}, or download it below."
    yield AdaptOutputs(losses=pd.DataFrame(rows), layers=bars, status=status, style_file=str(path), session=session,
                       train=train_button(False),
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
