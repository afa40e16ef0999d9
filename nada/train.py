"""The adaptation loop: a trainable copy of a generator is pushed along a CLIP text direction, away from a frozen copy.

``adapt`` is a generator of :class:`Progress` records; the app and the CLI only render them. Setting the ``stop``
event ends training after the current step with a final record, closing the iterator ends it at once; every record
carries the trainable copy, so the weights trained so far are never lost. The caller's generator is never modified.

Choices where we differ from the official StyleGAN-NADA code (each on purpose; the README lists them too):
- both copies see the same latents (frozen mapping network), the same noise and, in previews, one truncation centre;
  with style mixing both copies share one crossover point and one noise draw (the official code draws a separate
  crossover and noise for each copy, so its two copies compare different images);
- image-guided runs: the probe and the global loss aim at the pictures' mean CLIP feature (the official code aims
  them at the target text); with a target text too, the text and image directions are averaged (our extension: the
  official code replaces the text with the pictures); the pictures' preprocessing is in ``nada.target_images``;
- Adam: the mapping network never receives gradients, and a layer that trains again after idle steps keeps its Adam
  state as it was (see the note on Adam below: the official code, on the PyTorch of its time, kept zero gradients, so
  the second moment of idle layers decayed; on torch 2 or later, where ``zero_grad`` sets gradients to None, the
  official code behaves like ours);
- CLIP runs in float32 unless ``bf16`` is on (the official code runs CLIP in fp16 on CUDA);
- the global loss uses the target prompt as typed, in training and in probing (the reference uses "a {target}"
  in one place and the bare text in the other);
- probing selects the layer that actually reads each W+ row (see ``nada.probe``);
- the text direction belongs to this run's :class:`~nada.clip_loss.ClipGuide`; a new prompt pair builds a new one.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import random
import threading
import time
from collections.abc import Iterator
from contextlib import nullcontext
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from PIL import Image

from .clip_loss import ClipGuide, check_prompts, clean_prompt
from .memory import check_fits
from .nets.autotune import ConvTuner
from .nets.rows import resolve_rows
from .nets.stylegan2 import Generator, mix_latents
from .probe import (
    ProbeResult,
    every_row_modules,
    init_style_offsets,
    probe_layers,
    row_modules,
    set_trainable,
    set_trainable_offsets,
    unprobed_modules,
)
from .recipes import COMPACT_LR, RECIPES, SOURCE_RECIPES, Recipe  # noqa: F401 (nada.train.RECIPES is a contract)
from .render import image_grid, seed_latents
from .target_images import MAX_PICTURES, MIN_PICTURES, load_target_images, picture_hashes, to_tensor

if TYPE_CHECKING:  # record fields filled in above this module (nada.style_trainer)
    from .metrics import Evaluation
    from .styles import Style

PARAMS = ("weights", "style_delta", "modulation")  # AdaptConfig.params: what a run trains
IMAGE_GUIDED_CLIPS = ("clip-vit-b32", "clip-vit-b16")  # image-guided runs, unless the caller names models
IMAGE_GUIDE_SAMPLES = 16  # frozen-generator samples whose mean CLIP feature the image direction starts from
LAZY_REG_RATIO = 0.8  # full-weight runs: lr x c/(c+1), c = 4, betas to that power (StyleGAN2's lazy-regularisation
#                      ratio, as the paper's code and StyleDomain's "original" patch); compact: as given (.adam)
# Adam and probed layers (a decision, measured): each step only the chosen layers have gradients; the others have none
# (``zero_grad(set_to_none=True)``), so Adam skips them and a layer's state starts the first time it trains. The
# official code ran on a PyTorch whose ``zero_grad`` kept zero tensors, and its probe left gradients on every layer,
# so Adam's step counter ran on for unselected layers and a layer first selected at step t got a first update of
# sqrt(1 - beta2^t) / sqrt(1 - beta2) times the learning rate: 1.4x at step 2, 3.1x at step 10, 10.7x at step 300.
# Measured on a tiny run (2 of 8 rows probed, 12 steps): every layer's first update here is 1.00x the learning rate,
# whenever it is first chosen. We keep that: it is what Adam means, and the official size-of-first-step depends on an
# old default rather than on the method. With the default recipe (every row trains every step) the two are the same.


@dataclasses.dataclass(frozen=True)
class AdaptConfig:
    """Everything one adaptation run needs besides the models; shared by the app, the CLI and the tests. Plain,
    immutable data: derive a changed config with ``dataclasses.replace``."""

    source_text: str = "Photo"  # what the source generator shows, e.g. "Photo"
    target_text: str = "Sketch"  # the domain to move to, e.g. "Witcher"
    iterations: int = 301  # training steps (the official README's --iter 301)
    batch_size: int = 2  # latents per step
    lr: float = 0.002  # Adam learning rate before the paper's x0.8 scaling
    layers_k: int | float | None = None  # W+ rows trained per step: None = every row (the probe is then skipped: it
    #                                      cannot change the choice); a fraction in (0, 1) of the rows (2/3: 12 at
    #                                      1024); 0 = no probing: the constant input and every convolution train
    probe_iters: int = 1  # SGD steps of the layer probe; 0 = no probing
    probe_batch: int = 8  # latents in the probe
    probe_every: int = 1  # probe every k steps and keep the layers in between (1 = every step, as in the paper)
    probe_micro_batch: int | None = None  # probe latents per pass (same result, bounded memory); None = 2048 // size
    lambda_direction: float = 1.0  # directional CLIP loss weight
    lambda_global: float = 0.0  # global CLIP loss weight
    lambda_id: float = 0.0  # identity (ArcFace) loss weight; faces only
    lambda_l2: float = 0.0  # L2 loss weight between trainable and frozen outputs
    params: str = "weights"  # what trains: "weights" (the paper: the chosen layers' weights), or a per-input-channel
    #                          offset on each chosen convolution's style vector (6,048 numbers at 1024 px; every
    #                          weight unchanged): "style_delta" (s + delta, StyleDomain's s_delta: the compact recipe)
    #                          or "modulation" (s * (1 + delta), StyleDomain's s_mod)
    betas: tuple[float, float] = (0.0, 0.99)  # Adam's betas as a config file gives them (full-weight runs raise
    #                                           them to LAZY_REG_RATIO, as the official code does)
    frozen_rows: str | tuple = ()  # W+ rows that never train (nada.nets.rows): "coarse" (rows 0-5, StyleDomain's
    #                                no_coarse), "medium", "fine", several joined by "+", or row numbers; () = none
    lambda_indomain: float = 0.0  # in-domain angle consistency weight (HyperDomainNet): keeps the batch's pairwise
    #                               CLIP angles those of the frozen copy, against mode collapse; needs batch_size >= 2
    mixing: float = 0.0  # style mixing probability per step: two latents crossed at one random row, the same mix
    #                      for both copies (the official shape recipe uses 0.9)
    clip_models: tuple[str, ...] = ("clip-vit-b32", "clip-vit-b16")  # CLIP models to load, by registry name (the
    #                      app and the CLI load them; adapt() takes the loaded models)
    truncation: float = 0.7  # for previews and sampling; training latents are untruncated
    preview_every: int = 50  # steps between preview grids (0 = only the final one)
    preview_seeds: tuple[int, ...] = (0, 1, 2, 3)  # fixed seeds shown in previews
    seed: int = 0  # makes a run reproducible (latents and noise)
    train_to_rgb: bool = False  # let probed rows also train their ToRGB layers
    bf16: bool = False  # bf16 autocast for generator and CLIP forwards (float32 weights and losses), CUDA or CPU;
    #                     off by default: the directional loss normalises small feature differences (see bench/)
    grad_checkpointing: bool = False  # recompute generator activations in backward (less memory, ~30% slower)
    profile: bool = False  # time each phase of a step (synchronises the GPU; for benchmarks)
    time_limit_s: float | None = None  # stop cleanly, keeping the work, before a step would end past this many
    #                                    seconds from the start (ZeroGPU grants a run a fixed duration); None = no limit
    target_images: tuple = ()  # image-guided mode: 1-16 target pictures (paths or PIL images); the target text then
    #                            is optional, and with both the text and image directions are averaged

    @classmethod
    def from_recipe(cls, name: str, source: str | None = None, **overrides) -> AdaptConfig:
        """The settings of a named recipe (:data:`RECIPES`), the published values of ``source`` (a registry name) for
        it where there are some (:data:`SOURCE_RECIPES`), and ``overrides`` on top."""
        if name not in RECIPES:
            raise ValueError(f"Unknown recipe '{name}'; choose one of: {', '.join(RECIPES)}.")
        settings = {**RECIPES[name].settings, **SOURCE_RECIPES.get(source or "", {}).get(name, {}), **overrides}
        if settings.get("target_images") and "clip_models" not in overrides:  # the official notebook switches
            settings["clip_models"] = IMAGE_GUIDED_CLIPS  # ViT-B/16 on when style images are given
        return dataclasses.replace(cls(), **settings)

    def resolved_layers_k(self, n_latent: int) -> int:
        """The number of rows to train for a generator with ``n_latent`` rows."""
        if self.layers_k is None:
            return n_latent
        if isinstance(self.layers_k, float) and 0 < self.layers_k < 1:
            return int(self.layers_k * n_latent + 1e-9)  # 2/3 of 18 is 12, not 11.999...
        return int(self.layers_k)

    @property
    def mode(self) -> str:
        """What the run aims at, as a style records it: "text", "image" (pictures only) or "text+image"."""
        if self.target_images:
            return "text+image" if str(self.target_text or "").strip() else "image"
        return "text"

    def probing(self) -> bool:
        """True when layers are chosen by probing (else every synthesis convolution trains)."""
        return self.probe_iters > 0 and self.layers_k != 0

    def frozen(self, n_latent: int) -> list[int]:
        """The W+ rows that never train on a generator with ``n_latent`` rows (``frozen_rows`` resolved)."""
        return resolve_rows(self.frozen_rows, n_latent) if self.frozen_rows not in ((), "", None) else []

    def adam(self, params) -> torch.optim.Adam:
        """The run's optimiser: full-weight runs scale lr and betas by the lazy-regularisation ratio (the official
        code's, and StyleDomain's for full weights); compact styles take them as given (StyleDomain's offsets)."""
        if self.params == "weights":
            return torch.optim.Adam(params, lr=self.lr * LAZY_REG_RATIO,
                                    betas=tuple(b ** LAZY_REG_RATIO for b in self.betas))
        return torch.optim.Adam(params, lr=self.lr, betas=tuple(self.betas))

    def validate(self, n_latent: int | None = None) -> None:
        """Raise ``ValueError`` with a readable message for settings that cannot work."""
        checks = [
            (self.iterations >= 1, f"iterations must be at least 1, got {self.iterations}"),
            (self.batch_size >= 1, f"batch_size must be at least 1, got {self.batch_size}"),
            (self.lr > 0 and math.isfinite(self.lr), f"lr must be a positive number, got {self.lr}"),
            (self.probe_batch >= 1, f"probe_batch must be at least 1, got {self.probe_batch}"),
            (self.probe_iters >= 0, f"probe_iters must be >= 0, got {self.probe_iters}"),
            (self.probe_every >= 1, f"probe_every must be at least 1, got {self.probe_every}"),
            (0.0 <= self.truncation <= 1.0, f"truncation must be in [0, 1], got {self.truncation}"),
            (self.preview_every >= 0, f"preview_every must be >= 0, got {self.preview_every}"),
            (self.time_limit_s is None or self.time_limit_s > 0,
             f"the time limit (time_limit_s) must be a positive number of seconds, got {self.time_limit_s}"),
            (all(v >= 0 for v in (self.lambda_direction, self.lambda_global, self.lambda_id, self.lambda_l2,
                                  self.lambda_indomain)),
             "loss weights (lambda_*) must be >= 0"),
            (self.lambda_indomain == 0 or self.batch_size >= 2,
             f"the in-domain loss (lambda_indomain) compares pairs of samples: it needs a batch of at least 2 latents "
             f"(batch_size), got {self.batch_size}; raise batch_size or set lambda_indomain to 0"),
            (self.lambda_direction + self.lambda_global > 0,
             "at least one CLIP loss (lambda_direction or lambda_global) must be on"),
        ]
        if self.layers_k is not None:
            fraction = isinstance(self.layers_k, float) and 0 < self.layers_k < 1
            checks.append((self.layers_k >= 0 and (fraction or float(self.layers_k).is_integer()),
                           f"layers_k must be a number of rows >= 0 or a fraction in (0, 1), got {self.layers_k}"))
            if n_latent is not None and not fraction:
                checks.append((self.layers_k <= n_latent,
                               f"layers_k must be at most {n_latent} (the generator's W+ rows), got {self.layers_k}"))
        checks.append((self.params in PARAMS, f"params must be one of {', '.join(PARAMS)}, got {self.params!r}"))
        checks.append((len(tuple(self.betas)) == 2 and all(isinstance(b, (int, float)) and 0 <= b < 1
                                                            for b in self.betas),
                       f"betas must be two numbers in [0, 1) (Adam's), got {self.betas!r}"))
        checks.append((0.0 <= self.mixing <= 1.0, f"mixing must be a probability in [0, 1], got {self.mixing}"))
        checks.append((len(self.clip_models) >= 1, "clip_models must name at least one CLIP model"))
        n_pictures = len(self.target_images)
        checks.append((n_pictures == 0 or MIN_PICTURES <= n_pictures <= MAX_PICTURES,
                       f"give {MIN_PICTURES} to {MAX_PICTURES} target pictures, got {n_pictures}"))
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg[0].upper() + msg[1:] + ".")
        frozen = self.frozen(n_latent or 10_000)  # ValueError with words for a bad spelling
        if n_latent is not None and len(frozen) >= n_latent:
            raise ValueError(f"Every W+ row is frozen (frozen_rows={self.frozen_rows!r}): nothing would train.")
        if n_pictures and not str(self.target_text or "").strip():
            clean_prompt(self.source_text, "source prompt")  # pictures alone name the target
        else:
            check_prompts(self.source_text, self.target_text)

    def to_dict(self) -> dict:
        """Plain, JSON-serialisable settings (for style metadata); target pictures are recorded by their hashes."""
        d = dataclasses.asdict(dataclasses.replace(self, target_images=()))
        d["target_images"] = picture_hashes(load_target_images(self.target_images)) if self.target_images else []
        return d


@dataclasses.dataclass
class Progress:
    """One training step's report: what :func:`adapt` yields, and what ``nada.Studio.adapt``, the app and ``nada adapt``
    pass on (with the fields below ``timings`` filled in by :class:`nada.style_trainer.StyleTrainer`)."""

    step: int  # steps done so far
    total: int  # steps planned
    losses: dict[str, float]  # this step's loss terms and "total"
    layers: list[str]  # modules trained this step
    preview: Image.Image | None = None  # source row over adapted row, when due
    scores: list[float] | None = None  # per-W+-row probe scores, when probed this step
    rows: list[int] | None = None  # the W+ rows the probe chose, when probed this step (exactly what trains)
    generator: Generator | None = None  # the trainable copy (final weights once training has ended)
    elapsed_s: float = 0.0  # wall time since the start
    done: bool = False  # True on the last record
    error: str | None = None  # why training stopped early (weights are the last good ones)
    timings: dict[str, float] | None = None  # seconds per phase of this step, with config.profile
    # Filled in by nada.style_trainer.StyleTrainer, which runs adapt() for the app, the CLI and nada.Studio:
    style: Style | None = None  # this step's weights as a ready-to-save style (when due; the last record always)
    saved_step: int = 0  # the step the run's style file holds (0: nothing saved yet, or no file)
    warnings: list[str] = dataclasses.field(default_factory=list)  # settings turned off, for the user (first record)
    metrics: Evaluation | None = None  # the finished run's figures (nada.metrics), when asked for, on the last record
    stopping: bool = False  # a stop was asked for and the current step is finishing

    @property
    def eta_s(self) -> float:
        """Estimated seconds left at the current pace."""
        return self.elapsed_s / max(self.step, 1) * (self.total - self.step)


class PhaseTimer:
    """Seconds spent per phase of a step; a no-op unless enabled (then it synchronises CUDA at each mark)."""

    def __init__(self, enabled: bool, device: torch.device):
        self.enabled, self.device = enabled, device
        self.times: dict[str, float] = {}
        self._t = time.perf_counter()

    def mark(self, phase: str) -> None:
        """Charge the time since the previous mark to ``phase``."""
        if not self.enabled:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.times[phase] = self.times.get(phase, 0.0) + now - self._t
        self._t = now

    def take(self) -> dict[str, float] | None:
        """This step's timings (and start afresh)."""
        out, self.times = (dict(self.times) if self.enabled else None), {}
        self._t = time.perf_counter()
        return out


class TrainingHalted(RuntimeError):
    """Training stopped early on a failure; the weights of the last completed step are kept. The message says
    what happened and what to try; :func:`adapt` reports it in the last record's ``error``."""


class NonFiniteLossError(TrainingHalted):
    """The loss became NaN or infinite."""

    def __init__(self, step: int, value: float):
        super().__init__(f"The loss became {value} at step {step}; training stopped and the weights from step "
                         f"{step - 1} are kept. Try a lower learning rate.")


class TrainingOutOfMemoryError(TrainingHalted):
    """A step ran out of (GPU or host) memory."""

    def __init__(self, step: int):
        super().__init__(f"Out of memory at step {step}; training stopped and the weights from step {step - 1} are "
                         "kept. Use a smaller batch or probe batch, one CLIP model, or gradient checkpointing.")


class PreviewRenderer:
    """Fixed-seed preview grids: the source row is rendered once, the adapted row on demand."""

    def __init__(self, frozen: Generator, seeds: tuple[int, ...], truncation: float):
        with torch.no_grad():
            center = frozen.truncation_center()  # one centre for both copies
            self.w = seed_latents(frozen, list(seeds), truncation, center)  # [P, 512]
            self.source = frozen.synthesis(self.w, noise_mode="const").cpu()  # [P, 3, H, W]

    def __call__(self, trained: Generator) -> Image.Image:
        with torch.no_grad():
            adapted = trained.synthesis(self.w, noise_mode="const").cpu()
        return image_grid([self.source, adapted], size=min(256, self.source.shape[-1]))


class AdaptRun:
    """One run's models, optimiser and random stream; :meth:`step` trains one step. The step's tensors are its
    locals, so they are gone as soon as it returns or raises (memory after an out-of-memory error)."""

    def __init__(self, generator: Generator, clip_models: list[tuple[torch.nn.Module, float]], config: AdaptConfig,
                 id_loss: torch.nn.Module | None, *, trained: Generator | None = None, frozen: Generator | None = None,
                 preview: PreviewRenderer | None = None, start: dict[str, torch.Tensor] | None = None):
        # ``trained``, ``frozen``, ``preview``: given by nada.zoo, whose styles share one frozen copy and one set of
        # weights (each style's trainable copy is a shared copy with offsets of its own); memory is checked there.
        self.config, self.id_loss = config, id_loss
        self.device = generator.device
        self.amp = bool(config.bf16)
        self.micro = config.probe_micro_batch or default_micro_batch(generator)
        if trained is None:
            check_fits(generator, [m for m, _ in clip_models], config.batch_size,
                       config.probe_batch if config.probing() else 0, self.micro, self.amp, config.grad_checkpointing)
        self.guide = self._guide(generator, clip_models)
        # The frozen copy shares the caller's tensors (no memory copied): it is only read, under no_grad (a StyleGAN2
        # generator has no train/eval-dependent layers), so the caller's generator is never modified. On a CPU both
        # copies run the "auto" impl with one tuner (nada.nets.autotune): the frozen no-grad passes by the paths timed
        # fastest here, the trained copy's passes with gradients by the fixed choices (Winograd and the contiguous
        # weight gradient where they were measured faster); the trained copy gets the caller's formulation back when
        # training ends (:meth:`finish`).
        self.impl, self.caller_tuner = generator.conv_impl, generator.conv_tuner
        fast = "auto" if self.impl in ("batched", "auto") and self.device.type == "cpu" else self.impl
        self.tuner = (self.caller_tuner or ConvTuner()) if fast == "auto" else None
        self.frozen = frozen or generator.shared_copy().set_conv_impl(fast, self.tuner)
        self.trained = (trained or copy.deepcopy(generator)).set_conv_impl(fast, self.tuner).train()
        if start:  # style offsets to start from (an instant style's): the trainable copy alone; the frozen one stays
            self.trained.set_style_offsets(start)  # the plain source, so the losses measure from the source's pictures
        self.trained.grad_checkpointing = config.grad_checkpointing
        self.rng = torch.Generator(device=self.device).manual_seed(config.seed)
        self.mix_rng = random.Random(config.seed)  # the mixing coin and crossover row
        self.compact = config.params != "weights"
        self.set_trainable = functools.partial(set_trainable_offsets, params=config.params) if self.compact \
            else set_trainable
        trainable = init_style_offsets(self.trained, config.params, config.train_to_rgb) if self.compact \
            else self.trained.parameters()
        self.opt = config.adam(trainable)
        self.preview = preview or PreviewRenderer(self.frozen, config.preview_seeds, config.truncation)
        self.k = config.resolved_layers_k(generator.n_latent)
        frozen = config.frozen(generator.n_latent)
        self.candidates = [i for i in range(generator.n_latent)
                           if i not in frozen and row_modules(generator, i, config.train_to_rgb)]
        # Probe only where it can matter: choosing k of k candidate rows always gives all of them (same result as the
        # probe, at the cost of a step without one); without probing the paper's code trains the input and all convs.
        self.probe = config.probing() and self.k < len(self.candidates)
        if config.probing() and not self.probe:
            self.layers = every_row_modules(generator, self.candidates, config.train_to_rgb, not self.compact)
        else:
            self.layers = unprobed_modules(generator, frozen, config.train_to_rgb, not self.compact)
        self.set_trainable(self.trained, self.layers)

    def _guide(self, generator: Generator, clip_models: list[tuple[torch.nn.Module, float]]) -> ClipGuide:
        """The CLIP guide: text directions, or in image-guided mode the direction from a fixed batch of source
        samples to the target pictures (averaged with the text direction when there is a target text too)."""
        config = self.config
        if not config.target_images:
            return ClipGuide(clip_models, config.source_text, config.target_text, autocast_bf16=self.amp)
        pictures = [to_tensor(p).to(self.device) for p in load_target_images(config.target_images)]  # [1, 3, H, W]
        rng = torch.Generator(device=self.device).manual_seed(config.seed + 1)  # fixed, apart from training's
        z = torch.randn(IMAGE_GUIDE_SAMPLES, generator.style_dim, device=self.device, generator=rng)
        with torch.no_grad():
            samples = torch.cat([generator.synthesis(generator.mapping(z[i:i + 4]), noise_mode="const")
                                 for i in range(0, len(z), 4)])  # [N, 3, H, W], untruncated like training
        return ClipGuide(clip_models, config.source_text, config.target_text, autocast_bf16=self.amp,
                         target_images=pictures, source_images=samples)

    def step(self, step: int) -> tuple[dict[str, float], ProbeResult | None, dict[str, float] | None]:
        """Train step ``step``: (loss values, the probe's result or None, phase timings or None)."""
        config, device, amp, frozen, trained = self.config, self.device, self.amp, self.frozen, self.trained
        timer = PhaseTimer(config.profile, device)
        probe = self.probe_step(step)
        if probe is not None:
            timer.mark("probe")
        w, noise = self.draw()
        with torch.no_grad():
            with autocast(device, amp):
                img_frozen = frozen.synthesis(w, noise=noise).float()  # [B, 3, H, W]
            feats_frozen = self.guide.image_features(img_frozen)
        timer.mark("frozen")
        with autocast(device, amp):
            img_train = trained.synthesis(w, noise=noise).float()
        timer.mark("forward")
        terms = step_losses(self.guide, config, img_train, img_frozen, feats_frozen, self.id_loss)
        timer.mark("clip")
        self.opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        timer.mark("backward")
        # one host synchronisation per step: the floats every record reports (after backward was queued)
        values = torch.stack([v.detach() for v in terms.values()]).tolist()
        if not all(math.isfinite(v) for v in values):
            raise NonFiniteLossError(step, values[-1])
        self.opt.step()
        timer.mark("optimizer")
        return dict(zip(terms, values)), probe, timer.take()

    def probe_step(self, step: int) -> ProbeResult | None:
        """Probe the layers to train at step ``step`` when due (and make exactly them trainable); None otherwise."""
        config, device, trained, rng = self.config, self.device, self.trained, self.rng
        if not (self.probe and (step - 1) % config.probe_every == 0):
            return None
        zp = torch.randn(config.probe_batch, trained.style_dim, device=device, generator=rng)
        if self.compact:
            set_trainable_offsets(trained, [])  # the probe differentiates only its W+ copy
        with torch.no_grad():
            wp = self.frozen.mapping(zp)  # [Bp, 512]
        with autocast(device, self.amp):
            probe = probe_layers(trained, wp, self.guide, self.k, config.probe_iters, micro_batch=self.micro,
                                 noise=draw_noise(self.frozen, zp.shape[0], rng), train_to_rgb=config.train_to_rgb,
                                 rows=self.candidates)
        self.layers = probe.layers
        self.set_trainable(trained, self.layers)
        return probe

    def draw(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """This step's training latents and noise, from the run's random streams: (w [B, 512] or, mixed,
        [B, n_latent, 512]; noise maps shared by both copies)."""
        config = self.config
        z = torch.randn(config.batch_size, self.trained.style_dim, device=self.device, generator=self.rng)
        noise = draw_noise(self.frozen, config.batch_size, self.rng)  # shared by both copies
        with torch.no_grad():
            w = self.frozen.mapping(z)  # [B, 512], untruncated
            if config.mixing > 0:  # no draw at all when off: runs without mixing keep their random stream
                w = self.mix(w)  # [B, 512] or [B, n_latent, 512]
        return w, noise

    def mix(self, w: torch.Tensor) -> torch.Tensor:
        """With probability ``config.mixing``, ``w`` crossed with a second latent at one random row (the same W+ then
        feeds both copies); else ``w`` unchanged. Draws from the run's random stream."""
        n_latent = self.trained.n_latent
        if self.mix_rng.random() >= self.config.mixing:  # host-side draws: no device sync
            return w
        cross = self.mix_rng.randint(1, n_latent - 1)
        z2 = torch.randn(w.shape[0], self.trained.style_dim, device=self.rng.device, generator=self.rng)
        return mix_latents(w, self.frozen.mapping(z2), cross, n_latent)  # [B, n_latent, 512]

    def release(self) -> None:
        """Free what a failed step left behind (gradients; the CUDA cache) before anything else is allocated."""
        self.opt.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def finish(self) -> None:
        """Hand the trained copy back: eval mode, frozen, the caller's convolution formulation."""
        self.trained.eval().requires_grad_(False).set_conv_impl(self.impl, self.caller_tuner)
        set_trainable_offsets(self.trained, [])


def adapt(generator: Generator, clip_models: list[tuple[torch.nn.Module, float]], config: AdaptConfig,
          id_loss: torch.nn.Module | None = None, *, stop: threading.Event | None = None,
          start: dict[str, torch.Tensor] | None = None) -> Iterator[Progress]:
    """Adapt a copy of ``generator`` towards ``config.target_text``; yields a :class:`Progress` every step.

    ``start``: style offsets ("<module>.style_delta" -> [in], e.g. an instant style's tensors) the trained copy starts
    from; offsets of the trained form go on training from there (:func:`nada.probe.init_style_offsets`).

    ``stop``: set it to end training after the current step. The last record (``done=True``) always comes, with the
    trained copy, unless the caller closes the iterator; a :class:`TrainingHalted` failure ends up in its ``error``,
    and ``config.time_limit_s`` ends training (cleanly, like ``stop``) before a step that would overrun it."""
    config.validate(generator.n_latent)
    if config.lambda_id > 0 and id_loss is None:
        raise ValueError("The identity loss (lambda_id > 0) needs the ArcFace weights; they are not loaded. "
                         "Set lambda_id to 0 or provide the weights.")
    t0 = time.perf_counter()
    run = AdaptRun(generator, clip_models, config, id_loss, start=start)
    t_setup = time.perf_counter()

    def record(step: int, losses: dict[str, float], image: Image.Image | None, probe: ProbeResult | None = None,
               **extra) -> Progress:
        """The one place a :class:`Progress` is built."""
        return Progress(step=step, total=config.iterations, losses=losses, layers=list(run.layers), preview=image,
                        scores=probe.scores if probe else None, rows=list(probe.rows) if probe else None,
                        generator=run.trained, elapsed_s=time.perf_counter() - t0, **extra)

    def stopped(done_steps: int) -> bool:
        """Asked to stop, or the next step would overrun the time limit (at the pace so far, setup included)."""
        if stop is not None and stop.is_set():
            return True
        if config.time_limit_s is None:
            return False
        now = time.perf_counter()
        pace = (now - t_setup) / done_steps if done_steps else t_setup - t0  # before step 1: setup time as a guess
        return now - t0 + pace > config.time_limit_s

    done_steps, losses, error = 0, {}, None
    probe: ProbeResult | None = None  # of the step not yet reported
    timings: dict[str, float] | None = None
    try:
        for step in range(1, config.iterations + 1):
            if stopped(done_steps):  # stopped between steps
                break
            try:
                losses, probe, timings = run.step(step)
            except torch.OutOfMemoryError as exc:
                raise TrainingOutOfMemoryError(step) from exc
            done_steps = step
            if step == config.iterations or stopped(done_steps):
                break  # the final record follows, once the trained copy is handed back
            due = config.preview_every and step % config.preview_every == 0
            yield record(step, losses, run.preview(run.trained) if due else None, probe=probe, timings=timings)
            probe = timings = None
    except TrainingHalted as exc:  # the weights are still those of the last completed step
        error, losses = str(exc), {}
    finally:  # the one cleanup: a normal end, a halt, or the caller closing the iterator
        run.finish()
    if error is not None:  # here the failed step's tensors and traceback are gone: what is freed now stays free
        run.release()
    yield record(done_steps, losses, _final_preview(run.preview, run.trained), probe=probe, timings=timings,
                 done=True, error=error)


def _final_preview(preview: PreviewRenderer, trained: Generator) -> Image.Image | None:
    """The last preview grid; ``None`` when even that no longer fits in memory."""
    try:
        return preview(trained)
    except torch.OutOfMemoryError:
        return None


def default_micro_batch(generator: Generator) -> int:
    """Probe latents per pass when not configured: 8 at 256 px, 4 at 512, 2 at 1024."""
    return max(1, 2048 // generator.size)


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on the device (CUDA or CPU) when enabled, else a no-op context."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled and device.type in ("cuda", "cpu") \
        else nullcontext()


def draw_noise(generator: Generator, batch: int, rng: torch.Generator) -> list[torch.Tensor]:
    """Per-sample noise maps for every layer, drawn from ``rng`` on its device: list of [N, 1, r, r].

    StyleGAN3 has no noise inputs (``[]``), so its two copies render the same image before the first update. The
    official code (its ``--sg3`` path) adds small random noise to the frozen image there; we do not, on purpose: both
    copies share their noise for a StyleGAN2 as well, so the first step always starts from equal images, and
    ``ClipGuide.directional`` counts an unmoved sample's difference as zero (no division by a zero norm) while its
    gradient still points along the text direction. A perturbed frozen image would only blur the reference every
    step is measured against."""
    return [torch.randn(batch, 1, *b.shape[-2:], device=rng.device, generator=rng) for b in generator.noise_buffers()]


def step_losses(guide: ClipGuide, config: AdaptConfig, img_train: torch.Tensor, img_frozen: torch.Tensor,
                feats_frozen: list[torch.Tensor], id_loss: torch.nn.Module | None,
                feats_train: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Every weighted loss term of one step (only the terms with a non-zero weight) and their sum as "total";
    ``feats_train``: the trained images' CLIP features when already computed (else computed here)."""
    feats_train = guide.image_features(img_train) if feats_train is None else feats_train
    terms: dict[str, torch.Tensor] = {}
    if config.lambda_direction > 0:
        terms["direction"] = config.lambda_direction * guide.directional(feats_train, feats_frozen)
    if config.lambda_global > 0:
        terms["global"] = config.lambda_global * guide.global_(feats_train)
    if config.lambda_id > 0 and id_loss is not None:
        terms["id"] = config.lambda_id * id_loss(img_train, img_frozen)
    if config.lambda_l2 > 0:
        terms["l2"] = config.lambda_l2 * F.mse_loss(img_train, img_frozen)
    if config.lambda_indomain > 0:  # reuses the features the directional loss takes: no extra forward pass
        terms["indomain"] = config.lambda_indomain * guide.indomain(feats_train, feats_frozen)
    terms["total"] = sum(terms.values())
    return terms
