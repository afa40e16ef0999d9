"""Training a hypernetwork over a prompt list: :func:`train_hypernet`, a generator of :class:`HyperProgress` records.

Each step draws K prompts (``config.prompts_per_step``) and B latents (``config.batch_size``), shared by the K
prompts, from the run's seeded streams. The frozen generator renders the B latents once; the hypernetwork turns the
K prompts' text directions into K sets of offsets, and the trainable copy renders all K x B samples in one batch
with per-sample offsets (``Generator.set_style_offsets(offsets [K, in], index)``). Each prompt's directional loss
(and in-domain loss, where the config weighs it) is taken on its own B samples against its own CLIP text direction.

Data parallelism (Ray, or any caller): every rank draws the same global batch from the same streams and trains the
prompts at positions ``rank, rank + world, ...`` of the step's K (``rank::world``). A rank's loss is the sum of its
prompts' losses divided by the global K, so after an all-reduce **SUM** of the gradients (``sync_grads``) every rank
holds exactly the gradient one process gets from the whole global batch (the mean over K prompts), and the
optimiser steps agree. Gradients are taken with ``torch.autograd.grad`` on the hypernetwork's weights only (the
caller's generator gets no ``.grad``), and every weight has a gradient tensor on every rank (zeros for a rank
without prompts), so an all-reduce sees the same tensors everywhere.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..clip_loss import ClipGuide, TextDirection, check_prompts, directional_loss, indomain_loss
from ..metrics import evaluate
from ..nets.stylegan2 import Generator, mix_latents
from ..styles import generator_fingerprint
from ..train import NonFiniteLossError, draw_noise
from .config import HyperConfig, HyperProgress
from .net import Hypernet, HypernetMismatchError, text_direction, trained_layers

DEFAULT_SOURCE = "Photo"  # the source text of a prompt given as a target alone
STATE_FORMAT = 1  # the checkpoint state's layout
RESUMABLE_CHANGES = ("iterations", "eval_every", "eval_samples", "checkpoint_every")  # may differ on resume


def prompt_pairs(prompts: Iterable[str | tuple[str, str]], what: str = "prompt list") -> list[tuple[str, str]]:
    """``prompts`` (target texts, or (source, target) pairs) as checked (source, target) pairs; ``ValueError`` for an
    empty list or an empty, same or over-long prompt (naming its line)."""
    if isinstance(prompts, str):
        raise ValueError(f"The {what} must be a list of prompts, not one text.")
    pairs = []
    for i, item in enumerate(prompts, 1):
        source, target = (DEFAULT_SOURCE, item) if isinstance(item, str) else tuple(item) if \
            isinstance(item, (tuple, list)) and len(item) == 2 else (None, None)
        if source is None:
            raise ValueError(f"Prompt {i} of the {what} must be a target text or a (source, target) pair, got "
                             f"{item!r}.")
        try:
            pairs.append(check_prompts(source, target))
        except ValueError as exc:
            raise ValueError(f"Prompt {i} of the {what}: {exc}") from None
    if not pairs:
        raise ValueError(f"The {what} is empty: give at least one target prompt, e.g. 'Sketch'.")
    return pairs


def train_hypernet(generator: Generator, clip_models: Sequence[tuple[nn.Module, float]],
                   prompts: Iterable[str | tuple[str, str]], config: HyperConfig, *,
                   held_out: Iterable[str | tuple[str, str]] = (),
                   judge: Sequence[tuple[nn.Module, float]] | None = None,
                   resume: dict | None = None, stop: threading.Event | None = None, rank: int = 0, world: int = 1,
                   sync_grads: Callable[[nn.Module], None] | None = None,
                   checkpoint: Callable[[dict, int], None] | None = None, source: str | None = None
                   ) -> Iterator[HyperProgress]:
    """Train a :class:`Hypernet` for ``generator`` over ``prompts``; yields a record per step, the last with
    ``done=True`` and ``.hypernet``. Everything is checked here, before anything trains (``ValueError``;
    ``HypernetMismatchError`` for a ``resume`` state of another generator).

    ``held_out``: prompts scored every ``config.eval_every`` steps (rank 0 only) by ``judge`` (CLIP models held out
    from training; default: ``clip_models``) with :func:`nada.metrics.evaluate`. ``resume``: a state given to
    ``checkpoint(state, step)`` (called every ``config.checkpoint_every`` steps); training continues from it exactly.
    ``stop``: set it to end after the current step. ``rank``/``world``/``sync_grads``: data parallelism (module
    docstring; ``sync_grads(hypernet)`` must all-reduce every ``.grad`` with SUM). ``source``: the generator's name,
    recorded in the file."""
    config.validate()
    pairs, held = prompt_pairs(prompts), prompt_pairs(held_out, "held-out list") if held_out else []
    pairs_clip = list(clip_models)
    if len(pairs_clip) != len(config.clip_models):
        raise ValueError(f"{len(pairs_clip)} CLIP models given for the {len(config.clip_models)} the config names "
                         f"({', '.join(config.clip_models)}).")
    if not (isinstance(world, int) and world >= 1 and isinstance(rank, int) and 0 <= rank < world):
        raise ValueError(f"rank must be in [0, world) and world >= 1, got rank {rank!r}, world {world!r}.")
    if world > 1 and sync_grads is None:
        raise ValueError(f"Training on {world} workers needs sync_grads (an all-reduce SUM of the gradients).")
    trained_layers(generator, config)  # ValueError when every layer is frozen
    fingerprint = generator_fingerprint(generator)
    if resume is not None:
        _check_resume(resume, config, fingerprint, pairs)
    return _train(generator, pairs_clip, pairs, config, held, list(judge) if judge is not None else pairs_clip,
                  resume, stop, rank, world, sync_grads, checkpoint, source, fingerprint)


def prompts_digest(pairs: list[tuple[str, str]]) -> str:
    """A short hash of a prompt list (a resumed run must train the same list to continue exactly)."""
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()[:16]


def _check_resume(state: dict, config: HyperConfig, fingerprint: str, pairs: list[tuple[str, str]]) -> None:
    """``ValueError`` / ``HypernetMismatchError`` unless ``state`` continues this run."""
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError("The checkpoint to resume from is not a hypernetwork training state of this nada.")
    if state["meta"].get("generator_fingerprint") != fingerprint:
        raise HypernetMismatchError("The checkpoint to resume from was trained for another generator.")
    theirs = {k: v for k, v in state["config"].items() if k not in RESUMABLE_CHANGES}
    mine = {k: v for k, v in config.to_dict().items() if k not in RESUMABLE_CHANGES}
    if theirs != mine:
        changed = sorted(k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k))
        raise ValueError(f"The checkpoint was trained with other settings ({', '.join(changed)}); resume with the "
                         f"same ones (only {', '.join(RESUMABLE_CHANGES)} may change).")
    if state.get("prompts") != prompts_digest(pairs):
        raise ValueError("The checkpoint was trained on another prompt list; resume with the same list.")


class _Run:
    """One training run's models, optimiser, random streams and text directions; :meth:`step` trains one step."""

    def __init__(self, generator: Generator, clip_models: list[tuple[nn.Module, float]],
                 pairs: list[tuple[str, str]], config: HyperConfig, rank: int, world: int, source: str | None,
                 fingerprint: str):
        self.config, self.pairs, self.rank, self.world = config, pairs, rank, world
        self.clip_models = clip_models
        self.device = generator.device
        self.frozen = generator.shared_copy().eval()
        self.trained = generator.shared_copy().eval()  # no train/eval-dependent layers; offsets set per step
        self.net = Hypernet.for_generator(generator, clip_models, config, source, fingerprint)
        self.params = [p for p in self.net.parameters()]
        self.opt = torch.optim.Adam(self.params, lr=config.lr, betas=tuple(config.betas))
        self.rng = torch.Generator(device=self.device).manual_seed(config.seed)
        self.py = random.Random(config.seed)  # prompt draws, the mixing coin and crossover row
        self.guide = ClipGuide(clip_models, *pairs[0])  # image features (the models, minus weight-0 ones)
        self.inputs: dict[int, torch.Tensor] = {}  # prompt -> the hypernetwork's input [D]
        self.directions: dict[int, list[torch.Tensor]] = {}  # prompt -> per kept model the loss direction [1, D_m]
        self.step_done = 0

    def text(self, i: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Prompt ``i``'s input direction and loss directions (computed once)."""
        if i not in self.inputs:
            source, target = self.pairs[i]
            self.inputs[i] = text_direction(self.clip_models, source, target, self.config.template)
            self.directions[i] = [TextDirection.compute(m, source, target).direction for m, _ in self.guide.models]
        return self.inputs[i], self.directions[i]

    def blend(self, i: int, k: int, a: float) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The input [D] and loss directions of ``a * prompt i + (1 - a) * prompt k``, each renormalised (prompt ``i``
        alone for a = 1)."""
        u, dirs = self.text(i)
        if k == i:
            return u, dirs
        v, others = self.text(k)
        mixed = F.normalize(a * u + (1 - a) * v, dim=0)  # [D]
        return mixed, [F.normalize(a * d + (1 - a) * e, dim=-1) for d, e in zip(dirs, others)]

    def draw(self) -> tuple[list[tuple[int, int, float]], torch.Tensor, list[torch.Tensor]]:
        """This step's global batch: K prompts as (prompt, partner, a) (the blend ``a * prompt + (1 - a) * partner``;
        a = 1 for the prompt alone), the B shared latents (w [B, 512] or, mixed, [B, n_latent, 512]) and noise maps
        (per layer [B, 1, r, r])."""
        config, n = self.config, len(self.pairs)
        k = config.prompts_per_step
        drawn = self.py.sample(range(n), k) if k <= n else [self.py.randrange(n) for _ in range(k)]
        chosen = []
        for i in drawn:  # host-side draws only: every rank makes the same ones
            if n > 1 and config.interpolation > 0 and self.py.random() < config.interpolation:
                other = self.py.randrange(n - 1)
                chosen.append((i, other + (other >= i), self.py.random()))
            else:
                chosen.append((i, i, 1.0))
        z = torch.randn(config.batch_size, self.frozen.style_dim, device=self.device, generator=self.rng)
        noise = draw_noise(self.frozen, config.batch_size, self.rng)
        with torch.no_grad():
            w = self.frozen.mapping(z)  # [B, 512]
            if config.mixing > 0 and self.py.random() < config.mixing:
                cross = self.py.randint(1, self.frozen.n_latent - 1)
                z2 = torch.randn(config.batch_size, self.frozen.style_dim, device=self.device, generator=self.rng)
                w = mix_latents(w, self.frozen.mapping(z2), cross, self.frozen.n_latent)  # [B, n_latent, 512]
        return chosen, w, noise

    def step(self, step: int) -> tuple[dict[str, float], str | None]:
        """Train step ``step``: (this rank's loss terms, an error message when the loss or a gradient was not finite:
        the weights are then those of the step before)."""
        config, batch = self.config, self.config.batch_size
        chosen, w, noise = self.draw()
        mine = [chosen[j] for j in range(self.rank, len(chosen), self.world)]
        terms: dict[str, torch.Tensor] = {}
        if mine:
            texts = [self.blend(*item) for item in mine]
            inputs = torch.stack([u for u, _ in texts])  # [k, D]
            with torch.no_grad():
                feats_frozen = self.guide.image_features(self.frozen.synthesis(w, noise=noise).float())  # [B, D_m]
            k = len(mine)
            index = torch.arange(k, device=self.device).repeat_interleave(batch)  # [k*B]: sample -> prompt
            w_all = w.repeat(k, *([1] * (w.dim() - 1)))  # [k*B, ...]: prompt j's samples are block j
            noise_all = [nz.repeat(k, 1, 1, 1) for nz in noise]
            self.trained.set_style_offsets(self.net(inputs), index)  # [k, in] per layer
            try:
                feats = self.guide.image_features(self.trained.synthesis(w_all, noise=noise_all).float())
            finally:
                self.trained.set_style_offsets(None)  # no reference to this step's graph is kept
            direction, indomain = [], []
            for j, (_, dirs) in enumerate(texts):
                part = slice(j * batch, (j + 1) * batch)
                direction.append(sum(wm * directional_loss(ft[part], ff, d) for (_, wm), ft, ff, d
                                     in zip(self.guide.models, feats, feats_frozen, dirs)))
                if config.lambda_indomain > 0:
                    indomain.append(sum(wm * indomain_loss(ft[part], ff) for (_, wm), ft, ff
                                        in zip(self.guide.models, feats, feats_frozen)))
            scale = 1.0 / config.prompts_per_step  # the global K: see the module docstring
            terms["direction"] = config.lambda_direction * scale * sum(direction)
            if indomain:
                terms["indomain"] = config.lambda_indomain * scale * sum(indomain)
            terms["total"] = sum(terms.values())
            grads = torch.autograd.grad(terms["total"], self.params)
        else:
            terms["total"] = torch.zeros((), device=self.device)
            grads = [torch.zeros_like(p) for p in self.params]
        values = dict(zip(terms, torch.stack([v.detach().float() for v in terms.values()]).tolist()))
        for p, g in zip(self.params, grads):
            p.grad = g.detach().clone()
        if not math.isfinite(values["total"]):
            self.params[0].grad.fill_(float("nan"))  # every rank sees the failure through the all-reduce
        return values, None

    def finish_step(self, step: int, sync_grads: Callable[[nn.Module], None] | None, local: float) -> str | None:
        """All-reduce (when given) and the optimiser step, unless a gradient is not finite (then the error)."""
        if sync_grads is not None:
            sync_grads(self.net)
        finite = bool(torch.stack([p.grad.isfinite().all() for p in self.params]).all())
        if not finite:
            self.opt.zero_grad(set_to_none=True)
            return str(NonFiniteLossError(step, local if not math.isfinite(local) else float("nan")))
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.step_done = step
        self.net.meta["steps"] = step
        return None

    def state(self, pairs: list[tuple[str, str]]) -> dict:
        """A resumable snapshot (CPU copies): weights, optimiser, random streams, step, config, metadata."""
        opt = copy.deepcopy(self.opt.state_dict())
        for st in opt["state"].values():
            for key, value in st.items():
                if isinstance(value, torch.Tensor):
                    st[key] = value.detach().cpu()
        return {"format": STATE_FORMAT, "step": self.step_done,
                "hypernet": {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()},
                "optimizer": opt, "rng": self.rng.get_state().clone(), "py_rng": self.py.getstate(),
                "config": self.config.to_dict(), "meta": copy.deepcopy(self.net.meta), "prompts": prompts_digest(pairs)}

    def restore(self, state: dict) -> None:
        """Continue from :meth:`state`'s snapshot."""
        self.net.load_state_dict(state["hypernet"])
        self.opt.load_state_dict(state["optimizer"])
        self.rng.set_state(state["rng"])
        self.py.setstate(state["py_rng"])
        self.step_done = int(state["step"])
        self.net.meta["steps"] = self.step_done

    @torch.no_grad()
    def evaluate(self, held: list[tuple[str, str]], judge: list[tuple[nn.Module, float]]) -> dict:
        """Each held-out prompt's figures (:func:`nada.metrics.evaluate`) and their means."""
        per = {}
        for source, target in held:
            offsets = self.net(text_direction(self.clip_models, source, target, self.config.template))
            adapted = self.frozen.shared_copy().set_style_offsets({k: v.detach() for k, v in offsets.items()})
            figures = evaluate(self.frozen, adapted, judge, source, target, n=self.config.eval_samples, seed=0)
            per[f"{source} -> {target}"] = {k: v for k, v in figures.items() if isinstance(v, (int, float))}
        keys = [k for k in next(iter(per.values())) if k not in ("n", "seed", "truncation")]
        mean = {k: sum(f[k] for f in per.values()) / len(per) for k in keys}
        return {"step": self.step_done, "mean": mean, "prompts": per}


def _train(generator: Generator, clip_models: list[tuple[nn.Module, float]], pairs: list[tuple[str, str]],
           config: HyperConfig, held: list[tuple[str, str]], judge: list[tuple[nn.Module, float]],
           resume: dict | None, stop: threading.Event | None, rank: int, world: int,
           sync_grads: Callable[[nn.Module], None] | None, checkpoint: Callable[[dict, int], None] | None,
           source: str | None, fingerprint: str) -> Iterator[HyperProgress]:
    """The loop behind :func:`train_hypernet` (already checked)."""
    t0 = time.perf_counter()
    run = _Run(generator, clip_models, pairs, config, rank, world, source, fingerprint)
    if resume is not None:
        run.restore(resume)
    total = config.iterations
    evaluating = config.eval_every > 0 and held and rank == 0

    def record(losses: dict[str, float], figures: dict | None = None, **extra) -> HyperProgress:
        return HyperProgress(step=run.step_done, total=total, losses=losses, figures=figures, hypernet=run.net,
                             elapsed_s=time.perf_counter() - t0, **extra)

    losses: dict[str, float] = {}
    figures = None
    for step in range(run.step_done + 1, total + 1):
        if stop is not None and stop.is_set():
            break
        losses, _ = run.step(step)
        error = run.finish_step(step, sync_grads, losses["total"])
        if error is not None:
            yield record({}, done=True, error=error)
            return
        figures = run.evaluate(held, judge) if evaluating and step % config.eval_every == 0 else None
        if checkpoint is not None and config.checkpoint_every and step % config.checkpoint_every == 0:
            checkpoint(run.state(pairs), step)
        if step == total or (stop is not None and stop.is_set()):
            break
        yield record(losses, figures)
        figures = None
    yield record(losses, figures, done=True)
