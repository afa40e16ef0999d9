"""Zoo cases: K compact styles trained together in one batch (:func:`nada.zoo.adapt_many`), one step timed.

``zoo256_compact_k1`` / ``_k4`` / ``_k8``: StyleDomain's compact recipe (``style_delta`` offsets, batch 4 per style,
ViT-B/32 + ViT-B/16, random weights, real architectures) on a 256 px StyleGAN2, K styles with different prompts and
seeds. Each reports ``s_per_style_step``, the step's seconds / K (and ``cpu_s_per_style_step``, the process CPU
seconds, steadier on a shared machine): K separate runs take K times ``k1``'s step, so
batching pays where a larger K has a smaller ``s_per_style_step`` than ``k1``. Run them one after another, alone
(``python -m bench --cases zoo256_compact_k1,zoo256_compact_k4,zoo256_compact_k8``); memory grows by ~2.8 GB per style
(the CLIP models' activations for backward, mostly), so ``k8`` needs more than a 24 GB machine has.
``zoo1024_compact_k1`` / ``_k8`` / ``_k32`` (a GPU's, run by bench/gpu_check.sh) are the same at 1024 px; ``k32`` (128
images a step) recomputes the generator's activations in backward (``grad_checkpointing``) to fit in GPU memory.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from nada.model_store import serving_impl
from nada.nets.stylegan2 import Generator
from nada.train import AdaptConfig
from nada.zoo import adapt_many

from .adapt import VIT, random_clip

TARGETS = ("Sketch", "Pixar character", "Anime painting", "Mona Lisa painting", "Werewolf", "Zombie", "Pop art",
           "Watercolor painting")  # prompts of the zoo cases, in turn


def zoo_configs(k: int, **overrides) -> list[AdaptConfig]:
    """K compact-recipe configs, differing in target prompt and seed, that run for as long as the bench steps."""
    return [AdaptConfig.from_recipe("compact", source_text="Photo", target_text=TARGETS[i % len(TARGETS)], seed=i,
                                    iterations=10_000, preview_every=0, **overrides) for i in range(k)]


def zoo_case(size: int, k: int, **overrides) -> Callable[[torch.device], tuple]:
    """A case: one batched step of ``k`` compact styles at ``size`` px (``overrides`` on the recipe), with the
    seconds per style-step."""

    def setup(device: torch.device):
        torch.manual_seed(0)
        g = serving_impl(Generator(size).to(device).eval(), device)
        clips = [(random_clip(p, device), 1.0) for p in VIT.values()]
        steps = adapt_many(g, clips, zoo_configs(k, **overrides))
        times: list[tuple[float, float]] = []  # (wall, process CPU) seconds per step

        def run() -> None:
            t0, c0 = time.perf_counter(), time.process_time()
            records = next(steps)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append((time.perf_counter() - t0, time.process_time() - c0))
            assert all(r is not None and r.error is None for r in records)

        def extra() -> dict[str, float]:
            timed = times[1:] or times  # the first step also sets up (copies, previews)
            step_s, cpu_s = (statistics.median(t[i] for t in timed) for i in (0, 1))
            return {"styles": k, "images_per_step": k * zoo_configs(1)[0].batch_size,
                    "s_per_style_step": step_s / k, "cpu_s_per_style_step": cpu_s / k}

        return run, extra

    return setup


CASES = {
    "zoo256_compact_k1": zoo_case(256, 1),
    "zoo256_compact_k4": zoo_case(256, 4),
    "zoo256_compact_k8": zoo_case(256, 8),
    "zoo1024_compact_k1": zoo_case(1024, 1),
    "zoo1024_compact_k8": zoo_case(1024, 8),
    "zoo1024_compact_k32": zoo_case(1024, 32, grad_checkpointing=True),
}
OPTIONAL = ("zoo256_compact_k1", "zoo256_compact_k4", "zoo256_compact_k8", "zoo1024_compact_k1",
            "zoo1024_compact_k8", "zoo1024_compact_k32")
