"""Instant-style cases (:mod:`nada.hyper`): what training a hypernetwork costs per step, and what a style costs.

``hyper_step_256``: one training step of :func:`nada.hyper.train_hypernet` on a 256 px StyleGAN2 (random weights,
rosinality's config-f architecture) with ViT-B/32 + ViT-B/16 (random weights, the released architectures): K = 4
prompts of 2 latents each rendered in one batch with per-sample offsets, directional loss, backward, Adam. Reports
``prompts`` (K), ``images_per_step`` and ``s_per_prompt`` (the step's seconds / K).
``hyper_step_1024_k8`` (a GPU's, run by bench/gpu_check.sh): the same at 1024 px with K = 8, so the first GPU run
tells how long a real hypernetwork takes to train (steps x this).
``hyper_style``: seconds from text to style: both CLIP text encoders (text direction), the hypernetwork's forward and
the :class:`~nada.styles.Style`, for a fresh hypernetwork of the default width on the 256 px generator.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from nada.hyper import HyperConfig, Hypernet, train_hypernet
from nada.model_store import serving_impl
from nada.nets.stylegan2 import Generator

from .adapt import VIT, random_clip
from .zoo import TARGETS

CLIP_NAMES = ("clip-vit-b32", "clip-vit-b16")  # the names the random models stand for (recorded, not loaded)


def hyper_config(k: int, **overrides) -> HyperConfig:
    """The bench's hypernetwork settings: K prompts of 2 latents a step, for as long as the bench steps."""
    return HyperConfig(iterations=10_000, prompts_per_step=k, batch_size=2, clip_models=CLIP_NAMES,
                       checkpoint_every=0, eval_every=0, **overrides)


def models(size: int, device: torch.device) -> tuple[Generator, list]:
    """The generator (serving convolutions, as the app's) and the two random CLIP models, seeded."""
    torch.manual_seed(0)
    g = serving_impl(Generator(size).to(device).eval(), device)
    return g, [(random_clip(p, device), 1.0) for p in VIT.values()]


def step_case(size: int, k: int, **overrides) -> Callable[[torch.device], tuple]:
    """A case: one hypernetwork training step with ``k`` prompts at ``size`` px, with the seconds per prompt."""

    def setup(device: torch.device):
        g, clips = models(size, device)
        steps = train_hypernet(g, clips, list(TARGETS), hyper_config(k, **overrides), source="bench")
        times: list[float] = []

        def run() -> None:
            t0 = time.perf_counter()
            record = next(steps)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t0)
            assert record.error is None, record.error

        def extra() -> dict[str, float]:
            step_s = statistics.median(times[1:] or times)  # the first step also sets up (text directions, copies)
            return {"prompts": k, "images_per_step": k * hyper_config(k).batch_size, "s_per_prompt": step_s / k}

        return run, extra

    return setup


def style_case(size: int) -> Callable[[torch.device], tuple]:
    """A case: text to style (text direction with both CLIP models, forward, Style) with a fresh hypernetwork."""

    def setup(device: torch.device):
        g, clips = models(size, device)
        hypernet = Hypernet.for_generator(g, clips, hyper_config(1), source="bench")
        prompts = iter(TARGETS * 10_000)

        def run() -> None:
            style = hypernet.style(clips, "Photo", next(prompts))
            assert style.kind == "style_delta" and style.tensors

        def extra() -> dict[str, float]:
            return {"offsets": float(sum(hypernet.layers.values())),
                    "hypernet_params": float(sum(p.numel() for p in hypernet.parameters()))}

        return run, extra

    return setup


CASES = {
    "hyper_step_256": step_case(256, 4),
    "hyper_style": style_case(256),
    "hyper_step_1024_k8": step_case(1024, 8),
}
OPTIONAL = ("hyper_step_1024_k8",)
