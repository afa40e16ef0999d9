"""The memory estimate that lets the app refuse settings that would not fit."""

from __future__ import annotations

import pytest
import torch

from nada.memory import GIB, check_fits, cuda_free_bytes, estimate_adapt_bytes, synthesis_activation_bytes
from nada.nets.stylegan2 import Generator


def test_estimate_grows_with_size_batch_and_shrinks_with_bf16_and_checkpointing():
    g256, g1024 = Generator(256), Generator(1024)
    base = dict(n_clip=2, batch_size=2, probe_batch=8, probe_micro_batch=2, bf16=False)
    e256, e1024 = estimate_adapt_bytes(g256, **base), estimate_adapt_bytes(g1024, **base)
    assert e1024 > e256 > 2 * GIB
    assert estimate_adapt_bytes(g1024, **{**base, "batch_size": 8}) > e1024
    assert estimate_adapt_bytes(g1024, **{**base, "bf16": True}) < e1024
    assert estimate_adapt_bytes(g1024, **base, grad_checkpointing=True) < e1024
    # the paper's settings at 1024 (bf16 on a GPU) fit a 16 GB card
    assert estimate_adapt_bytes(g1024, **{**base, "bf16": True}) < 15 * GIB


def test_check_fits_refuses_with_advice(tiny_clip):
    g = Generator(256)
    with pytest.raises(ValueError, match="GiB of GPU memory.*batch size"):
        check_fits(g, [tiny_clip, tiny_clip], 2, 8, 8, bf16=False, free_bytes=1 * GIB)
    need = check_fits(g, [tiny_clip], 2, 8, 8, bf16=False, free_bytes=64 * GIB)
    # what is already loaded (the caller's generator, the CLIP models) is not counted again
    total = estimate_adapt_bytes(g, 1, 2, 8, 8, bf16=False, clip_params=sum(p.numel() for p in tiny_clip.parameters()))
    assert 0 < need < total


def test_bf16_keeps_the_measured_share_of_saved_tensors():
    g = Generator(256)
    full = synthesis_activation_bytes(g, 2)
    assert synthesis_activation_bytes(g, 2, bf16=True) == pytest.approx(0.81 * full, rel=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_free_memory_counts_blocks_the_allocator_holds_but_does_not_use():
    device = torch.device("cuda")
    x = torch.empty(256 * 2**20, dtype=torch.uint8, device=device)
    del x  # 256 MiB stays reserved in PyTorch's cache
    driver_free, _ = torch.cuda.mem_get_info(device)
    assert cuda_free_bytes(device) >= driver_free + 256 * 2**20 - 2**20
