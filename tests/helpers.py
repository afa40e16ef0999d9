"""Plain helpers the tests import: the project root, tiny random models, a hub cache laid out by hand.

(pytest fixtures and hooks live in ``conftest.py``; reference-fixture files are found with ``tests/fixtures.py``.)
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from nada import tiny
from nada.clip_models import import_clip
from nada.nets.stylegan2 import Generator

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def make_tiny_generator(seed: int = 0, **overrides) -> Generator:
    """A tiny random StyleGAN2 (32 px, 16 channels) with non-trivial weights, in eval mode."""
    return tiny.tiny_generator(seed, **overrides)


make_tiny_clip = tiny.tiny_clip  # a tiny random OpenAI-architecture CLIP, frozen


def synthesis_and_wplus_grad(generator: Generator, wp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, gradient of a fixed linear read-out of them with respect to W+ ``wp``): what the convolution paths
    of two generators on the same weights must agree on."""
    w = wp.clone().requires_grad_(True)
    out = generator.synthesis(w)
    grad = torch.autograd.grad((out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum(), w)[0]
    return out.detach(), grad


def adapt_args(**over) -> dict:
    """The Adapt tab's values after (store, runs, session), in wiring order (a 4-step tiny run), with ``over``."""
    values = dict(source="tiny", source_text="Photo", target_text="Sketch", iterations=4, layers_k=0, probe=True,
                  clip_names=["clip-vit-b32"], lambda_direction=1.0, lambda_global=0.0, lambda_id=0.0, lambda_l2=0.0,
                  seed=0, lr=0.002, batch_size=2)
    values.update(over)
    return values


def put_in_hub_cache(cache: Path, repo_id: str, filename: str, payload: bytes, revision: str = "main") -> Path:
    """Lay a file out exactly as huggingface_hub caches it (``models--org--name/snapshots/<sha>/file``)."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    sha = "0123456789abcdef0123456789abcdef01234567"
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / revision).write_text(sha)
    target = repo_dir / "snapshots" / sha / filename
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(payload)
    return target


# A CLIP stand-in with a known embedding space: an image is its mean colour, a text the sum of its colour words.
COLOURS = {"red": (1.0, 0.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0, 0.0), "blue": (0.0, 0.0, 1.0, 0.0),
           "photo": (0.0, 0.0, 0.0, 1.0)}


class ColourClip(nn.Module):
    """A CLIP stand-in with the ``clip`` interface and a known embedding space (see the module docstring)."""

    def __init__(self, k: float = 10.0, resolution: int = 32, channels: tuple[int, int, int] = (0, 1, 2)):
        super().__init__()
        self.k, self.channels = k, list(channels)
        self.visual = SimpleNamespace(input_resolution=resolution)
        tokens = import_clip().tokenize(list(COLOURS))  # [W, 77]: start token, the word, end token
        self.word_ids = {w: int(tokens[i, 1]) for i, w in enumerate(COLOURS)}
        self.calls = 0

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[N, 3, R, R] -> [N, 4]``: the (permuted) mean colour and a constant."""
        assert pixels.shape[-1] == self.visual.input_resolution
        self.calls += 1
        mean = pixels.mean(dim=(2, 3))[:, self.channels]  # [N, 3]
        return torch.cat([mean, torch.full_like(mean[:, :1], self.k)], dim=1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[T, 77] -> [T, 4]``: the sum of the known words' colours."""
        out = torch.zeros(tokens.shape[0], 4)
        for word, wid in self.word_ids.items():
            out += (tokens == wid).sum(dim=1, keepdim=True).float() * torch.tensor(COLOURS[word])
        return out
