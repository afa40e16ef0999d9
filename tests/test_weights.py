"""Where weights come from: the hub cache path (offline), local files, and clear errors for bad checkpoints."""

from __future__ import annotations

import dataclasses
import io
import os
import time

import pytest
import torch

from nada import weights
from nada.weights import CheckpointError, WeightsUnavailableError, load_generator, load_state_dict_file

from .helpers import make_tiny_generator, put_in_hub_cache


def _ckpt_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_registry_name_loads_through_the_hub_cache(hub_cache, tiny_generator):
    asset = weights.REGISTRY["ffhq"]
    latent_avg = torch.randn(512 // 16)  # tiny style_dim is 32
    put_in_hub_cache(hub_cache, asset.repo_id, asset.filename,
                     _ckpt_bytes({"g_ema": tiny_generator.state_dict(), "latent_avg": latent_avg}))
    g = load_generator("ffhq", "cpu")
    assert g.channels == tiny_generator.channels and g.n_latent == tiny_generator.n_latent
    for k, v in tiny_generator.state_dict().items():
        assert torch.equal(g.state_dict()[k], v), k
    assert torch.equal(g.latent_avg, latent_avg[None])  # used as the truncation centre
    assert torch.equal(g.truncation_center(), latent_avg[None])


def test_offline_without_cache_fails_fast_with_instructions(hub_cache):
    t0 = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as err:
        load_generator("ffhq")
    assert time.monotonic() - t0 < 5
    msg = str(err.value)
    assert "akhaliq/jojogan-stylegan2-ffhq-config-f/stylegan2-ffhq-config-f.pt" in msg and "not cached" in msg
    assert "HF_HUB_OFFLINE" in msg


def test_hub_location_override(hub_cache, monkeypatch, tiny_generator):
    monkeypatch.setenv("NADA_HUB_CHURCH", "me/my-church:church.pt")
    put_in_hub_cache(hub_cache, "me/my-church", "church.pt", _ckpt_bytes({"g_ema": tiny_generator.state_dict()}))
    assert load_generator("church").size == 32
    monkeypatch.delenv("NADA_HUB_CHURCH")
    with pytest.raises(WeightsUnavailableError, match="ZeqiangLai/StyleGAN2/stylegan2-church-config-f.pt.*not cached"):
        load_generator("church")  # back to the registry's mirror, which is not cached here
    monkeypatch.setitem(weights.REGISTRY, "church", dataclasses.replace(weights.REGISTRY["church"], mirrors=()))
    with pytest.raises(WeightsUnavailableError, match="No hub mirror"):
        load_generator("church")


@pytest.mark.parametrize("wrap", ["g_ema", "bare", "train_ckpt"])
def test_local_checkpoint_formats(tmp_path, wrap):
    import argparse

    g = make_tiny_generator(seed=1, channel_multiplier=2, size=64, channel_max=64)
    sd = g.state_dict()
    obj = {"g_ema": sd, "latent_avg": torch.zeros(32)} if wrap == "g_ema" else sd
    if wrap == "train_ckpt":  # rosinality train.py layout, with an argparse.Namespace
        obj = {"g": sd, "g_ema": sd, "args": argparse.Namespace(size=64)}
    path = tmp_path / "mine.pt"
    torch.save(obj, path)
    loaded = load_generator(path)
    assert loaded.channels == g.channels
    z = torch.randn(2, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(z), g(z), atol=1e-6)


def test_safetensors_generator(tmp_path, tiny_generator):
    from safetensors.torch import save_file

    path = tmp_path / "g.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_generator.state_dict().items()}, str(path))
    assert load_generator(path).channels == tiny_generator.channels


def test_bad_checkpoints_say_what_is_wrong(tmp_path, tiny_generator):
    missing = tmp_path / "nope.pt"
    with pytest.raises(WeightsUnavailableError, match="neither a registry name"):
        load_generator(missing)

    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="could not be read"):
        load_generator(text)

    full = _ckpt_bytes({"g_ema": tiny_generator.state_dict()})
    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(full[: len(full) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_generator(truncated)

    other = tmp_path / "other.pt"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, other)
    with pytest.raises(CheckpointError, match="no StyleGAN2 generator"):
        load_generator(other)

    broken = dict(tiny_generator.state_dict())
    del broken["convs.0.noise.weight"]
    broken["extra.weight"] = torch.zeros(1)
    bad = tmp_path / "bad.pt"
    torch.save({"g_ema": broken}, bad)
    with pytest.raises(CheckpointError, match=r"missing \['convs.0.noise.weight'\].*unexpected \['extra.weight'\]"):
        load_generator(bad)


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"g_ema": Evil()}, path)
    with pytest.raises(CheckpointError, match="plain PyTorch checkpoint|could not be read"):
        load_generator(path)


def test_refused_pickle_never_suggests_loading_it_unsafely(tmp_path, recwarn):
    class Evil:
        def __reduce__(self):
            return (os.getcwd, ())

    path = tmp_path / "evil.pt"
    torch.save({"g_ema": Evil()}, path)
    with pytest.raises(CheckpointError) as err:
        load_state_dict_file(path)
    message = str(err.value)
    assert "is not a plain PyTorch checkpoint" in message and "getcwd" in message  # what it asked for
    assert "Accepted: .safetensors files, or PyTorch files that hold only tensors" in message
    assert "weights_only" not in message and "trusted source" not in message
    assert err.value.__cause__ is None and err.value.__suppress_context__  # torch's advice is not chained either
    assert not [w for w in recwarn.list if "torch" in str(w.filename)]  # torch's loader warnings stay inside
