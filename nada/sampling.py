"""Rendering seeds: the one path from integer seeds to images, shared by the CLI, the app and the previews."""

from __future__ import annotations

import torch

from .stylegan2 import Generator, seeded_z, truncate


def seed_latents(generator: Generator, seeds: list[int], truncation: float = 1.0,
                 w_avg: torch.Tensor | None = None) -> torch.Tensor:
    """Mapped (and truncated) latents for integer seeds -> w [len(seeds), 512]."""
    z = seeded_z(seeds, generator.style_dim).to(generator.input.input)  # [N, 512], module device/dtype
    w = generator.mapping(z)  # [N, 512]
    if truncation != 1.0:
        w = truncate(w, w_avg if w_avg is not None else generator.truncation_center(), truncation)
    return w


def render_seeds(generator: Generator, seeds: list[int], truncation: float = 1.0, batch: int = 4,
                 w_avg: torch.Tensor | None = None, noise_mode: str = "const") -> torch.Tensor:
    """Images for integer seeds, ``batch`` at a time -> [len(seeds), 3, size, size] on the CPU."""
    if w_avg is None and truncation != 1.0:
        w_avg = generator.truncation_center()
    out = []
    for i in range(0, len(seeds), batch):
        w = seed_latents(generator, seeds[i:i + batch], truncation, w_avg)
        out.append(generator.synthesis(w, noise_mode=noise_mode).cpu())
    return torch.cat(out)
