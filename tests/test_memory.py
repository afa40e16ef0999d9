"""The memory estimate that lets the app refuse settings that would not fit."""

from __future__ import annotations

import pytest

from nada.memory import GIB, check_fits, estimate_adapt_bytes
from nada.stylegan2 import Generator


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
