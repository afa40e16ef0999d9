"""Inversion API and ``python -m nada invert`` end to end: real dlib alignment of the real astronaut photo, the real
e4e architecture with seeded random weights (14 codes) and a 256px tiny-channel generator (n_latent 14)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nada import cli, render
from nada.align import FaceAligner, NoFaceError
from nada.images import ImageInputError
from nada.invert import (
    Inversion,
    apply_style,
    blend_generators,
    face_tensor,
    invert,
    render_codes,
    stylize,
    tiny_inversion_models,
)
from nada.styles import save_style, style_from_generators
from nada.tiny import TINY_INVERT as TINY_SOURCE  # the source name --tiny records in and expects of styles
from nada.tiny import tiny_generator

from .fixtures import fixture_path, fixtures_root
from .helpers import PROJECT_ROOT

ALIGN = fixtures_root() / "align"
ASTRONAUT = ALIGN / "astronaut.png"  # read only by tests marked needs_photos, which check that it is there
NOFACE = ALIGN / "coffee_noface.png"

needs_photos = pytest.mark.usefixtures("photos")


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


pytestmark = pytest.mark.skipif(not (_installed("dlib") and _installed("face_recognition_models")),
                                reason="dlib (dlib-bin) and face_recognition_models are needed for alignment")


@pytest.fixture(scope="module")
def photos() -> None:
    """The alignment fixtures' photos (a skip, or a failure under CI, when they are missing)."""
    fixture_path("align", "astronaut.png")
    fixture_path("align", "coffee_noface.png")


@pytest.fixture(scope="module")
def models():
    """(encoder, latent_avg [14, 512], generator): the --tiny stand-ins."""
    return tiny_inversion_models(seed=0)


@pytest.fixture(scope="module")
def aligner() -> FaceAligner:
    return FaceAligner.load()


@pytest.fixture(scope="module")
def inversion(models, aligner) -> Inversion:
    encoder, latent_avg, generator = models
    return invert(fixture_path("align", "astronaut.png"), encoder, latent_avg, generator, aligner=aligner)


@pytest.fixture(scope="module")
def adapted(models):
    """A copy of the generator with a few synthesis layers changed, as an adapted style would be."""
    generator = models[2]
    g = copy.deepcopy(generator)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name in ("convs.4.conv.weight", "convs.7.conv.weight", "to_rgbs.3.conv.weight"):
            p = g.get_parameter(name)
            p.add_(0.5 * torch.randn(p.shape, generator=gen))
    return g


def _arr(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


# ------------------------------------------------------------------------------------------------------- API
@needs_photos
def test_shapes_and_values(inversion: Inversion, models) -> None:
    encoder, latent_avg, generator = models
    assert generator.n_latent == encoder.n_latent == 14 and generator.size == 256
    assert inversion.aligned.size == (256, 256) and inversion.aligned.mode == "RGB"
    assert inversion.reconstruction.size == (256, 256) and inversion.reconstruction.mode == "RGB"
    assert inversion.codes.shape == (1, 14, 512) and inversion.codes.dtype == torch.float32
    assert not inversion.codes.requires_grad and torch.isfinite(inversion.codes).all()
    delta = inversion.codes[0] - latent_avg  # [14, 512]: the encoder's own output
    assert 0.05 < float(delta.std()) < 5.0
    assert float((delta[1:] - delta[:1]).abs().max()) > 1e-3  # the per-row deltas are active
    assert _arr(inversion.reconstruction).std() > 10  # a picture, not a flat image


@needs_photos
def test_aligned_face_is_the_alignment_of_the_photo(inversion: Inversion, aligner: FaceAligner) -> None:
    assert np.array_equal(_arr(inversion.aligned), _arr(aligner.align(ASTRONAUT, 256)))


@needs_photos
def test_deterministic(inversion: Inversion, models, aligner) -> None:
    again = invert(ASTRONAUT, *models, aligner=aligner)
    assert torch.equal(again.codes, inversion.codes)
    assert np.array_equal(_arr(again.reconstruction), _arr(inversion.reconstruction))


@needs_photos
def test_codes_are_encoder_output_plus_latent_avg(inversion: Inversion, models) -> None:
    encoder, latent_avg, _ = models
    u8 = np.asarray(inversion.aligned, dtype=np.float32)  # [256, 256, 3]
    x = torch.from_numpy((u8 / 255.0 - 0.5) / 0.5).permute(2, 0, 1)[None]  # e4e's ToTensor + Normalize(0.5, 0.5)
    assert torch.equal(face_tensor(inversion.aligned), x)
    with torch.no_grad():
        expected = encoder(x) + latent_avg[None]  # [1, 14, 512]
    assert float((inversion.codes - expected).abs().max()) == 0.0
    assert not encoder.training


@needs_photos
def test_reconstruction_is_the_generate_path(inversion: Inversion, models) -> None:
    generator = models[2]
    with torch.no_grad():
        img = generator.synthesis(inversion.codes, noise_mode="const")  # [1, 3, 256, 256]
    assert np.array_equal(_arr(inversion.reconstruction), _arr(render.to_pil(img)[0]))
    assert np.array_equal(_arr(render_codes(generator, inversion.codes)), _arr(inversion.reconstruction))


@needs_photos
def test_no_align_on_an_aligned_face_gives_the_same_codes(inversion: Inversion, models) -> None:
    again = invert(inversion.aligned, *models, align=False)
    assert torch.equal(again.codes, inversion.codes)


def test_no_align_refuses_a_non_square_photo(models) -> None:
    with pytest.raises(ImageInputError, match="square"):
        invert(np.zeros((256, 400, 3), np.uint8), *models, align=False)


@needs_photos
def test_styles_strength_interpolates_weights(inversion: Inversion, models, adapted) -> None:
    generator = models[2]
    full = stylize(inversion, adapted)  # strength 1: the adapted generator itself
    with torch.no_grad():
        expected_full = render.to_pil(adapted.synthesis(inversion.codes, noise_mode="const"))[0]
    assert np.array_equal(_arr(full), _arr(expected_full))
    assert np.abs(_arr(full) - _arr(inversion.reconstruction)).mean() > 2  # the style changes the picture
    zero = apply_style(inversion, adapted, strength=0.0, source=generator)
    assert np.array_equal(_arr(zero), _arr(inversion.reconstruction))
    half = stylize(inversion, adapted, 0.5, source=generator)
    manual = copy.deepcopy(generator)
    with torch.no_grad():
        for p, q in zip(manual.parameters(), adapted.parameters(), strict=True):
            p.copy_(p + 0.5 * (q - p))
    with torch.no_grad():
        expected_half = render.to_pil(manual.synthesis(inversion.codes, noise_mode="const"))[0]
    assert np.abs(_arr(half) - _arr(expected_half)).max() <= 1
    assert np.abs(_arr(half) - _arr(full)).mean() > 1 and np.abs(_arr(half) - _arr(zero)).mean() > 1
    blended = blend_generators(generator, adapted, 0.5)
    assert torch.equal(blended.convs[0].conv.weight, generator.convs[0].conv.weight)  # unchanged layers stay
    assert not torch.equal(blended.convs[4].conv.weight, generator.convs[4].conv.weight)
    # A Style object is applied through nada.styles.apply_style to the source.
    style = style_from_generators(generator, adapted, {"source": TINY_SOURCE})
    assert set(style.tensors) == {"convs.4.conv.weight", "convs.7.conv.weight", "to_rgbs.3.conv.weight"}
    assert np.array_equal(_arr(stylize(inversion, style, 1.0, source=generator)), _arr(full))
    assert np.abs(_arr(stylize(inversion, style, 0.5, source=generator)) - _arr(half)).max() <= 1


@needs_photos
def test_style_errors(inversion: Inversion, adapted) -> None:
    with pytest.raises(ValueError, match="source generator"):
        stylize(inversion, adapted, 0.5)
    with pytest.raises(ValueError, match="between 0"):
        stylize(inversion, adapted, 1.5)
    with pytest.raises(TypeError):
        stylize(inversion, "pixar")


def test_mismatched_n_latent_is_a_clear_error(models) -> None:
    encoder, latent_avg, _ = models
    small = tiny_generator(0)  # 32 px: 8 codes of 32 dims
    with pytest.raises(ValueError, match=r"gives 14 W\+ codes per face, but this 32px generator reads 8"):
        invert(np.zeros((256, 256, 3), np.uint8), encoder, latent_avg, small, align=False)
    narrow = tiny_generator(0, size=256)  # 14 codes, but 32-d
    with pytest.raises(ValueError, match="style dimension is 32"):
        invert(np.zeros((256, 256, 3), np.uint8), encoder, latent_avg, narrow, align=False)
    with pytest.raises(ValueError, match=r"latent_avg has shape \[18, 512\]"):
        invert(np.zeros((256, 256, 3), np.uint8), encoder, torch.zeros(18, 512), models[2], align=False)


@needs_photos
def test_no_face_and_corrupt_input(models, aligner) -> None:
    with pytest.raises(NoFaceError, match="No face was found"):
        invert(NOFACE, *models, aligner=aligner)
    with pytest.raises(ImageInputError, match="not an image"):
        invert(b"\x89PNG\r\n\x1a\n this is not really a png", *models, aligner=aligner)
    data = ASTRONAUT.read_bytes()
    with pytest.raises(ImageInputError, match="corrupt or truncated"):
        invert(data[:len(data) // 2], *models, aligner=aligner)


# ------------------------------------------------------------------------------------------ command line
@needs_photos
def test_cli_invert_end_to_end(tmp_path: Path, inversion: Inversion, models, adapted) -> None:
    generator = models[2]
    style_file = save_style(style_from_generators(generator, adapted, {"source": TINY_SOURCE}),
                            tmp_path / "witcher.safetensors")
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NADA_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "nada", "invert", str(ASTRONAUT), "--tiny", "--device", "cpu",
         "--styles", f"{style_file},{style_file}", "-o", str(out)],
        capture_output=True, text=True, cwd=PROJECT_ROOT, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    names = {"aligned.png", "reconstruction.png", "codes.pt", "witcher.png", "witcher-2.png"}
    assert {p.name for p in out.iterdir()} == names
    assert {Path(line).name for line in proc.stdout.split()} == names
    codes = torch.load(out / "codes.pt", map_location="cpu", weights_only=True)
    assert codes.shape == (1, 14, 512)
    assert float((codes - inversion.codes).abs().max()) < 1e-5  # the same inversion as in this process
    assert np.array_equal(_arr(Image.open(out / "aligned.png")), _arr(inversion.aligned))
    assert np.abs(_arr(Image.open(out / "reconstruction.png")) - _arr(inversion.reconstruction)).max() <= 1
    styled = _arr(Image.open(out / "witcher.png"))
    assert np.abs(styled - _arr(stylize(inversion, adapted))).max() <= 1
    assert np.array_equal(styled, _arr(Image.open(out / "witcher-2.png")))


@needs_photos
@pytest.mark.parametrize("photo, message", [
    ("noface", "No face was found in this photo"),
    ("truncated", "'selfie.png' is corrupt or truncated"),
    ("text", "'selfie.jpg' is not an image Pillow can read"),
])
def test_cli_bad_photo_exits_1_with_one_line(tmp_path: Path, capsys, photo, message) -> None:
    if photo == "noface":
        photo = NOFACE
    elif photo == "truncated":  # half of a real PNG, as an interrupted upload leaves it
        data = ASTRONAUT.read_bytes()
        photo = tmp_path / "selfie.png"
        photo.write_bytes(data[:len(data) // 2])
    else:
        photo = tmp_path / "selfie.jpg"
        photo.write_text("this is a text file, not a photo\n" * 4)
    code = cli.main(["invert", str(photo), "--tiny", "--device", "cpu", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@needs_photos
def test_cli_missing_weights_exit_1(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("NADA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = cli.main(["invert", str(ASTRONAUT), "--device", "cpu", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and "not cached" in err and len(err.strip().splitlines()) == 1


def test_output_names() -> None:
    from nada.cli.invert import output_names, style_list

    styles = style_list(" a/witcher.safetensors, nada-pixar,,b/witcher.safetensors, reconstruction ")
    assert styles == ["a/witcher.safetensors", "nada-pixar", "b/witcher.safetensors", "reconstruction"]
    assert output_names(styles) == ["witcher", "nada-pixar", "witcher-2", "reconstruction-2"]


@needs_photos
@pytest.mark.slow
def test_cli_with_checkpoint_files(tmp_path: Path, capsys, inversion: Inversion, models) -> None:
    """The non-tiny path: --source and --e4e as files laid out like the released checkpoints (~0.9 GB written)."""
    encoder, latent_avg, generator = models
    gen_file, e4e_file = tmp_path / "gen.pt", tmp_path / "e4e.pt"
    torch.save({"g_ema": generator.state_dict(), "latent_avg": latent_avg[0]}, gen_file)
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    state.update({f"decoder.{k}": v for k, v in generator.state_dict().items()})
    torch.save({"state_dict": state, "latent_avg": latent_avg, "opts": {"start_from_latent_avg": True}}, e4e_file)
    del state
    out = tmp_path / "out"
    code = cli.main(["invert", str(ASTRONAUT), "--source", str(gen_file), "--e4e", str(e4e_file), "--device", "cpu",
                     "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    codes = torch.load(out / "codes.pt", map_location="cpu", weights_only=True)
    assert torch.equal(codes, inversion.codes)
    assert np.array_equal(_arr(Image.open(out / "reconstruction.png")), _arr(inversion.reconstruction))
