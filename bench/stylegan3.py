"""StyleGAN3 generator cases: mapping + synthesis of one image, no gradients, at NVIDIA's public configs with random
weights (``--cfg stylegan3-t``: channel base 32768, max 512; ``stylegan3-r``: 65536 and 1024, 1x1 convolutions,
radial filters).

Run alone: ``python -m bench --cases gen_sg3t_256,gen_sg3t_1024``; ``gen_sg3r_1024``, ``gen_sg3t_256_fwdbwd_b2``
(forward and backward through every synthesis weight at batch 2) and ``adapt_sg3t_256`` (one step of the paper recipe
on a StyleGAN3-T at 256 px: every row, batch 2, random ViT-B/32 + ViT-B/16) run only when named. Each case also reports
``cpu_s``, the process CPU seconds of one run (both threads' work; on a shared machine a steadier figure than wall
time)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from nada.model_store import serving_impl
from nada.nets.stylegan3 import StyleGAN3Generator

from .adapt import adapt_case
from .common import tuner_figures

PUBLIC = {
    "t": {"channel_base": 32768, "channel_max": 512},
    "r": {"channel_base": 65536, "channel_max": 1024, "conv_kernel": 1, "use_radial_filters": True},
}


def public_sg3(arch: str) -> Callable[[int], StyleGAN3Generator]:
    """A builder of random StyleGAN3-``arch`` generators at NVIDIA's public config, by size."""
    return lambda size: StyleGAN3Generator(img_resolution=size, mapping_kwargs={"num_layers": 2}, **PUBLIC[arch])


def generate_case(arch: str, size: int, batch: int = 1) -> Callable[[torch.device], tuple]:
    """A case: ``batch`` images of a random public-config StyleGAN3-``arch`` at ``size`` px, truncation 0.7."""

    def setup(device: torch.device) -> tuple:
        torch.manual_seed(0)
        g = public_sg3(arch)(size)
        g = serving_impl(g.to(device).eval().requires_grad_(False), device)
        z = torch.randn(batch, 512, device=device)
        cpu: list[float] = []

        def run() -> torch.Tensor:
            start = time.process_time()
            with torch.no_grad():
                out = g(z, truncation=0.7)
            cpu.append(time.process_time() - start)
            return out

        return run, lambda: {**tuner_figures(g), "cpu_s": round(min(cpu[1:] or cpu), 3)}

    return setup


def fwdbwd_case(arch: str, size: int, batch: int) -> Callable[[torch.device], tuple]:
    """A case: forward and backward through every synthesis weight (what a training step costs the generator)."""

    def setup(device: torch.device) -> tuple:
        torch.manual_seed(0)
        g = StyleGAN3Generator(img_resolution=size, mapping_kwargs={"num_layers": 2}, **PUBLIC[arch]).to(device)
        z = torch.randn(batch, 512, device=device)
        cpu: list[float] = []

        def run() -> None:
            start = time.process_time()
            g.zero_grad(set_to_none=True)
            g.synthesis(g.mapping(z).detach()).square().mean().backward()
            cpu.append(time.process_time() - start)

        return run, lambda: {"cpu_s": round(min(cpu[1:] or cpu), 3)}

    return setup


CASES = {
    "gen_sg3t_256": generate_case("t", 256),
    "gen_sg3t_1024": generate_case("t", 1024),
    "gen_sg3r_1024": generate_case("r", 1024),
    "gen_sg3t_256_fwdbwd_b2": fwdbwd_case("t", 256, 2),
    "adapt_sg3t_256": adapt_case(256, probe=True, layers_k=None, make=public_sg3("t")),
}
OPTIONAL = ("gen_sg3r_1024", "gen_sg3t_256_fwdbwd_b2", "adapt_sg3t_256")
