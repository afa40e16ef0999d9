"""CLIP loading, preprocessing, text directions and losses (nada.clip_models, nada.clip_loss, nada.clip_loss).

The fixture tests reproduce the reference fixture ``nada/clip_loss_fixture.npz`` (StyleGAN-NADA's ``CLIPLoss`` run with
a tiny random CLIP); the loader tests prove the open_clip / OpenAI key mapping with random models built locally.
"""

from __future__ import annotations

import io
import os
import pickle
import time
import zipfile

import numpy as np
import pytest
import torch

clip = pytest.importorskip("clip")

from nada import clip_loss as cl  # noqa: E402
from nada.clip_loss import IMAGENET_TEMPLATES  # noqa: E402
from nada.clip_models import build_clip, is_torchscript_archive, load_clip, read_clip_file  # noqa: E402
from nada.weights import CheckpointError, WeightsUnavailableError  # noqa: E402

from .fixtures import fixture_path  # noqa: E402
from .helpers import put_in_hub_cache  # noqa: E402

TOL = 1e-5


def _fixture() -> dict[str, np.ndarray]:
    with np.load(fixture_path("nada", "clip_loss_fixture.npz")) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def fx() -> dict[str, np.ndarray]:
    return _fixture()


@pytest.fixture(scope="module")
def fixture_clip() -> torch.nn.Module:
    """The fixture's tiny CLIP, built as SEMANTICS.md section 7 states (2 text heads: not in the state dict)."""
    sd = torch.load(fixture_path("nada", "tiny_clip_seed5_fp16.pt"), map_location="cpu", weights_only=True)
    model = clip.model.CLIP(embed_dim=64, image_resolution=32, vision_layers=2, vision_width=64, vision_patch_size=8,
                            context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=2,
                            transformer_layers=2)
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    return model.eval().requires_grad_(False)


def _random_clip(seed: int = 0, resolution: int = 32, embed_dim: int = 32) -> torch.nn.Module:
    """A tiny random OpenAI-layout CLIP with 64-wide heads (what build_model assumes)."""
    torch.manual_seed(seed)
    model = clip.model.CLIP(embed_dim, resolution, 1, 64, 8, 77, 49408, 64, 1, 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval().requires_grad_(False)


def _maxabs(a, b) -> float:
    a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().cpu().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


# ------------------------------------------------------------------------------------------- fixture: text
def test_templates_and_tokens_match_fixture(fx):
    assert len(IMAGENET_TEMPLATES) == 79 and len(set(IMAGENET_TEMPLATES)) == 79
    assert all(t.count("{}") == 1 for t in IMAGENET_TEMPLATES)
    for cls in ("photo", "sketch"):
        tokens = cl.tokenize([t.format(cls) for t in IMAGENET_TEMPLATES])
        np.testing.assert_array_equal(tokens.numpy(), fx[f"tokens_tmpl_{cls}"])
    np.testing.assert_array_equal(cl.tokenize(["a sketch"]).numpy(), fx["tokens_a_sketch"])
    np.testing.assert_array_equal(cl.tokenize(["sketch"]).numpy(), fx["tokens_bare_sketch"])


def test_text_features_and_direction_match_fixture(fx, fixture_clip):
    for cls in ("photo", "sketch"):
        raw = fixture_clip.encode_text(cl.tokenize([t.format(cls) for t in IMAGENET_TEMPLATES]))  # [79, 64]
        assert _maxabs(raw, fx[f"text_feat_raw_{cls}"]) < TOL
        feats = cl.template_features(fixture_clip, cls)
        ref = fx[f"text_feat_raw_{cls}"] / np.linalg.norm(fx[f"text_feat_raw_{cls}"], axis=1, keepdims=True)
        assert _maxabs(feats, ref) < TOL
    td = cl.TextDirection.compute(fixture_clip, "photo", "sketch")
    assert td.direction.shape == (1, 64)
    assert _maxabs(td.direction, fx["text_direction"]) < TOL
    assert td.matches(" Photo ", "SKETCH") and not td.matches("photo", "painting")


# ----------------------------------------------------------------------------------------- fixture: images
@pytest.mark.parametrize("variant", ["aa", "noaa"])
def test_preprocess_and_image_features_match_fixture(fx, fixture_clip, variant):
    aa = variant == "aa"
    for name in ("src", "tgt"):
        pixels = cl.preprocess(torch.from_numpy(fx[name]), fixture_clip.visual.input_resolution, antialias=aa)
        assert pixels.shape == (2, 3, 32, 32)
        if name == "src":
            assert _maxabs(pixels, fx[f"pre_src_{variant}"]) < TOL
        assert _maxabs(fixture_clip.encode_image(pixels), fx[f"img_feat_raw_{name}_{variant}"]) < TOL


def test_preprocess_default_is_antialiased(fx):
    src = torch.from_numpy(fx["src"])
    assert torch.equal(cl.preprocess(src, 32), cl.preprocess(src, 32, antialias=True))
    assert _maxabs(cl.preprocess(src, 32), cl.preprocess(src, 32, antialias=False)) > 1e-2


@pytest.mark.parametrize("variant", ["aa", "noaa"])
def test_losses_match_fixture(fx, fixture_clip, variant):
    guide = cl.ClipGuide([(fixture_clip, 1.0)], "photo", "sketch", antialias=variant == "aa")
    src = torch.from_numpy(fx["src"])
    tgt = torch.from_numpy(fx["tgt"]).requires_grad_(True)
    with torch.no_grad():
        f_src = guide.image_features(src)
    f_tgt = guide.image_features(tgt)

    loss = guide.directional(f_tgt, f_src)
    loss.backward()
    assert abs(loss.item() - float(fx[f"dir_loss_{variant}"])) < TOL
    grad_ref = fx[f"dir_loss_grad_tgt_{variant}"]
    assert _maxabs(tgt.grad, grad_ref) < 1e-7 and np.abs(grad_ref).max() > 1e-3  # gradient scale ~5e-3

    # The reference global loss is 1 - exp(logit_scale) * cos / 100; ours is 1 - cos.
    scale = float(fx["logit_scale_exp"])
    assert abs(scale - fixture_clip.logit_scale.exp().item()) < 1e-4
    cos_ref = {t: (1 - float(fx[f"global_loss_{k}_{variant}"])) * 100 / scale
               for t, k in (("a sketch", "a_sketch"), ("sketch", "sketch"))}
    with torch.no_grad():
        for text, cos in cos_ref.items():
            assert abs((1 - guide.global_(f_tgt, text=text)).item() - cos) < TOL
        assert abs((1 - guide.global_(f_tgt)).item() - cos_ref["sketch"]) < TOL  # default text: bare target
        # forward(lambda_direction=1, lambda_global=1) = dir + global("a sketch"), in our global-loss convention.
        combined = guide.directional(f_tgt, f_src) + guide.global_(f_tgt, text="a sketch")
        ref_global = float(fx[f"global_loss_a_sketch_{variant}"])
        expected = float(fx[f"forward_dir1_glob1_{variant}"]) - ref_global + (1 - cos_ref["a sketch"])
        assert abs(combined.item() - expected) < TOL


def test_plain_loss_functions(fixture_clip, fx):
    feats = cl.encode_images(fixture_clip, cl.preprocess(torch.from_numpy(fx["tgt"]), 32))  # [2, 64]
    text = cl.text_embedding(fixture_clip, "a sketch")  # [1, 64]
    assert text.shape == (1, 64) and abs(text.norm().item() - 1) < 1e-6
    direct = (1 - (feats @ text.T)).mean()
    assert abs(cl.global_loss(feats, text).item() - direct.item()) < 1e-6
    assert abs(cl.global_loss(feats, text[0]).item() - direct.item()) < 1e-6  # [D] text accepted
    two = cl.text_embedding(fixture_clip, ["a sketch", "sketch"])
    assert two.shape == (2, 64)
    # Directional loss is scale-invariant in its inputs (they are normalised inside) and 0 along the direction.
    d = cl.TextDirection.compute(fixture_clip, "photo", "sketch").direction
    base = torch.nn.functional.normalize(torch.randn(3, 64), dim=-1)
    base = torch.nn.functional.normalize(base - (base @ d.T) * d, dim=-1)  # unit rows orthogonal to d
    moved = base + 0.1 * d
    assert abs(cl.directional_loss(moved, base, d).item()
               - cl.directional_loss(5 * moved, 2 * base, d).item()) < 1e-6
    assert cl.directional_loss(base + 1e-3 * d, base, d).item() < 1e-5
    assert abs(cl.directional_loss(base - 1e-3 * d, base, d).item() - 2) < 1e-5
    side = torch.nn.functional.normalize(torch.randn(3, 64), dim=-1)
    side = side - (side @ d.T) * d - (side * base).sum(-1, keepdim=True) * base  # orthogonal to d and base
    assert abs(cl.directional_loss(base + 1e-3 * side, base, d).item() - 1) < 1e-5
    with pytest.raises(ValueError, match="shapes"):
        cl.directional_loss(base, base[:2], d)


@pytest.mark.parametrize("variant", ["aa", "noaa"])
def test_identical_inputs_give_finite_loss_and_gradient(fx, fixture_clip, variant):
    """The reference re-encodes I + 1e-6 (numerical noise, fixture 1.07/1.06); ours: loss 1, gradient -dt."""
    ref = float(fx[f"dir_loss_identical_{variant}"])
    assert np.isfinite(ref)
    guide = cl.ClipGuide([(fixture_clip, 1.0)], "photo", "sketch", antialias=variant == "aa")
    src = torch.from_numpy(fx["src"])
    with torch.no_grad():
        f_frozen = guide.image_features(src)
    img = src.clone().requires_grad_(True)
    f_train = guide.image_features(img)
    loss = guide.directional(f_train, f_frozen)
    loss.backward()
    assert torch.isfinite(loss) and abs(loss.item() - 1.0) < 1e-6
    assert torch.isfinite(img.grad).all() and img.grad.abs().max() > 0
    # Gradient wrt the (unit) train features: -dt / B, projected by the normalisation inside the loss.
    feat = f_train[0].detach().requires_grad_(True)  # [2, 64]
    dt = guide.directions[0].direction  # [1, 64]
    cl.directional_loss(feat, f_frozen[0], dt).backward()
    n = feat.detach()
    expected = -(dt - (n @ dt.T) * n) / 2
    assert _maxabs(feat.grad, expected) < 1e-6


# --------------------------------------------------------------------------------------------- prompts
@pytest.mark.parametrize(("source", "target", "message"), [
    ("", "sketch", "source prompt is empty"),
    ("photo", "   \t ", "target prompt is empty"),
    ("Photo", "  photo ", "are the same"),
    ("a  Photo", "A photo", "are the same"),
    ("photo", "word " * 80, "too long for CLIP"),
    ("photo", None, "must be text"),
])
def test_bad_prompts_raise_value_error(fixture_clip, source, target, message):
    with pytest.raises(ValueError, match=message):
        cl.TextDirection.compute(fixture_clip, source, target)
    with pytest.raises(ValueError, match=message):
        cl.ClipGuide([(fixture_clip, 1.0)], source, target)


def test_long_prompt_limit_counts_the_template(fixture_clip):
    # 70 word pieces fit alone (72 with start/end tokens) but not inside "a photo of the hard to see {}." (+9)
    text = " ".join(["cat"] * 70)
    assert cl.text_embedding(fixture_clip, text).shape == (1, 64)
    with pytest.raises(ValueError, match=r"prompt template included"):
        cl.TextDirection.compute(fixture_clip, "photo", text)
    with pytest.raises(ValueError, match="too long"):
        cl.text_embedding(fixture_clip, " ".join(["cat"] * 76))
    with pytest.raises(ValueError, match="empty"):
        cl.text_embedding(fixture_clip, " ")


# ---------------------------------------------------------------------------------------------- ensemble
class _Exploding(torch.nn.Module):
    """A CLIP stand-in that fails if it is ever used."""

    def __init__(self) -> None:
        super().__init__()
        self.visual = type("V", (), {"input_resolution": 32})()

    def encode_image(self, x):
        raise AssertionError("a weight-0 model was evaluated")

    encode_text = encode_image


def test_guide_weights_and_skipping(fixture_clip, fx):
    guide = cl.ClipGuide([(fixture_clip, 2.0), (_Exploding(), 0.0)], "photo", "sketch")
    assert len(guide.models) == 1 and guide.n_skipped == 1
    src, tgt = torch.from_numpy(fx["src"]), torch.from_numpy(fx["tgt"])
    with torch.no_grad():
        f_src, f_tgt = guide.image_features(src), guide.image_features(tgt)
        assert len(f_tgt) == 1
        assert abs(guide.directional(f_tgt, f_src).item() - 2 * float(fx["dir_loss_aa"])) < 2 * TOL
    for bad, msg in (([], "No CLIP model"), ([(fixture_clip, 0.0)], "All CLIP model weights are 0"),
                     ([(fixture_clip, -1.0)], ">= 0"), ([(fixture_clip, float("nan"))], ">= 0"),
                     ([(fixture_clip, float("inf"))], "finite")):
        with pytest.raises(ValueError, match=msg):
            cl.ClipGuide(bad, "photo", "sketch")
    with pytest.raises(ValueError, match="Expected 1 feature tensors"):
        guide.directional(f_tgt + f_tgt, f_src + f_src)


def test_guide_preprocesses_once_per_resolution(monkeypatch):
    m32a, m32b, m64 = _random_clip(1, 32), _random_clip(2, 32), _random_clip(3, 64)
    guide = cl.ClipGuide([(m32a, 1.0), (m64, 0.5), (m32b, 1.0)], "photo", "sketch")
    calls = []
    real = cl.preprocess

    def counting(images, resolution, *args, **kwargs):
        calls.append(resolution)
        return real(images, resolution, *args, **kwargs)

    monkeypatch.setattr(cl, "preprocess", counting)
    images = torch.rand(2, 3, 80, 96) * 2 - 1
    feats = guide.image_features(images)
    assert sorted(calls) == [32, 64]
    assert [f.shape for f in feats] == [(2, 32)] * 3
    assert all(torch.allclose(f.norm(dim=-1), torch.ones(2)) for f in feats)
    # Weighted sum of the per-model losses.
    frozen = guide.image_features(torch.rand(2, 3, 80, 96) * 2 - 1)
    per = [cl.directional_loss(a, b, d.direction) for a, b, d in zip(feats, frozen, guide.directions, strict=True)]
    assert abs(guide.directional(feats, frozen).item() - (per[0] + 0.5 * per[1] + per[2]).item()) < 1e-6
    # Directions are per model and per prompt pair; a new pair needs a new guide.
    assert not torch.allclose(guide.directions[0].direction, guide.directions[2].direction)
    other = cl.ClipGuide([(m32a, 1.0)], "photo", "painting")
    assert not torch.allclose(other.directions[0].direction, guide.directions[0].direction)


def test_preprocess_geometry_and_gradient():
    x = torch.rand(1, 3, 48, 80, dtype=torch.float64) * 2 - 1
    x.requires_grad_(True)
    out = cl.preprocess(x, 24)
    assert out.shape == (1, 3, 24, 24) and out.dtype == torch.float64
    out.sum().backward()
    assert x.grad.abs().sum() > 0
    # Centre crop: the outer 10 columns of a 48x80 image (-> 24x40, crop 8 each side) do not matter.
    assert x.grad[..., :, :10].abs().max() < x.grad[..., :, 35:45].abs().max()
    # Same size: only the value mapping; tall images are cropped vertically.
    y = torch.rand(2, 3, 16, 16) * 2 - 1
    mean = torch.tensor(cl.CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(cl.CLIP_STD).view(1, 3, 1, 1)
    assert torch.allclose(cl.preprocess(y, 16), ((y + 1) / 2 - mean) / std)
    assert cl.preprocess(torch.zeros(1, 3, 100, 50), 20).shape == (1, 3, 20, 20)
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        cl.preprocess(torch.zeros(3, 16, 16), 16)


def test_guide_respects_model_dtype(fx, fixture_clip):
    """OpenAI's half-precision layout (clip.model.convert_weights: fp16 matmuls, fp32 LayerNorms) gets fp16
    input; features and losses come back in float32, close to the float32 model's."""
    import copy

    m16 = copy.deepcopy(fixture_clip)
    clip.model.convert_weights(m16)
    g32 = cl.ClipGuide([(fixture_clip, 1.0)], "photo", "sketch")
    g16 = cl.ClipGuide([(m16, 1.0)], "photo", "sketch")
    assert _maxabs(g16.directions[0].direction, g32.directions[0].direction) < 1e-2
    src, tgt = torch.from_numpy(fx["src"]), torch.from_numpy(fx["tgt"])
    with torch.no_grad():
        f16 = g16.image_features(tgt)
        assert f16[0].dtype == torch.float32
        l16 = g16.directional(f16, g16.image_features(src)).item()
        l32 = g32.directional(g32.image_features(tgt), g32.image_features(src)).item()
    assert np.isfinite(l16) and abs(l16 - l32) < 0.02 and abs(l32 - float(fx["dir_loss_aa"])) < TOL


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_guide_on_cuda_matches_cpu(fx, fixture_clip):
    import copy

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    gpu = copy.deepcopy(fixture_clip).to(dev)
    src, tgt = torch.from_numpy(fx["src"]).to(dev), torch.from_numpy(fx["tgt"]).to(dev).requires_grad_(True)
    for amp in (False, True):
        guide = cl.ClipGuide([(gpu, 1.0)], "photo", "sketch", autocast_bf16=amp)
        with torch.no_grad():
            f_src = guide.image_features(src)
        loss = guide.directional(guide.image_features(tgt), f_src)
        tgt.grad = None
        loss.backward()
        tol = 5e-2 if amp else 1e-4
        assert abs(loss.item() - float(fx["dir_loss_aa"])) < tol
        if not amp:
            assert _maxabs(tgt.grad, fx["dir_loss_grad_tgt_aa"]) < 1e-5


# ------------------------------------------------------------------------------------------------- loader
def _assert_same_clip(a: torch.nn.Module, b: torch.nn.Module, resolution: int, atol: float = 1e-5,
                      batch: int = 2) -> None:
    torch.manual_seed(7)
    images = torch.randn(batch, 3, resolution, resolution)
    tokens = clip.tokenize(["a photo of a cat", "a sketch"])
    with torch.no_grad():
        assert torch.allclose(a.encode_image(images), b.encode_image(images), atol=atol, rtol=0)
        assert torch.allclose(a.encode_text(tokens), b.encode_text(tokens), atol=atol, rtol=0)


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::torch.jit.TracerWarning")
def test_load_clip_from_state_dict_and_files(tmp_path):
    ref = _random_clip(4)
    sd = ref.state_dict()
    model = load_clip(sd)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.visual.input_resolution == 32
    _assert_same_clip(model, ref, 32, atol=0)  # float32 weights stay exact (no fp16 round trip)
    # fp16 tensors, a DataParallel prefix, a {"state_dict": ...} wrapper, OpenAI's extra entries.
    wrapped = {"state_dict": {f"module.{k}": v.half() for k, v in sd.items()}}
    wrapped["state_dict"].update({"module.input_resolution": torch.tensor(32),
                                  "module.context_length": torch.tensor(77), "module.vocab_size": torch.tensor(49408)})
    _assert_same_clip(load_clip(wrapped), build_clip({k: v.half() for k, v in sd.items()}), 32, atol=0)
    # A state-dict file, and a TorchScript archive (OpenAI's original .pt format).
    path = tmp_path / "clip.pt"
    torch.save(sd, path)
    assert not is_torchscript_archive(path)
    _assert_same_clip(load_clip(path), ref, 32, atol=0)
    _assert_same_clip(load_clip(str(path)), ref, 32, atol=0)
    traced = torch.jit.trace_module(ref, {"encode_image": torch.randn(1, 3, 32, 32),
                                          "encode_text": clip.tokenize(["a photo"])}, check_trace=False)
    jit_path = tmp_path / "clip_jit.pt"
    traced.save(str(jit_path))
    assert is_torchscript_archive(jit_path)
    _assert_same_clip(load_clip(jit_path), ref, 32, atol=0)


def _no_jit_load(*args, **kwargs):
    raise AssertionError("torch.jit.load runs code stored in the file; it must never be called")


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::torch.jit.TracerWarning")
def test_torchscript_clip_is_read_as_data_and_code_in_it_never_runs(tmp_path, monkeypatch):
    ref = _random_clip(4)
    traced = torch.jit.trace_module(ref, {"encode_image": torch.randn(1, 3, 32, 32),
                                          "encode_text": clip.tokenize(["a photo"])}, check_trace=False)
    jit_path = tmp_path / "ViT-B-32.pt"
    traced.save(str(jit_path))
    monkeypatch.setattr(torch.jit, "load", _no_jit_load)
    sd = read_clip_file(jit_path)
    expected = ref.state_dict()
    assert sorted(sd) == sorted(expected)
    assert all(torch.equal(sd[k], v) for k, v in expected.items())
    _assert_same_clip(load_clip(jit_path), ref, 32, atol=0)
    # The same archive with a data.pkl that asks for a Python function: refused, and the function never runs.
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil_path = tmp_path / "evil.pt"
    with zipfile.ZipFile(jit_path) as src, zipfile.ZipFile(evil_path, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            dst.writestr(item, pickle.dumps(Evil(), protocol=2) if item.filename.endswith("/data.pkl") else data)
    with pytest.raises(CheckpointError, match="asks for more than tensors.*never runs code") as err:
        load_clip(evil_path)
    assert "weights_only=False" not in str(err.value) and not marker.exists()
    # A TorchScript file given where a plain checkpoint is expected (a generator, an e4e file): refused, no hint.
    from nada.weights import load_state_dict_file

    with pytest.raises(CheckpointError, match="TorchScript archive.*never runs code.*Accepted: .safetensors") as err:
        load_state_dict_file(jit_path)
    assert "weights_only" not in str(err.value)


def test_load_clip_registry_name_from_hub_cache(hub_cache):
    """"clip-vit-b32" resolves through nada.weights to the cached hub file and builds the model it holds."""
    ref = _random_clip(6)
    buf = io.BytesIO()
    torch.save(ref.state_dict(), buf)
    put_in_hub_cache(hub_cache, "timm/vit_base_patch32_clip_224.openai", "open_clip_pytorch_model.bin",
                     buf.getvalue())
    for name in ("clip-vit-b32", "ViT-B/32"):
        _assert_same_clip(load_clip(name), ref, 32, atol=0)


def test_load_clip_errors(tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match="not an OpenAI CLIP state dict"):
        load_clip({"style.1.weight": torch.zeros(4, 4)})
    with pytest.raises(ValueError, match="not an OpenAI CLIP state dict"):
        load_clip({"text.token_embedding.weight": torch.zeros(4, 4)})
    sd = _random_clip(5).state_dict()
    sd["visual.proj"] = torch.zeros(64, 7)  # CLIP keys, inconsistent shapes
    with pytest.raises(CheckpointError, match="does not fit the OpenAI CLIP architecture"):
        load_clip(sd)
    with pytest.raises(ValueError, match="Unknown CLIP model 'ViT-Q/99'"):
        load_clip("ViT-Q/99")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_clip(garbage)
    # A registry name that is not cached, offline: the weights registry's clear error, no network.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("NADA_CACHE", str(tmp_path / "cache"))
    for name in ("clip-vit-b32", "ViT-B/16"):
        with pytest.raises(WeightsUnavailableError, match="not cached"):
            load_clip(name)


def _perturbed(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random values in every tensor (zero biases and unit norms would hide swapped keys)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))
    return model.eval()


def test_open_clip_tiny_state_dict_round_trip(tmp_path):
    """open_clip's OpenAI-architecture CLIP (QuickGELU) saves keys our loader builds into the same network."""
    open_clip = pytest.importorskip("open_clip")
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(0)
    oc = open_clip.CLIP(embed_dim=32, quick_gelu=True,
                        vision_cfg=CLIPVisionCfg(layers=2, width=64, head_width=64, patch_size=8, image_size=32),
                        text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=1, layers=2))
    oc = _perturbed(oc, 1)
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(oc.state_dict(), path)
    ours = load_clip(path)
    _assert_same_clip(ours, oc, 32, atol=1e-5)


def test_open_clip_vit_b32_state_dict_round_trip(tmp_path):
    """The real ViT-B/32 architecture: a random open_clip model (no download) loads through our loader."""
    open_clip = pytest.importorskip("open_clip")
    start = time.perf_counter()
    torch.manual_seed(0)
    # OpenAI's weights use QuickGELU; open_clip's plain "ViT-B-32" config would use nn.GELU.
    oc = _perturbed(open_clip.create_model("ViT-B-32", pretrained=None, force_quick_gelu=True), 2)
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(oc.state_dict(), path)
    ours = load_clip(path)
    assert ours.visual.input_resolution == 224 and ours.text_projection.shape == (512, 512)
    _assert_same_clip(ours, oc, 224, atol=1e-4, batch=1)
    assert time.perf_counter() - start < 60


def test_clip_constants_are_made_once_per_device(tiny_clip, monkeypatch):
    """CLIP's mean/std go to the device once per guide, not on every call (a host-to-device copy each time)."""
    made = []
    real = cl.clip_norm
    monkeypatch.setattr(cl, "clip_norm", lambda x: made.append(x.device) or real(x))
    guide = cl.ClipGuide([(tiny_clip, 1.0)], "photo", "sketch")
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    first, again = guide.image_features(images)[0], guide.image_features(images)[0]
    assert made == [torch.device("cpu")] and torch.equal(first, again)
    assert torch.equal(cl.preprocess(images, 32), cl.preprocess(images, 32, norm=real(images)))
