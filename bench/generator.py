"""Generator cases: 1024 forward at batch 1 and 4, 256 at batch 8, 1024 forward+backward at batch 2.

Run alone: ``python -m bench --cases gen1024_b1,gen1024_b4,gen256_b8,gen1024_fwdbwd_b2``."""

from __future__ import annotations

from collections.abc import Callable

import torch

from nada.model_store import serving_impl
from nada.nets.stylegan2 import Generator

from .common import tuner_figures


def _generator(size: int, device: torch.device) -> Generator:
    """A random ``size`` px generator, convolving as the app's and the CLI's do (per-shape timed paths on a CPU)."""
    torch.manual_seed(0)
    return serving_impl(Generator(size).to(device).eval().requires_grad_(False), device)


def forward_case(size: int, batch: int) -> Callable[[torch.device], tuple]:
    """A case: mapping + synthesis of ``batch`` images at ``size`` with no gradients."""

    def setup(device: torch.device) -> Callable[[], object]:
        g = _generator(size, device)
        z = torch.randn(batch, 512, device=device)

        def run() -> torch.Tensor:
            with torch.no_grad():
                return g(z, truncation=0.7, w_avg=torch.zeros(1, 512, device=device))

        return run, lambda: tuner_figures(g)

    return setup


def fwdbwd_case(size: int, batch: int) -> Callable[[torch.device], tuple]:
    """A case: forward and backward through every synthesis weight (what a training step costs the generator)."""

    def setup(device: torch.device) -> Callable[[], object]:
        g = _generator(size, device)
        g.requires_grad_(True)
        z = torch.randn(batch, 512, device=device)

        def run() -> None:
            g.zero_grad(set_to_none=True)
            g.synthesis(g.mapping(z).detach(), noise_mode="random").square().mean().backward()

        return run, lambda: tuner_figures(g)

    return setup


CASES = {
    "gen1024_b1": forward_case(1024, 1),
    "gen1024_b4": forward_case(1024, 4),
    "gen256_b8": forward_case(256, 8),
    "gen1024_fwdbwd_b2": fwdbwd_case(1024, 2),
}
