"""Tiny random models with the real architectures: the offline stand-ins behind ``NADA_TINY=1``, ``--tiny`` and the
tests. They are deterministic (seeded), so a style trained on the tiny generator applies to it again later."""

from __future__ import annotations

import torch

from .clip_models import import_clip
from .nets.stylegan2 import Generator
from .nets.stylegan3 import StyleGAN3Generator

TINY_GENERATOR = {"size": 32, "style_dim": 32, "n_mlp": 2, "channel_multiplier": 1, "channel_max": 16}
# A StyleGAN3 of the same scale: NVIDIA's layer plan (16 W+ rows, filters, margins) at 32 px with 8-16 channels.
TINY_STYLEGAN3 = {"z_dim": 32, "w_dim": 32, "img_resolution": 32, "channel_base": 256, "channel_max": 16,
                  "magnitude_ema_beta": 0.999}
TINY_NAME = "tiny"  # the source name the CLI and the app give the tiny generator (see nada.model_store)
# The source name of tiny mode's inversion generator (256 px, 512-d codes: e4e's; nada.invert.tiny_inversion_models),
# recorded in and checked against the styles made for it (``invert --tiny``, the app in tiny mode).
TINY_INVERT = "tiny-invert"


def tiny_generator(seed: int = 0, **overrides) -> Generator:
    """A 32 px, 16-channel StyleGAN2 with non-trivial random weights, eval mode."""
    gen = torch.Generator().manual_seed(seed)
    g = Generator(**{**TINY_GENERATOR, **overrides})
    with torch.no_grad():
        for name, p in g.named_parameters():  # re-draw everything from the seeded stream (independent of global RNG)
            if name.endswith("noise.weight") or name.endswith("activate.bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith("modulation.bias"):
                p.fill_(1.0)
            elif not name.endswith("bias"):
                lr_mul = 0.01 if name.startswith("style.") else 1.0  # mapping weights are stored as N / lr_mul
                p.copy_(torch.randn(p.shape, generator=gen) / lr_mul)
        for b in g.noise_buffers():
            b.copy_(torch.randn(b.shape, generator=gen))
    return g.eval()


def tiny_stylegan3(seed: int = 0, radial: bool = False, **overrides) -> StyleGAN3Generator:
    """A 32 px StyleGAN3-T (``radial``: -R, 1x1 convolutions and radial filters) with non-trivial random weights:
    biases, ``magnitude_ema``, ``w_avg`` and the input's rotation/translation affine all away from their
    initial values; eval mode."""
    gen = torch.Generator().manual_seed(seed)
    kwargs = {**TINY_STYLEGAN3, **({"conv_kernel": 1, "use_radial_filters": True} if radial else {}), **overrides}
    with torch.random.fork_rng(devices=[]):  # the input layer's frequencies and phases: drawn from this seed too,
        torch.manual_seed(seed)  # so the same seed gives the same generator whatever ran before
        g = StyleGAN3Generator(**kwargs)
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith("affine.bias"):
                p.copy_((1.0 if "input" not in name else torch.tensor([1.0, 0.0, 0.0, 0.0]))
                        + 0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif name == "synthesis.input.affine.weight":  # zero in NVIDIA's initialisation: row 0 would do nothing
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            else:
                lr_mul = 0.01 if name.startswith("mapping.") else 1.0  # mapping weights are stored as N / lr_mul
                p.copy_(torch.randn(p.shape, generator=gen) / lr_mul)
        for name, b in g.named_buffers():
            if name.endswith("magnitude_ema"):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen))
            elif name == "mapping.w_avg":
                b.copy_(0.3 * torch.randn(b.shape, generator=gen))
    return g.eval()


def tiny_clip(seed: int = 0, image_resolution: int = 32) -> torch.nn.Module:
    """A tiny random OpenAI-architecture CLIP (ViT, 32 px input, 32-d embeddings), frozen, float32."""
    clip = import_clip()
    torch.manual_seed(seed)
    model = clip.model.CLIP(embed_dim=32, image_resolution=image_resolution, vision_layers=1, vision_width=64,
                            vision_patch_size=8, context_length=77, vocab_size=49408, transformer_width=32,
                            transformer_heads=2, transformer_layers=1)
    return model.float().eval().requires_grad_(False)
