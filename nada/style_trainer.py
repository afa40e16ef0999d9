"""Training a style, end to end: the one coordinator that ``nada.Studio.adapt``, the app and ``nada adapt`` share.

A :class:`StyleTrainer` loads what a run needs through a :class:`~nada.model_store.ModelStore` (the source generator,
the CLIP models, ArcFace when the identity loss applies), checks the settings, runs :func:`nada.train.adapt` and
passes its :class:`~nada.train.Progress` records on with the trained weights as a ready-to-save
:class:`~nada.styles.Style` (``.style``), saved to a file as it goes when asked (``.saved_step``), and the finished
run's figures when asked (``.metrics``). One rule decides the identity loss (:meth:`StyleTrainer.identity_rule`), one
the style's metadata (the config's own ``mode``).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from .metrics import Evaluation, evaluate
from .model_store import ModelStore
from .probe import OFFSET_BUFFERS
from .styles import Style, save_style, style_from_generators, verify_source
from .train import AdaptConfig, Progress, adapt
from .weights import CheckpointError, WeightsUnavailableError


class StyleTrainer:
    """One training run of a style from ``source`` with ``config``; models load (and settings are checked) here.

    ``clip_weights``: one weight per ``config.clip_models`` entry (default all 1; weight 0 drops a model). ``meta``:
    extra metadata for the style (e.g. the app's display name). ``stop``: anything with ``is_set()`` (a
    ``threading.Event``; the app's cross-process flag); set, it ends training after the current step. After
    construction, :attr:`config` is the config that runs (the identity weight 0 where it cannot apply) and
    :attr:`warnings` says why it differs from the one given. ``start``: a compact style of ``source`` (an instant
    style) whose offsets training starts from; the run's style holds them plus what training added."""

    def __init__(self, store: ModelStore, source: str, config: AdaptConfig, *, clip_weights: Sequence[float] | None
                 = None, meta: dict | None = None, stop: threading.Event | Any | None = None,
                 start: Style | None = None) -> None:
        if not store.is_source(source):
            raise ValueError(f"Unknown source generator '{source}'. Choose one of: "
                             f"{', '.join(n for _, n in store.source_choices())}.")
        config.validate(store.generator_rows(source))  # bad settings fail before anything loads
        self.store, self.source, self.stop = store, source, stop
        self.generator = store.generator(source)
        config.validate(self.generator.n_latent)  # a local file or override may have another size than expected
        self.warnings: list[str] = []
        self.config, self.id_loss = self.identity_rule(config)
        self.clips = store.clips(list(self.config.clip_models), clip_weights)
        self.clip_names = list(self.config.clip_models) if not store.tiny else ["tiny-clip"]
        self.fingerprint = store.fingerprint(source)
        self.start = start_offsets(start, self.generator, source, self.fingerprint, self.config) if start else None
        self.meta = {"source": source, "source_text": self.config.source_text, "target_text": self.config.target_text,
                     "mode": self.config.mode, "config": self.config.to_dict(), **(meta or {})}
        if start is not None:
            self.meta["started_from"] = {"target_text": start.meta.get("target_text"),
                                         "hypernet": bool(start.meta.get("hypernet"))}

    def identity_rule(self, config: AdaptConfig) -> tuple[AdaptConfig, torch.nn.Module | None]:
        """(config, ArcFace identity loss or None). The identity loss applies when asked for (``lambda_id > 0``), on
        a generator that draws faces (a local checkpoint is taken at its word), with ArcFace's weights at hand;
        otherwise its weight is set to 0 and :attr:`warnings` says why."""
        if config.lambda_id <= 0:
            return config, None
        if self.store.faces(self.source) is False:
            self.warnings.append(f"The identity loss needs a face generator; '{self.source}' is not one, so it is off.")
            return dataclasses.replace(config, lambda_id=0.0), None
        try:
            return config, self.store.id_loss()
        except (WeightsUnavailableError, CheckpointError) as exc:
            self.warnings.append(f"Identity loss off: {exc}")
            return dataclasses.replace(config, lambda_id=0.0), None

    def style(self, record: Progress) -> Style:
        """The weights of a training record (the trainable copy at that step) as a style, with the run's metadata."""
        if record.generator is None:
            raise ValueError("This record carries no weights (records that crossed processes do not).")
        return style_from_generators(self.generator, record.generator,
                                     {**self.meta, "layers": record.layers, "steps": record.step}, self.fingerprint)

    def run(self, style_every: int = 1, style_file: str | Path | None = None, metrics_samples: int = 0
            ) -> Iterator[Progress]:
        """Train, yielding :func:`nada.train.adapt`'s records with the trainer's fields filled in.

        ``style_every=k``: every k-th record carries ``.style`` (0: only the last; the last always does).
        ``style_file``: the style is written there at each preview and at the end (``.saved_step`` says which step
        it holds), so a process stopped mid-run loses at most one preview interval. ``metrics_samples=n``: the
        last record carries ``.metrics``, :func:`nada.metrics.evaluate` on ``n`` samples with the training CLIPs
        (after the final save), for runs with a target text. The first record carries :attr:`warnings`."""
        steps = adapt(self.generator, self.clips, self.config, self.id_loss, stop=self.stop, start=self.start)
        saved, warnings = 0, list(self.warnings)
        try:
            for rec in steps:
                if rec.done or (style_every and rec.step % style_every == 0) \
                        or (style_file is not None and rec.preview is not None and rec.step > saved):
                    rec.style = self.style(rec)
                if style_file is not None and rec.style is not None and rec.step > saved \
                        and (rec.preview is not None or rec.done):  # at previews: cheap next to a step
                    save_style(rec.style, style_file)
                    saved = rec.step
                if rec.done and rec.step > 0 and metrics_samples and self.config.target_text.strip():
                    rec.metrics = self.evaluate(rec, metrics_samples)
                rec.saved_step, rec.warnings, warnings = saved, warnings, []
                rec.stopping = self.stop is not None and self.stop.is_set() and not rec.done
                yield rec
        finally:
            steps.close()

    def evaluate(self, record: Progress, n: int, judges: Sequence[str] | None = None) -> Evaluation:
        """The figures of a record's weights against the source, judged by the training CLIPs (partly circular:
        the record says so through ``trained_with``) or by the CLIP models named in ``judges`` (e.g. the held-out
        :data:`nada.clip_models.JUDGE_CLIP`; tiny mode: the tiny CLIP)."""
        clips = self.clips if judges is None else self.store.clips(list(judges))
        names = self.clip_names if judges is None else list(judges) if not self.store.tiny else ["tiny-clip"]
        figures = evaluate(self.generator, record.generator, clips, self.config.source_text,
                           self.config.target_text, n=n, id_loss=self.id_loss, truncation=self.config.truncation)
        return Evaluation.from_figures(figures, judge=names, trained_with=self.clip_names,
                                       id_trained=self.id_loss is not None)


def start_offsets(style: Style, generator: Any, source: str, fingerprint: str, config: AdaptConfig
                  ) -> dict[str, torch.Tensor]:
    """The offsets of ``style`` (a compact style of ``source``) that a run with ``config`` starts from: checked first
    (its generator, its kind against ``config.params``), a ``ValueError`` saying what to change otherwise."""
    verify_source(style, generator, source, fingerprint, advice=f"Start from a style of '{source}'.")
    form = OFFSET_BUFFERS.get(config.params)
    if form is None or style.kind != config.params:
        raise ValueError(f"Training can start only from a compact style of the form it trains: this one is a "
                         f"'{style.kind}' style and the run trains '{config.params}'. Use the compact recipe "
                         "(params style_delta) to refine an instant style.")
    return {k: v.detach().clone() for k, v in style.tensors.items() if k.endswith(f".{form}")}  # [in] each


__all__ = ["StyleTrainer", "start_offsets"]
