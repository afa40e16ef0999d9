"""Many styles trained at once: :func:`adapt_many`.

Compact styles (``params`` "style_delta" or "modulation") train together in one batch. Each style keeps everything a
run alone has (:class:`nada.train.AdaptRun`: its prompts and CLIP guide, its random streams, its probe and layers, its
own Adam), and a trainable copy that shares the generator's weights and holds only its own offsets. Each step every
style draws its latents and noise from its own streams, exactly as alone; the latents of all styles go through the
frozen and the trainable generator as one batch, the trainable one carrying every style's offsets as [K, in] with an
index per sample; each style's losses are taken on its own samples and their sum is differentiated once. A style's
offsets only reach its own samples, so each gradient is that style's alone and each Adam steps as it would alone: a
style's result equals training it by itself with the same config, up to float rounding (the batch is larger).

Full-weight styles ("weights") cannot share a batch (each changes every weight): they train one after another, after
the compact ones, through the same interface.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Iterator, Sequence

import torch
from PIL import Image

from ..memory import check_fits
from ..nets.autotune import ConvTuner
from ..nets.stylegan2 import Generator
from ..probe import ProbeResult
from ..train import (
    AdaptConfig,
    AdaptRun,
    NonFiniteLossError,
    PreviewRenderer,
    Progress,
    TrainingHalted,
    TrainingOutOfMemoryError,
    adapt,
    autocast,
    default_micro_batch,
    step_losses,
)

SHARED = ("iterations", "params", "batch_size", "clip_models", "bf16", "grad_checkpointing")  # compact styles agree


def adapt_many(generator: Generator, clip_models: list[tuple[torch.nn.Module, float]], configs: Sequence[AdaptConfig],
               id_loss: torch.nn.Module | None = None, *, stop: threading.Event | None = None
               ) -> Iterator[list[Progress | None]]:
    """Train one style per config; yields once per step a list in config order: each style's
    :class:`~nada.train.Progress` for the step, or None when it has nothing new (it ended earlier, or it is a
    full-weight style waiting its turn). Every style's last record has ``done=True``; a style that fails alone (a
    non-finite loss) ends with its ``error`` and the others go on. ``stop``: set it to end every style after the
    current step. Settings are checked before anything trains (``ValueError``)."""
    configs = list(configs)
    check_configs(generator, configs, id_loss)
    compact = [i for i, c in enumerate(configs) if c.params != "weights"]
    if compact:
        yield from _pad(_adapt_compact(generator, clip_models, [configs[i] for i in compact], id_loss, stop),
                        compact, len(configs))
    for i, config in enumerate(configs):
        if config.params == "weights" and not (stop is not None and stop.is_set()):
            yield from _pad(([rec] for rec in adapt(generator, clip_models, config, id_loss, stop=stop)), [i],
                            len(configs))


def check_configs(generator: Generator, configs: list[AdaptConfig], id_loss: torch.nn.Module | None) -> None:
    """Raise ``ValueError`` unless every config can run on ``generator`` and the compact ones can share a batch."""
    if not configs:
        raise ValueError("Give the settings of at least one style.")
    for i, config in enumerate(configs, 1):
        try:
            config.validate(generator.n_latent)
        except ValueError as exc:
            raise ValueError(f"Style {i}: {exc}") from None
        if config.lambda_id > 0 and id_loss is None:
            raise ValueError(f"Style {i}: the identity loss (lambda_id > 0) needs the ArcFace weights; they are not "
                             "loaded. Set lambda_id to 0 or provide the weights.")
    compact = [c for c in configs if c.params != "weights"]
    for field in SHARED:
        values = {repr(getattr(c, field)) for c in compact}
        if len(values) > 1:
            raise ValueError(f"Compact styles trained together must share {field}; got {', '.join(sorted(values))}. "
                             "Train them in separate batches.")


def _pad(records: Iterator[list[Progress | None]], where: list[int], n: int) -> Iterator[list[Progress | None]]:
    """Each list of records for the styles at ``where`` spread into a list of ``n`` (None elsewhere)."""
    for recs in records:
        out: list[Progress | None] = [None] * n
        for i, rec in zip(where, recs):
            out[i] = rec
        yield out


class _Styles:
    """The compact styles of one batch: a run per style (:class:`~nada.train.AdaptRun`, on a trainable copy that
    shares one copy of the weights), one frozen copy, and the batched copy that renders every style at once."""

    def __init__(self, generator: Generator, clip_models: list[tuple[torch.nn.Module, float]],
                 configs: list[AdaptConfig], id_loss: torch.nn.Module | None):
        first = configs[0]
        self.configs, self.id_loss, self.device = configs, id_loss, generator.device
        probing = [c for c in configs if c.probing()]
        check_fits(generator, [m for m, _ in clip_models], first.batch_size * len(configs),
                   max((c.probe_batch for c in probing), default=0),
                   min((c.probe_micro_batch or default_micro_batch(generator) for c in probing), default=1),
                   bool(first.bf16), first.grad_checkpointing)
        base = copy.deepcopy(generator)  # one copy of the weights for every style (the caller's is never touched)
        base.set_conv_impl(base.conv_impl, base.conv_tuner or ConvTuner())  # one tuner for every copy
        previews: dict[tuple, PreviewRenderer] = {}
        self.runs: list[AdaptRun] = []
        for config in configs:
            frozen = self.runs[0].frozen if self.runs else None
            key = (tuple(config.preview_seeds), config.truncation)
            run = AdaptRun(base, clip_models, config, id_loss, trained=base.shared_copy(), frozen=frozen,
                           preview=previews.get(key))
            previews.setdefault(key, run.preview)
            self.runs.append(run)
        self.frozen = self.runs[0].frozen
        self.batched = base.shared_copy().set_conv_impl(self.runs[0].trained.conv_impl, self.runs[0].tuner).train()
        self.batched.grad_checkpointing = first.grad_checkpointing
        self.amp = bool(first.bf16)

    def step(self, step: int, active: list[int]) -> tuple[dict[int, dict[str, float]], dict[int, str],
                                                          dict[int, ProbeResult]]:
        """Train step ``step`` for the styles ``active``: (loss values per style that stepped, the error per style
        whose loss became non-finite (its offsets are those of the step before), the probe result per probed
        style)."""
        runs = self.runs
        probes = {k: p for k in active if (p := runs[k].probe_step(step)) is not None}
        draws = [runs[k].draw() for k in active]  # each style's latents and noise, from its own streams
        n_latent = self.frozen.n_latent
        mixed = any(w.dim() == 3 for w, _ in draws)
        w = torch.cat([wk[:, None].expand(-1, n_latent, -1) if mixed and wk.dim() == 2 else wk
                       for wk, _ in draws])  # [K*B, 512] or [K*B, n_latent, 512]
        noise = [torch.cat(maps) for maps in zip(*(nk for _, nk in draws))]  # per layer [K*B, 1, r, r]
        batch = self.configs[0].batch_size
        index = torch.arange(len(active)).repeat_interleave(batch)  # [K*B]: sample -> style (checked on the CPU)
        self.batched.set_style_offsets(self._stacked(active), index)
        try:
            return self._train(step, active, w, noise, batch, probes)
        finally:
            self.batched.set_style_offsets(None)  # no reference to this step's graph is kept

    def _train(self, step: int, active: list[int], w: torch.Tensor, noise: list[torch.Tensor], batch: int,
               probes: dict[int, ProbeResult]) -> tuple[dict[int, dict[str, float]], dict[int, str],
                                                        dict[int, ProbeResult]]:
        """The batched forward passes, each style's losses, one backward and each style's optimiser step."""
        runs, amp, device = self.runs, self.amp, self.device
        guide = runs[active[0]].guide  # image features need only the CLIP models, which every style shares
        with torch.no_grad():
            with autocast(device, amp):
                img_frozen = self.frozen.synthesis(w, noise=noise).float()  # [K*B, 3, H, W]
            feats_frozen = guide.image_features(img_frozen)
        with autocast(device, amp):
            img_train = self.batched.synthesis(w, noise=noise).float()  # [K*B, 3, H, W]
        feats_train = guide.image_features(img_train)
        terms = {}
        for j, k in enumerate(active):
            part = slice(j * batch, (j + 1) * batch)
            terms[k] = step_losses(runs[k].guide, runs[k].config, img_train[part], img_frozen[part],
                                   [f[part] for f in feats_frozen], self.id_loss, [f[part] for f in feats_train])
        flat = torch.stack([v.detach() for t in terms.values() for v in t.values()]).tolist()  # one host sync
        values, errors, at = {}, {}, 0
        for k, t in terms.items():
            values[k] = dict(zip(t, flat[at:at + len(t)]))
            at += len(t)
            if not all(math.isfinite(v) for v in values[k].values()):
                errors[k] = str(NonFiniteLossError(step, values.pop(k)["total"]))
        for k in active:
            runs[k].opt.zero_grad(set_to_none=True)
        if values:
            sum(terms[k]["total"] for k in values).backward()
            for k in values:
                runs[k].opt.step()
        return values, errors, probes

    def _stacked(self, active: list[int]) -> dict[str, torch.Tensor]:
        """Every offset of the ``active`` styles as [K, in] (a style without an offset there contributes zeros, which
        leave its style vectors unchanged); stacking keeps the graph to each style's own trainable offsets."""
        offsets = [self.runs[k].trained.style_offsets() for k in active]
        keys = list(dict.fromkeys(key for o in offsets for key in o))
        return {key: torch.stack([o[key] if key in o else torch.zeros_like(next(p[key] for p in offsets if key in p))
                                  for o in offsets]) for key in keys}


def _adapt_compact(generator: Generator, clip_models: list[tuple[torch.nn.Module, float]],
                   configs: list[AdaptConfig], id_loss: torch.nn.Module | None, stop: threading.Event | None
                   ) -> Iterator[list[Progress | None]]:
    """The compact styles' batch, step by step (see the module docstring)."""
    t0 = time.perf_counter()
    styles = _Styles(generator, clip_models, configs, id_loss)
    t_setup = time.perf_counter()
    total = configs[0].iterations
    limits = [c.time_limit_s for c in configs if c.time_limit_s is not None]
    limit = min(limits) if limits else None

    def record(k: int, step: int, losses: dict[str, float], image: Image.Image | None,
               probe: ProbeResult | None = None, **extra) -> Progress:
        """One style's record (as :func:`nada.train.adapt` builds it)."""
        run = styles.runs[k]
        return Progress(step=step, total=total, losses=losses, layers=list(run.layers), preview=image,
                        scores=probe.scores if probe else None, rows=list(probe.rows) if probe else None,
                        generator=run.trained, elapsed_s=time.perf_counter() - t0, **extra)

    def stopped(done_steps: int) -> bool:
        """Asked to stop, or the next step would overrun the shortest time limit."""
        if stop is not None and stop.is_set():
            return True
        if limit is None:
            return False
        now = time.perf_counter()
        pace = (now - t_setup) / done_steps if done_steps else t_setup - t0
        return now - t0 + pace > limit

    n, active = len(configs), list(range(len(configs)))
    done_steps = [0] * n
    values: dict[int, dict[str, float]] = {}
    probes: dict[int, ProbeResult] = {}  # of the step not yet reported
    ended: dict[int, Progress] = {}  # last records of styles that failed alone, not yet reported
    error = None
    try:
        for step in range(1, total + 1):
            if stopped(step - 1) or not active:
                break
            try:
                values, errors, probes = styles.step(step, active)
            except torch.OutOfMemoryError as exc:
                raise TrainingOutOfMemoryError(step) from exc
            for k, message in errors.items():  # this style ends with the offsets of its last good step
                styles.runs[k].finish()
                ended[k] = record(k, done_steps[k], {}, _final_preview(styles.runs[k]), probes.get(k), done=True,
                                  error=message)
            active = [k for k in active if k not in errors]
            for k in active:
                done_steps[k] = step
            if step == total or stopped(step):
                break  # the final records follow, once the trained copies are handed back
            out: list[Progress | None] = [ended.pop(k, None) for k in range(n)]
            for k in active:
                due = configs[k].preview_every and step % configs[k].preview_every == 0
                out[k] = record(k, step, values[k], styles.runs[k].preview(styles.runs[k].trained) if due else None,
                                probes.get(k))
            yield out
            probes = {}
    except TrainingHalted as exc:  # out of memory: every style still training keeps its last completed step
        error, values = str(exc), {}
    finally:  # the one cleanup: a normal end, a halt, or the caller closing the iterator
        for k in active:
            styles.runs[k].finish()
    out = [ended.pop(k, None) for k in range(n)]
    for k in active:
        out[k] = record(k, done_steps[k], values.get(k, {}), _final_preview(styles.runs[k]), probes.get(k),
                        done=True, error=error)
    yield out


def _final_preview(run: AdaptRun) -> Image.Image | None:
    """A run's last preview grid; None when even that no longer fits in memory."""
    try:
        return run.preview(run.trained)
    except torch.OutOfMemoryError:
        return None
