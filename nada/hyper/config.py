"""The hypernetwork's settings (:class:`HyperConfig`, one config shared by the CLI, Ray workers and tests) and the
progress record its training yields (:class:`HyperProgress`)."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from ..nets.rows import resolve_rows

if TYPE_CHECKING:
    from .net import Hypernet


@dataclasses.dataclass(frozen=True)
class HyperConfig:
    """Everything a hypernetwork's training needs besides the models and the prompt lists; plain, immutable data
    (derive a changed one with ``dataclasses.replace``)."""

    iterations: int = 2000  # optimiser steps
    prompts_per_step: int = 4  # K: prompts rendered together in one batch each step (the global batch)
    batch_size: int = 2  # B: latents per prompt; every prompt of a step sees the same B latents
    lr: float = 1e-4  # Adam learning rate of the hypernetwork's weights
    betas: tuple[float, float] = (0.9, 0.999)  # Adam's betas
    lambda_direction: float = 1.0  # directional CLIP loss weight (each prompt against its own text direction)
    lambda_indomain: float = 0.0  # in-domain angle consistency weight (HyperDomainNet); needs batch_size >= 2
    mixing: float = 0.9  # style mixing probability per step (the compact recipe's 0.9)
    interpolation: float = 0.5  # probability that a prompt of the step is replaced by a random convex blend of it
    #                             and another prompt of the list (input and loss directions alike; HyperDomainNet's
    #                             convex-hull sampling): trains the space between the prompts, for unseen ones
    clip_models: tuple[str, ...] = ("clip-vit-b32", "clip-vit-b16")  # CLIP models by registry name (recorded in
    #                      the hypernetwork file; the caller loads them and passes them to train_hypernet)
    template: str = "{}"  # how a prompt becomes the text whose CLIP embedding feeds the hypernetwork
    hidden: int = 512  # width of the MLP trunk
    depth: int = 2  # hidden layers of the MLP trunk
    frozen_rows: str | tuple = "coarse"  # W+ rows whose layers get no offsets (as the compact recipe: rows 0-5)
    eval_every: int = 0  # steps between held-out evaluations (0 = never)
    eval_samples: int = 16  # images per held-out prompt in an evaluation (nada.metrics.evaluate's n)
    checkpoint_every: int = 100  # steps between checkpoint(state, step) calls (0 = never)
    seed: int = 0  # the run's random streams (prompts drawn, latents, noise, mixing) and the initial weights

    def validate(self) -> None:
        """Raise ``ValueError`` with a readable message for settings that cannot work."""
        def count(v, least: int) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and v >= least
        checks = [
            (count(self.iterations, 1), f"iterations must be an integer >= 1, got {self.iterations!r}"),
            (count(self.prompts_per_step, 1),
             f"prompts_per_step must be an integer >= 1, got {self.prompts_per_step!r}"),
            (count(self.batch_size, 1), f"batch_size must be an integer >= 1, got {self.batch_size!r}"),
            (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0,
             f"lr must be a positive number, got {self.lr!r}"),
            (len(tuple(self.betas)) == 2 and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.betas),
             f"betas must be two numbers in [0, 1) (Adam's), got {self.betas!r}"),
            (all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0
                 for v in (self.lambda_direction, self.lambda_indomain)), "loss weights (lambda_*) must be >= 0"),
            (self.lambda_direction > 0, "the directional loss (lambda_direction) must be on"),
            (self.lambda_indomain == 0 or self.batch_size >= 2,
             f"the in-domain loss (lambda_indomain) compares pairs of samples: it needs batch_size >= 2, got "
             f"{self.batch_size}"),
            (isinstance(self.mixing, (int, float)) and 0 <= self.mixing <= 1,
             f"mixing must be a probability in [0, 1], got {self.mixing!r}"),
            (isinstance(self.interpolation, (int, float)) and 0 <= self.interpolation <= 1,
             f"interpolation must be a probability in [0, 1], got {self.interpolation!r}"),
            (len(self.clip_models) >= 1 and all(isinstance(n, str) and n for n in self.clip_models),
             "clip_models must name at least one CLIP model"),
            (isinstance(self.template, str) and self.template.count("{}") == 1,
             f"the template must hold '{{}}' exactly once (where the prompt goes), got {self.template!r}"),
            (count(self.hidden, 1), f"hidden must be an integer >= 1, got {self.hidden!r}"),
            (count(self.depth, 1), f"depth must be an integer >= 1, got {self.depth!r}"),
            (count(self.eval_every, 0), f"eval_every must be an integer >= 0, got {self.eval_every!r}"),
            (count(self.eval_samples, 2), f"eval_samples must be an integer >= 2, got {self.eval_samples!r}"),
            (count(self.checkpoint_every, 0),
             f"checkpoint_every must be an integer >= 0, got {self.checkpoint_every!r}"),
            (count(self.seed, 0), f"seed must be an integer >= 0, got {self.seed!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg[0].upper() + msg[1:] + ".")
        if self.frozen_rows not in ((), "", None):
            resolve_rows(self.frozen_rows, 10_000)  # ValueError with words for a bad spelling

    def frozen(self, n_latent: int) -> list[int]:
        """The W+ rows whose layers get no offsets on a generator with ``n_latent`` rows."""
        return resolve_rows(self.frozen_rows, n_latent) if self.frozen_rows not in ((), "", None) else []

    def to_dict(self) -> dict:
        """Plain, JSON-ready settings (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> HyperConfig:
        """The config :meth:`to_dict` wrote (unknown keys ignored; missing ones take the defaults)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names}
        return cls(**values)


@dataclasses.dataclass
class HyperProgress:
    """One training step's report, as :func:`nada.hyper.train_hypernet` yields it; the CLI and app only render it."""

    step: int  # steps done so far
    total: int  # steps planned
    losses: dict[str, float]  # this step's loss terms and "total" (this rank's share of the global batch)
    figures: dict | None = None  # held-out evaluation, when one ran this step: {"mean": {...}, "prompts": {...}}
    hypernet: Hypernet | None = None  # the hypernetwork (always on the last record)
    elapsed_s: float = 0.0  # wall time since the start
    done: bool = False  # True on the last record
    error: str | None = None  # why training stopped early (the hypernetwork is that of the last good step)
