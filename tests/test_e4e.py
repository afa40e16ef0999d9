"""e4e encoder against ../shared/fixtures/e4e (synthesized weights, seed 3) and the checkpoint loader."""

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nada import weights
from nada.e4e import E4ECheckpointError, Encoder4Editing, load_e4e

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
E4E = FIXTURES / "e4e"

pytestmark = pytest.mark.skipif(
    not (E4E / "e4e_fixture_seed3.npz").is_file(),
    reason=f"e4e fixtures not found at {E4E} (the shared/ folder must sit beside the checkout)",
)


def _synth_weights():
    spec = importlib.util.spec_from_file_location("synth_weights", FIXTURES / "synth_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _manifest(size: int) -> dict:
    return json.loads((E4E / f"manifest_encoder_{size}.json").read_text())


@pytest.fixture(scope="module")
def state() -> dict:
    return _synth_weights().synth_state_dict(_manifest(1024), 3)


@pytest.fixture(scope="module")
def encoder(state) -> Encoder4Editing:
    model = Encoder4Editing(n_latent=18)
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def fx() -> dict:
    return dict(np.load(E4E / "e4e_fixture_seed3.npz"))


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
    for name, tap in zip(("c1", "c2", "c3"), taps):
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


def test_load_e4e_roundtrip_full_checkpoint(tmp_path, state, fx, codes, monkeypatch):
    latent_avg = torch.from_numpy(fx["latent_avg"])
    ckpt = {
        "state_dict": {**{"encoder." + k: v for k, v in state.items()}, **_decoder_keys()},
        "latent_avg": latent_avg,
        "opts": {"encoder_type": "Encoder4Editing", "stylegan_size": 1024, "start_from_latent_avg": True,
                 "checkpoint_path": None, "device": "cuda:0", "lpips_lambda": 0.8},
    }
    path = tmp_path / "e4e_ffhq_encode.pt"
    torch.save(ckpt, path)
    try:
        encoder, avg = load_e4e(path, device="cpu")
        assert encoder.n_latent == 18 and not encoder.training
        assert all(not p.requires_grad for p in encoder.parameters())
        assert torch.equal(avg, latent_avg)
        with torch.no_grad():
            loaded_codes = encoder(torch.from_numpy(fx["x_rand"]))
        assert torch.equal(loaded_codes, codes)
        assert _maxabs(loaded_codes + avg, fx["codes_plus_avg_rand"]) < 1e-4

        # A registry name resolves through nada.weights.fetch (substituted: tests never download).
        monkeypatch.setattr(weights, "fetch", lambda name: path if name == "e4e-ffhq" else None)
        encoder2, _ = load_e4e("e4e-ffhq", device=torch.device("cpu"))
        assert encoder2.n_latent == 18
    finally:
        path.unlink()  # 1 GB: don't leave it in pytest's kept tmp folders


@pytest.fixture(scope="module")
def small_encoder_state() -> dict:
    torch.manual_seed(0)
    return Encoder4Editing(n_latent=4).state_dict()


def _save(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def test_load_e4e_infers_n_latent_and_accepts_namespace_opts(tmp_path, small_encoder_state):
    enc_keys = {"encoder." + k: v for k, v in small_encoder_state.items()}
    opts = argparse.Namespace(stylegan_size=1024, start_from_latent_avg=True, encoder_type="Encoder4Editing")
    path = _save(tmp_path / "ns.pt", {"state_dict": {**enc_keys, **_decoder_keys()},
                                      "latent_avg": torch.ones(4, 512), "opts": opts})
    encoder, avg = load_e4e(path)
    assert encoder.n_latent == 4 and avg.shape == (4, 512)
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    reference = Encoder4Editing(n_latent=4).eval()
    reference.load_state_dict(small_encoder_state)
    with torch.no_grad():
        assert torch.equal(encoder(x), reference(x))

    # A [512] latent_avg is repeated per row; without latent_avg and start_from_latent_avg=False it is zero.
    path = _save(tmp_path / "vec.pt", {"state_dict": enc_keys, "latent_avg": torch.arange(512.0)})
    _, avg = load_e4e(path)
    assert avg.shape == (4, 512) and torch.equal(avg[3], torch.arange(512.0))
    path = _save(tmp_path / "noavg.pt", {"state_dict": enc_keys, "opts": {"start_from_latent_avg": False}})
    _, avg = load_e4e(path)
    assert torch.equal(avg, torch.zeros(4, 512))


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_load_e4e_rejects_bad_checkpoints(tmp_path, small_encoder_state):
    enc_keys = {"encoder." + k: v for k, v in small_encoder_state.items()}
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(E4ECheckpointError, match="garbage.pt"):
        load_e4e(garbage)

    generator = _save(tmp_path / "g.pt", {"g_ema": {"style.1.weight": torch.zeros(2, 2)}, "latent_avg": torch.zeros(512)})
    with pytest.raises(E4ECheckpointError, match="not an e4e checkpoint"):
        load_e4e(generator)

    no_avg = _save(tmp_path / "noavg.pt", {"state_dict": enc_keys, "opts": {"start_from_latent_avg": True}})
    with pytest.raises(E4ECheckpointError, match="no 'latent_avg'"):
        load_e4e(no_avg)

    bad_avg = _save(tmp_path / "badavg.pt", {"state_dict": enc_keys, "latent_avg": torch.zeros(18, 512)})
    with pytest.raises(E4ECheckpointError, match=r"expected \[4, 512\]"):
        load_e4e(bad_avg)

    broken = dict(enc_keys)
    broken["encoder.latlayer1.weight"] = torch.zeros(512, 100, 1, 1)
    broken_path = _save(tmp_path / "broken.pt", {"state_dict": broken, "latent_avg": torch.zeros(4, 512)})
    with pytest.raises(E4ECheckpointError, match="do not match the e4e architecture"):
        load_e4e(broken_path)

    evil = _save(tmp_path / "evil.pt", {"state_dict": enc_keys, "opts": _Evil()})
    with pytest.raises(E4ECheckpointError, match="evil.pt"):
        load_e4e(evil)

    with pytest.raises(weights.WeightsUnavailableError, match="neither a registry name"):
        load_e4e(tmp_path / "missing.pt")
