"""ArcFace IR-SE50 backbone and identity loss against the reference fixtures' arcface/ folder (synthesized weights,
seed 4)."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nada import weights
from nada.id_loss import IDLoss, load_id_loss
from nada.nets.irse import Backbone

from .fixtures import fixture_path, load_synth_weights


@pytest.fixture(scope="module", autouse=True)
def arcface_fixtures() -> None:
    """Every test here needs the ArcFace fixtures: a skip, or a failure under CI, when they are missing."""
    fixture_path("arcface", "arcface_fixture_seed4.npz")


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads(fixture_path("arcface", "manifest_ir_se50.json").read_text())


@pytest.fixture(scope="module")
def state(manifest) -> dict:
    return load_synth_weights().synth_state_dict(manifest, 4)


@pytest.fixture(scope="module")
def backbone(state) -> Backbone:
    model = Backbone(input_size=112, num_layers=50, mode="ir_se")
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def fx() -> dict:
    return dict(np.load(fixture_path("arcface", "arcface_fixture_seed4.npz")))


def _maxabs(a: torch.Tensor, b: np.ndarray) -> float:
    return float(np.abs(a.detach().double().numpy() - b).max())


def test_state_dict_keys_and_shapes_match_model_ir_se50(manifest):
    got = {k: list(v.shape) for k, v in Backbone().state_dict().items()}
    assert got == manifest
    assert len(got) == 397


def test_backbone_reproduces_fixture(backbone, fx):
    x = torch.from_numpy(fx["x112"])
    with torch.no_grad():
        unnorm = backbone.embed(x)
        emb = backbone(x)
    assert _maxabs(unnorm, fx["emb112_unnorm"]) < 1e-4
    assert _maxabs(emb, fx["emb112"]) < 1e-5
    # The output is already L2-normalised and not degenerate.
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-6)
    assert abs(float(emb[0] @ emb[1]) - 0.5705169) < 1e-5


def test_features_crop_pool_and_embed(backbone, fx):
    loss = IDLoss(backbone)
    x256 = torch.from_numpy(fx["x256"])
    face = torch.from_numpy(fx["x_face256"])
    with torch.no_grad():
        assert _maxabs(loss.face_crop(x256), fx["pooled112"]) < 1e-6
        assert _maxabs(loss.features(x256), fx["feats256"]) < 1e-5
        assert _maxabs(loss.features(face), fx["feats_face256"]) < 1e-5


def test_identity_loss_values(backbone, fx):
    loss = IDLoss(backbone)
    y_hat = torch.from_numpy(fx["x256"])
    y = torch.flip(y_hat, dims=[3])
    value = loss(y_hat, y)
    assert value.ndim == 0
    assert abs(float(value) - float(fx["idloss_loss"])) < 1e-5
    sims = loss.similarities(y_hat, y, 0.5 * y_hat)
    assert abs(float(sims["loss"]) - float(fx["idloss_loss"])) < 1e-5
    assert abs(float(sims["sim_improvement"]) - float(fx["idloss_sim_improvement"])) < 1e-5
    assert _maxabs(sims["target"], fx["idloss_diff_target"]) < 1e-5
    assert _maxabs(sims["input"], fx["idloss_diff_input"]) < 1e-5
    assert _maxabs(sims["views"], fx["idloss_diff_views"]) < 1e-5
    # Identical images have zero identity loss.
    assert abs(float(loss(y_hat, y_hat))) < 1e-6


def test_loss_is_frozen_and_gradient_reaches_first_argument_only(backbone, fx):
    loss = IDLoss(backbone)
    loss.train()  # a parent module switching to training must not unfreeze BatchNorm or dropout
    assert not loss.backbone.training
    assert all(not p.requires_grad for p in loss.parameters())
    x = torch.from_numpy(fx["x256"][:1]).clone().requires_grad_(True)
    y = torch.from_numpy(fx["x256"][1:]).clone().requires_grad_(True)
    loss(x, y).backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert y.grad is None
    assert all(p.grad is None for p in loss.parameters())


def test_other_input_sizes(backbone, fx):
    loss = IDLoss(backbone)
    x256 = torch.from_numpy(fx["x256"])
    x512 = F.interpolate(x256, scale_factor=2, mode="nearest")  # each pixel a 2x2 block
    with torch.no_grad():
        # 512 -> 256 is an exact 2x2 mean, so the features equal those of the 256 image.
        assert torch.allclose(loss.features(x512), loss.features(x256), atol=1e-5)
        small = loss.features(x256[:, :, ::2, ::2])  # 128x128 is upsampled to 256 first
    assert small.shape == (2, 512)
    assert torch.allclose(small.norm(dim=1), torch.ones(2), atol=1e-5)


def test_bad_inputs_raise_clear_errors(backbone):
    loss = IDLoss(backbone)
    with pytest.raises(ValueError, match="RGB images"):
        loss.features(torch.zeros(1, 1, 256, 256))
    with pytest.raises(ValueError, match="equal batch sizes"):
        loss(torch.zeros(2, 3, 256, 256), torch.zeros(1, 3, 256, 256))
    with pytest.raises(ValueError, match=r"\[N, 3, 112, 112\]"):
        backbone(torch.zeros(1, 3, 100, 100))


def test_from_state_dict_reads_architecture_off_the_keys():
    torch.manual_seed(0)
    ir = Backbone(mode="ir", affine=False)
    rebuilt = Backbone.from_state_dict(ir.state_dict())
    assert rebuilt.state_dict().keys() == ir.state_dict().keys()
    assert "output_layer.4.weight" not in rebuilt.state_dict()
    assert not any(".res_layer.5." in k for k in rebuilt.state_dict())


def test_load_id_loss_from_path_and_registry(tmp_path, state, backbone, fx, monkeypatch):
    path = tmp_path / "model_ir_se50.pth"
    torch.save(state, path)  # a bare state dict, as the released file
    loaded = load_id_loss(path, device="cpu")
    assert isinstance(loaded, IDLoss) and not loaded.backbone.training
    x256 = torch.from_numpy(fx["x256"])
    with torch.no_grad():
        assert _maxabs(loaded.features(x256), fx["feats256"]) < 1e-5

    # A registry name goes through nada.weights.fetch (substituted here: tests never download).
    seen = []
    monkeypatch.setattr(weights, "fetch", lambda name: seen.append(name) or path)
    via_registry = load_id_loss("arcface-ir-se50", device=torch.device("cpu"))
    assert seen == ["arcface-ir-se50"]
    with torch.no_grad():
        assert _maxabs(via_registry.features(x256), fx["feats256"]) < 1e-5


def test_load_id_loss_rejects_bad_files(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(weights.CheckpointError, match="garbage.pth"):
        load_id_loss(garbage)

    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(weights.CheckpointError, match="not an ArcFace IR-SE backbone"):
        load_id_loss(wrong)

    truncated = tmp_path / "truncated.pth"
    sd = Backbone(mode="ir").state_dict()
    del sd["output_layer.4.bias"]  # keeps the weight: affine inferred, then the strict load fails
    torch.save(sd, truncated)
    with pytest.raises(weights.CheckpointError, match="not an ArcFace IR-SE backbone"):
        load_id_loss(truncated)

    with pytest.raises(weights.WeightsUnavailableError, match="neither a registry name"):
        load_id_loss(tmp_path / "missing.pth")
