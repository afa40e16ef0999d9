"""Will an adaptation run fit? A coarse, architecture-based estimate of its peak memory, and a check against the
free memory of a CUDA device, so the app and the CLI can refuse settings before they run out of memory.

The estimate counts what dominates: three generator copies' weights plus Adam state, the CLIP models, and the
activations kept for backward (about three full-size tensors per synthesis layer per image, the larger of the
probe micro-batch and the training batch; 0.81x under bf16, as measured). It is meant to be on the safe side, not
exact. Free memory counts what the CUDA driver reports plus what PyTorch's caching allocator holds but does not use.
"""

from __future__ import annotations

import torch

from .nets.stylegan2 import Generator

GIB = 2**30
_SAVED_PER_LAYER = 6.0  # full-size tensors per StyledConv kept for backward, with headroom (fit to CPU peaks)
_CLIP_ACT_PER_IMAGE = 160 * 2**20  # bytes per image per CLIP model with gradients to the image (ViT-B, fp32)
_BF16_SAVED = 0.81  # saved-tensor bytes under bf16 autocast vs float32, measured: the fused conv output stays float32


def synthesis_activation_bytes(generator: Generator, batch: int, bf16: bool = False) -> int:
    """Bytes of the activations a synthesis pass keeps for backward, for ``batch`` images."""
    if hasattr(generator, "channels"):  # StyleGAN2: two StyledConvs per resolution
        per_image = sum(2 * c * r * r for r, c in generator.channels.items())
    else:  # StyleGAN3: each layer keeps its input and its up-sampled activation (up^2 times the output's pixels)
        per_image = sum(m.plan.in_channels * m.plan.in_size ** 2 + m.plan.out_channels * (m.plan.up * m.plan.out_size)
                        ** 2 for m in generator.modulated_convs().values())
    return int(_SAVED_PER_LAYER * per_image * batch * 4 * (_BF16_SAVED if bf16 else 1.0))


def estimate_adapt_bytes(generator: Generator, n_clip: int, batch_size: int, probe_batch: int,
                         probe_micro_batch: int, bf16: bool, grad_checkpointing: bool = False,
                         clip_params: int = 150_000_000) -> int:
    """Rough peak memory of one adaptation step (bytes)."""
    params = sum(p.numel() for p in generator.parameters())
    weights = params * 4 * (2 + 2)  # the caller's (also the frozen) copy, the trainable one, Adam's two moments
    clips = n_clip * clip_params * 4
    images = max(batch_size, min(probe_batch, probe_micro_batch))
    act = synthesis_activation_bytes(generator, images, bf16)
    if grad_checkpointing:
        act //= 4
    return int(weights + clips + act + n_clip * images * _CLIP_ACT_PER_IMAGE)


def cuda_free_bytes(device: torch.device) -> int:
    """Memory a new allocation can use on a CUDA device: the driver's free memory plus the blocks PyTorch's caching
    allocator has reserved but is not using (a second run in a long-lived process reuses those)."""
    free, _ = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


def check_fits(generator: Generator, clip_models: list[torch.nn.Module], batch_size: int, probe_batch: int,
               probe_micro_batch: int, bf16: bool, grad_checkpointing: bool = False,
               free_bytes: int | None = None) -> int:
    """Raise ``ValueError`` with advice when the memory a run still has to allocate (the estimate less the generator
    and CLIP models already loaded) exceeds the free memory; return that amount in bytes.

    ``free_bytes`` defaults to the free memory of the generator's CUDA device; on the CPU nothing is checked."""
    clip_params = [sum(p.numel() for p in m.parameters()) for m in clip_models]
    total = estimate_adapt_bytes(generator, len(clip_models), batch_size, probe_batch, probe_micro_batch, bf16,
                                 grad_checkpointing, clip_params=max(clip_params, default=0))
    resident = 4 * (sum(p.numel() for p in generator.parameters()) + sum(clip_params))
    need = max(total - resident, 0)
    device = generator.device
    if free_bytes is None:
        if device.type != "cuda":
            return need
        free_bytes = cuda_free_bytes(device)
    if need > free_bytes:
        raise ValueError(
            f"These settings need about {need / GIB:.1f} GiB of GPU memory, but only {free_bytes / GIB:.1f} GiB is "
            "free. Lower the batch size or the probe batch, use one CLIP model, or turn on gradient checkpointing.")
    return need
