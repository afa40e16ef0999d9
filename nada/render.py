"""Turning generator outputs into pictures: the one place where [-1, 1] tensors become uint8 images."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .nets.stylegan2 import Generator, seeded_z, truncate


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] in roughly [-1, 1] -> uint8 array [N, H, W, 3] (clamped, rounded)."""
    x = ((img.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # [N, 3, H, W]
    return x.permute(0, 2, 3, 1).cpu().numpy()


def to_pil(img: torch.Tensor) -> list[Image.Image]:
    """[N, 3, H, W] generator output -> list of RGB PIL images."""
    return [Image.fromarray(a) for a in to_uint8(img)]


def image_grid(rows: list[torch.Tensor], size: int | None = None) -> Image.Image:
    """Tile rows of images (each [N, 3, H, W], same N) into one PIL grid; ``size`` resizes each tile."""
    tiles = [to_pil(r) for r in rows]
    if size is not None:
        tiles = [[t.resize((size, size), Image.LANCZOS) for t in row] for row in tiles]
    w, h = tiles[0][0].size
    grid = Image.new("RGB", (w * max(len(r) for r in tiles), h * len(tiles)))
    for i, row in enumerate(tiles):
        for j, tile in enumerate(row):
            grid.paste(tile, (j * w, i * h))
    return grid


def seed_latents(generator: Generator, seeds: list[int], truncation: float = 1.0,
                 w_avg: torch.Tensor | None = None) -> torch.Tensor:
    """Mapped (and truncated) latents for integer seeds -> w [len(seeds), 512]."""
    z = seeded_z(seeds, generator.style_dim).to(next(generator.parameters()))  # [N, 512], module device/dtype
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
