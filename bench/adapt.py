"""Adaptation-step cases at the paper's settings: batch 2, ViT-B/32 + ViT-B/16 (random weights, real
architectures), probing 1 SGD step on 8 latents every step to pick 2/3 of the W+ rows (or no probing: every
convolution trains, as in the "paper" recipe). The step time is split into probe / frozen (no-grad pass + CLIP) /
forward / clip (trainable features and losses) / backward / optimizer."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from nada.clip_models import import_clip
from nada.model_store import serving_impl
from nada.nets.stylegan2 import Generator
from nada.styles import load_style, save_style, style_from_generators
from nada.train import COMPACT_LR, RECIPES, AdaptConfig, adapt

from .common import tuner_figures

VIT = {"ViT-B/32": 32, "ViT-B/16": 16}


def random_clip(patch: int, device: torch.device) -> torch.nn.Module:
    """An OpenAI CLIP ViT-B/<patch> with random weights (the released architecture), frozen."""
    clip = import_clip()
    torch.manual_seed(patch)
    model = clip.model.CLIP(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
                            vision_patch_size=patch, context_length=77, vocab_size=49408, transformer_width=512,
                            transformer_heads=8, transformer_layers=12)
    return model.float().eval().requires_grad_(False).to(device)


def style_figures(source: Generator, trained: Generator) -> dict[str, float]:
    """The style file the trained copy makes: its size (KiB) and the seconds to load it (safetensors, from disk)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = save_style(style_from_generators(source, trained, {"source": "bench"}), Path(tmp) / "s.safetensors")
        t0 = time.perf_counter()
        style = load_style(path)
        load_s = time.perf_counter() - t0
        return {"style_kib": round(path.stat().st_size / 1024, 1), "style_load_s": load_s,
                "style_numbers": float(sum(v.numel() for v in style.tensors.values()))}


def adapt_case(size: int, probe: bool, style_file: bool = False, make: Callable[[int], torch.nn.Module] = Generator,
               **overrides) -> Callable[[torch.device], tuple]:
    """A case: one adaptation step (timed per step), with the per-phase split as extra figures (and, with
    ``style_file``, the size and load time of the style file the trained copy makes). ``make(size)`` builds the
    generator (default: our StyleGAN2 at rosinality's config-f)."""

    def setup(device: torch.device):
        torch.manual_seed(0)
        g = serving_impl(make(size).to(device).eval(), device)  # adaptation times its paths with g's tuner
        clips = [(random_clip(p, device), 1.0) for p in VIT.values()]
        # probe: 2/3 of the rows (the "shape" recipe); with every row chosen (layers_k=None, the "paper" recipe)
        # nada skips the probe, which could not change the choice. No probe: every convolution trains.
        settings = dict(source_text="Photo", target_text="Sketch", iterations=10_000, batch_size=2, probe_batch=8,
                        probe_iters=1 if probe else 0, layers_k=2 / 3 if probe else 0, preview_every=0, profile=True)
        cfg = AdaptConfig(**{**settings, **overrides})
        it = adapt(g, clips, cfg)
        phases: list[dict[str, float]] = []
        last: list = []

        def run() -> None:
            rec = next(it)
            phases.append(rec.timings)
            last[:] = [rec]

        def extra() -> dict[str, float]:
            timed = phases[1:] or phases  # drop the warm-up step
            out = {k: statistics.median(p.get(k, 0.0) for p in timed) for k in timed[0]} | tuner_figures(g)
            return {**out, **style_figures(g, last[0].generator)} if style_file else out

        return run, extra

    return setup


_RECIPE = {name: {k: v for k, v in RECIPES[name].settings.items() if k != "iterations"}  # a step, not a run
           for name in ("compact", "diverse")}
CASES = {
    "adapt256_probe": adapt_case(256, probe=True),
    "adapt256_noprobe": adapt_case(256, probe=False),
    "adapt1024_probe": adapt_case(1024, probe=True),
    # the default recipe (the official README command: every row, so no probe is needed) at 256 px
    "adapt256_paper": adapt_case(256, probe=True, layers_k=None),
    # the "compact" recipe's step (StyleDomain's s_delta offsets, batch 4, mixing 0.9, in-domain 0.25, coarse rows
    # frozen), with the style file it makes; "adapt256_modulation" is the compact step as it was before (the paper's
    # step training s * (1 + delta) offsets, batch 2)
    "adapt256_compact": adapt_case(256, probe=True, style_file=True, layers_k=None, **_RECIPE["compact"]),
    "adapt1024_compact": adapt_case(1024, probe=True, style_file=True, layers_k=None, **_RECIPE["compact"]),
    "adapt256_modulation": adapt_case(256, probe=True, style_file=True, layers_k=None, params="modulation",
                                      lr=COMPACT_LR),
    "adapt256_paper_file": adapt_case(256, probe=True, style_file=True, layers_k=None),  # the weight style's file
    # the "diverse" recipe (StyleDomain's td_nada_ffhq.yaml: every layer and ToRGB on a batch of 4 with mixing and
    # the in-domain loss); the paper's step on the same batch (what the loss and the ToRGB layers cost)
    "adapt256_diverse": adapt_case(256, probe=True, layers_k=None, **_RECIPE["diverse"]),
    "adapt256_paper_b4": adapt_case(256, probe=True, layers_k=None,
                                    batch_size=RECIPES["diverse"].settings["batch_size"]),
    # options that change the computation (not part of the comparison with the reference)
    "adapt256_probe_bf16": adapt_case(256, probe=True, bf16=True),
    "adapt256_noprobe_bf16": adapt_case(256, probe=False, bf16=True),
    # the app's step at 1024 px without the probe and under bf16 (GPU sizing: bench/gpu_check.sh)
    "adapt1024_noprobe": adapt_case(1024, probe=False),
    "adapt1024_probe_bf16": adapt_case(1024, probe=True, bf16=True),
    "adapt1024_noprobe_bf16": adapt_case(1024, probe=False, bf16=True),
}
# Run only when named (--cases): minutes per case on a CPU, and the GPU check runs them itself.
OPTIONAL = ("adapt1024_noprobe", "adapt1024_probe_bf16", "adapt1024_noprobe_bf16", "adapt1024_compact",
            "adapt256_paper_file", "adapt256_paper_b4", "adapt256_modulation")
