"""e4e encoder against the reference fixtures' e4e/ folder (synthesized weights, seed 3) and the checkpoint loader."""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nada import weights
from nada.nets.e4e import Encoder4Editing
from nada.weights import E4ECheckpointError, encoder_from_checkpoint, load_e4e

from .fixtures import fixture_path, load_synth_weights


@pytest.fixture(scope="module", autouse=True)
def e4e_fixtures() -> None:
    """Every test here needs the e4e fixtures: a skip, or a failure under CI, when they are missing."""
    fixture_path("e4e", "e4e_fixture_seed3.npz")


def _manifest(size: int) -> dict:
    return json.loads(fixture_path("e4e", f"manifest_encoder_{size}.json").read_text())


@pytest.fixture(scope="module")
def state() -> dict:
    return load_synth_weights().synth_state_dict(_manifest(1024), 3)


@pytest.fixture(scope="module")
def encoder(state) -> Encoder4Editing:
    with torch.device("meta"):  # skip the random init of 267M weights; the synthesized ones are assigned
        model = Encoder4Editing(n_latent=18)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


@pytest.fixture(scope="module")
def fx() -> dict:
    return dict(np.load(fixture_path("e4e", "e4e_fixture_seed3.npz")))


@pytest.fixture(scope="module")
def codes(encoder, fx) -> torch.Tensor:
    with torch.no_grad():
        return encoder(torch.from_numpy(fx["x_rand"]))


def _maxabs(a: torch.Tensor, b: np.ndarray) -> float:
    return float(np.abs(a.detach().double().numpy() - b).max())


@pytest.mark.parametrize("size,n_latent,n_keys", [(1024, 18, 621), (256, 14, 565)])
def test_state_dict_keys_and_shapes_match_checkpoint(size, n_latent, n_keys):
    with torch.device("meta"):  # shapes only, no memory
        model = Encoder4Editing(n_latent=n_latent)
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert got == _manifest(size)
    assert len(got) == n_keys


def test_codes_reproduce_fixture(codes, fx):
    assert codes.shape == (1, 18, 512)
    assert _maxabs(codes, fx["codes_rand"]) < 1e-4
    assert _maxabs(codes[:, 0], fx["w0_rand"]) < 1e-4
    latent_avg = torch.from_numpy(fx["latent_avg"])
    assert _maxabs(codes + latent_avg, fx["codes_plus_avg_rand"]) < 1e-4
    # Every row carries its own delta at inference.
    assert float((codes[0, 1:] - codes[0, :1]).abs().amin(dim=1).max()) > 0
    assert float((codes[0, 1:] - codes[0, :1]).abs().mean(dim=1).min()) > 0.05


def test_body_features_statistics(encoder, fx):
    with torch.no_grad():
        taps = encoder.body_features(torch.from_numpy(fx["x_rand"]))
    for name, tap in zip(("c1", "c2", "c3"), taps, strict=True):
        assert list(tap.shape) == fx[f"{name}_rand_shape"].tolist()
        assert abs(tap.double().mean().item() - float(fx[f"{name}_rand_mean"])) < 1e-5
        assert abs(tap.double().std().item() - float(fx[f"{name}_rand_std"])) < 1e-4


def test_progressive_stages(encoder, fx, codes):
    x = torch.from_numpy(fx["x_rand"])
    with torch.no_grad():
        stage0 = encoder(x, stage=0)
        stage3 = encoder(x, stage=3)
    assert _maxabs(stage0, fx["codes_rand_stage0"]) < 1e-4
    assert _maxabs(stage3, fx["codes_rand_stage3"]) < 1e-4
    assert torch.equal(stage3[:, :4], codes[:, :4])


def test_bad_input_shape_is_rejected(encoder):
    with pytest.raises(ValueError, match=r"\[N, 3, 256, 256\]"):
        encoder(torch.zeros(1, 3, 128, 128))
    with pytest.raises(ValueError, match="n_latent"):
        Encoder4Editing(n_latent=0)


def _decoder_keys() -> dict:
    # A few generator keys, as pSp stores the decoder next to the encoder; load_e4e must ignore them.
    return {"decoder.style.1.weight": torch.randn(512, 512), "decoder.input.input": torch.randn(1, 512, 4, 4),
            "decoder.noises.noise_0": torch.randn(1, 1, 4, 4)}


def test_full_checkpoint_dict_gives_fixture_codes(state, fx, codes):
    latent_avg = torch.from_numpy(fx["latent_avg"])
    ckpt = {
        "state_dict": {**{"encoder." + k: v for k, v in state.items()}, **_decoder_keys()},
        "latent_avg": latent_avg,
        "opts": {"encoder_type": "Encoder4Editing", "stylegan_size": 1024, "start_from_latent_avg": True,
                 "checkpoint_path": None, "device": "cuda:0", "lpips_lambda": 0.8},
    }
    encoder, avg = encoder_from_checkpoint(ckpt)
    assert encoder.n_latent == 18 and not encoder.training
    assert all(not p.requires_grad for p in encoder.parameters())
    assert torch.equal(avg, latent_avg)
    # Same weights as the fixture encoder (whose codes are checked above), so the same codes; no second forward.
    loaded = encoder.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in encoder.parameters())
    assert _maxabs(codes + avg, fx["codes_plus_avg_rand"]) < 1e-4


@pytest.fixture(scope="module")
def small_ckpt_state(state) -> dict:
    """An n_latent=1 encoder (the full body, one style block) from the synthesized weights, with ``encoder.``."""
    keep = {k: v for k, v in state.items() if not k.startswith("styles.") or k.startswith("styles.0.")}
    return {"encoder." + k: v for k, v in keep.items()}


def _save(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def test_load_e4e_from_file_and_registry(tmp_path, small_ckpt_state, fx, monkeypatch):
    opts = argparse.Namespace(stylegan_size=1024, start_from_latent_avg=True, encoder_type="Encoder4Editing")
    latent_avg = torch.from_numpy(fx["latent_avg"][:1])
    path = _save(tmp_path / "e4e.pt", {"state_dict": {**small_ckpt_state, **_decoder_keys()},
                                        "latent_avg": latent_avg, "opts": opts})  # opts as a Namespace
    encoder, avg = load_e4e(path, device="cpu")
    assert encoder.n_latent == 1 and not encoder.training
    assert torch.equal(avg, latent_avg)
    with torch.no_grad():
        w0 = encoder(torch.from_numpy(fx["x_rand"]))  # [1, 1, 512]: only the base code
    assert _maxabs(w0[:, 0], fx["w0_rand"]) < 1e-4

    # A registry name resolves through nada.weights.fetch (substituted: tests never download).
    seen = []
    monkeypatch.setattr(weights, "fetch", lambda name: seen.append(name) or path)
    encoder2, _ = load_e4e("e4e-ffhq", device=torch.device("cpu"))
    assert seen == ["e4e-ffhq"] and encoder2.n_latent == 1


def test_latent_avg_variants():
    # Only the latent_avg handling runs before the weights: a styles key is enough to fix n_latent.
    enc_keys = {f"encoder.styles.{i}.linear.bias": torch.zeros(512) for i in range(4)}
    with pytest.raises(E4ECheckpointError, match="do not match the e4e architecture"):
        encoder_from_checkpoint({"state_dict": enc_keys, "latent_avg": torch.zeros(4, 512)})
    with pytest.raises(E4ECheckpointError, match="no 'latent_avg'"):
        encoder_from_checkpoint({"state_dict": enc_keys, "opts": {"start_from_latent_avg": True}})
    with pytest.raises(E4ECheckpointError, match=r"expected \[4, 512\]"):
        encoder_from_checkpoint({"state_dict": enc_keys, "latent_avg": torch.zeros(18, 512)})
    with pytest.raises(E4ECheckpointError, match="not a tensor"):
        encoder_from_checkpoint({"state_dict": enc_keys, "latent_avg": [0.0] * 512})


def test_latent_avg_row_is_repeated_and_missing_avg_is_zero_when_not_used(small_ckpt_state):
    _, avg = encoder_from_checkpoint({"state_dict": small_ckpt_state, "latent_avg": torch.arange(512.0)})
    assert avg.shape == (1, 512) and torch.equal(avg[0], torch.arange(512.0))
    _, avg = encoder_from_checkpoint({"state_dict": small_ckpt_state, "opts": {"start_from_latent_avg": False}})
    assert torch.equal(avg, torch.zeros(1, 512))
    broken = dict(small_ckpt_state)
    broken["encoder.latlayer1.weight"] = torch.zeros(512, 100, 1, 1)
    with pytest.raises(E4ECheckpointError, match="do not match the e4e architecture"):
        encoder_from_checkpoint({"state_dict": broken, "latent_avg": torch.zeros(1, 512)})


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_load_e4e_rejects_bad_files(tmp_path, capsys):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(E4ECheckpointError, match="garbage.pt"):
        load_e4e(garbage)

    generator = _save(tmp_path / "g.pt", {"g_ema": {"style.1.weight": torch.zeros(2, 2)},
                                          "latent_avg": torch.zeros(512)})
    with pytest.raises(E4ECheckpointError, match="not an e4e checkpoint"):
        load_e4e(generator)

    no_styles = _save(tmp_path / "ns.pt", {"state_dict": {"encoder.body.0.weight": torch.zeros(1)}})
    with pytest.raises(E4ECheckpointError, match="no contiguous 'styles"):
        load_e4e(no_styles)

    # Pickled code is refused by the weights_only load, and never executed.
    evil = _save(tmp_path / "evil.pt", {"state_dict": {"encoder.styles.0.linear.bias": torch.zeros(512)},
                                        "opts": _Evil()})
    with pytest.raises(E4ECheckpointError, match="evil.pt"):
        load_e4e(evil)
    assert "must never run" not in capsys.readouterr().out

    with pytest.raises(weights.WeightsUnavailableError, match="neither a registry name"):
        load_e4e(tmp_path / "missing.pt")
