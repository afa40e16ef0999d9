"""Style files: only changed tensors stored, exact fp32 round trips, strength blending, source checks, .pt
import/export (including a published StyleGAN-NADA model from a fake hub cache), safe names, clear errors."""

from __future__ import annotations

import copy
import io
import json
import os

import pytest
import torch

from nada import styles, weights
from nada.nets.stylegan2 import Generator, seeded_z
from nada.styles import (
    Style,
    StyleFileError,
    StyleMismatchError,
    apply_style,
    apply_style_file,
    export_style_pt,
    generator_fingerprint,
    import_style_pt,
    list_saved_styles,
    load_any_style,
    load_style,
    safe_style_name,
    save_style,
    style_from_generators,
    style_path,
    styles_dir,
)
from nada.weights import CheckpointError, WeightsUnavailableError, load_generator

from .helpers import make_tiny_generator, put_in_hub_cache

CHANGED = ("convs.2.conv.weight", "convs.2.activate.bias", "convs.3.conv.weight", "to_rgbs.1.conv.weight")
META = {"source": "ffhq", "source_text": "Photo", "target_text": "Witcher", "config": {"iterations": 3, "lr": 0.002},
        "layers": ["convs.2", "convs.3"]}


def _adapt(source: Generator, keys=CHANGED, scale: float = 0.05, seed: int = 5) -> Generator:
    """A stand-in for a trained copy: small random changes to a few tensors."""
    adapted = copy.deepcopy(source)
    gen = torch.Generator().manual_seed(seed)
    sd = adapted.state_dict()
    with torch.no_grad():
        for k in keys:
            sd[k].add_(scale * torch.randn(sd[k].shape, generator=gen))
    return adapted


def _snapshot(g: Generator) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in g.state_dict().items()}


def _assert_sd_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _images(g: Generator) -> torch.Tensor:
    with torch.no_grad():
        return g(seeded_z([0, 1, 2], g.style_dim), truncation=0.7, w_avg=torch.zeros(1, g.style_dim))


@pytest.fixture
def pair(tiny_generator):
    return tiny_generator, _adapt(tiny_generator)


@pytest.fixture
def style(pair) -> Style:
    return style_from_generators(*pair, META)


# ------------------------------------------------------------------------------------------ fingerprints
def test_fingerprint_is_a_tensor_hash_not_a_file_hash(tmp_path, tiny_generator):
    from safetensors.torch import save_file

    torch.save({"g_ema": tiny_generator.state_dict()}, tmp_path / "g.pt")
    save_file({k: v.contiguous() for k, v in tiny_generator.state_dict().items()}, str(tmp_path / "g.safetensors"))
    fp = generator_fingerprint(tiny_generator)
    assert len(fp) == 64 and int(fp, 16) >= 0
    assert generator_fingerprint(load_generator(tmp_path / "g.pt")) == fp
    assert generator_fingerprint(load_generator(tmp_path / "g.safetensors")) == fp
    other = copy.deepcopy(tiny_generator)
    with torch.no_grad():
        other.convs[0].activate.bias[0] += 1e-6
    assert generator_fingerprint(other) != fp
    assert generator_fingerprint(make_tiny_generator(seed=1)) != fp


# ------------------------------------------------------------------------------------------ building
def test_style_holds_only_the_changed_tensors_and_full_metadata(pair, style):
    source, adapted = pair
    assert set(style.tensors) == set(CHANGED)
    for k in CHANGED:
        assert torch.equal(style.tensors[k], adapted.state_dict()[k])
    m = style.meta
    assert m["source"] == "ffhq" and m["source_text"] == "Photo" and m["target_text"] == "Witcher"
    assert m["layers"] == ["convs.2", "convs.3"] and m["config"] == {"iterations": 3, "lr": 0.002}
    assert m["source_fingerprint"] == generator_fingerprint(source)
    assert m["generator_config"] == source.config()
    assert m["nada_version"] == __import__("nada").__version__
    assert m["created"][:2] == "20" and "T" in m["created"]
    assert repr(style) == "Style(4 tensors, 4,672 values, source='ffhq', 'Photo' -> 'Witcher')"


def test_config_dataclass_with_unserialisable_fields_is_kept_as_data(pair, tmp_path):
    import dataclasses
    import threading

    @dataclasses.dataclass
    class Cfg:
        iterations: int = 300
        layers_k: int = 12
        out: os.PathLike = tmp_path / "x"
        stop: threading.Event = dataclasses.field(default_factory=threading.Event)

    style = style_from_generators(*pair, {**META, "config": Cfg()})
    assert style.meta["config"] == {"iterations": 300, "layers_k": 12, "out": str(tmp_path / "x")}
    save_style(style, tmp_path / "s.safetensors")
    assert load_style(tmp_path / "s.safetensors").meta["config"] == style.meta["config"]


def test_architecture_mismatch_between_source_and_adapted(tiny_generator):
    with pytest.raises(StyleMismatchError, match="architecture"):
        style_from_generators(tiny_generator, make_tiny_generator(size=64), META)


# ------------------------------------------------------------------------------------------ save / load
def test_fp32_round_trip_is_exact_and_stores_only_the_diff(tmp_path, style, tiny_generator):
    path = save_style(style, tmp_path / "witcher.safetensors")
    loaded = load_style(path)
    _assert_sd_equal(loaded.tensors, style.tensors)
    assert all(v.dtype == torch.float32 for v in loaded.tensors.values())
    assert {k: v for k, v in loaded.meta.items() if k != "storage_dtype"} == style.meta
    assert loaded.meta["storage_dtype"] == "float32"
    # File size: the changed tensors plus a small header, far below the full generator.
    changed = sum(v.numel() * 4 for v in style.tensors.values())
    full = sum(v.numel() * 4 for v in tiny_generator.state_dict().values())
    size = path.stat().st_size
    assert changed <= size <= changed + 4096, (size, changed)
    assert size < 0.25 * full, (size, full)
    assert [p.name for p in tmp_path.iterdir()] == ["witcher.safetensors"]  # no temp files left


def test_fp16_round_trip_error_is_bounded(tmp_path, pair, style):
    source, adapted = pair
    path = save_style(style, tmp_path / "half.safetensors", fp16=True)
    loaded = load_style(path)
    assert loaded.meta["storage_dtype"] == "float16"
    assert all(v.dtype == torch.float16 for v in loaded.tensors.values())
    worst_rel = 0.0
    for k, v in style.tensors.items():
        err = (loaded.tensors[k].float() - v).abs()
        assert torch.all(err <= v.abs() * 2.0 ** -11 + 2.0 ** -24), k  # round-to-nearest float16
        worst_rel = max(worst_rel, float((err / v.abs().clamp_min(1e-6)).max()))
    styled = apply_style(source, loaded, 1.0)
    img_err = float((_images(styled) - _images(adapted)).abs().max())
    ref = _images(adapted)
    print(f"fp16 style: max relative weight error {worst_rel:.2e}, max abs image error {img_err:.2e} "
          f"(image std {float(ref.std()):.2f}, max |x| {float(ref.abs().max()):.2f})")
    assert worst_rel <= 2.0 ** -11 and img_err < 5e-3
    fp32_size = save_style(style, tmp_path / "full.safetensors").stat().st_size
    assert path.stat().st_size < 0.6 * fp32_size


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path, style, monkeypatch):
    import safetensors.torch

    path = save_style(style, tmp_path / "keep.safetensors")
    before = path.read_bytes()

    def broken(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_style(style, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.safetensors"]


def test_save_refuses_other_suffixes(tmp_path, style):
    with pytest.raises(ValueError, match=".safetensors"):
        save_style(style, tmp_path / "style.pt")


# ------------------------------------------------------------------------------------------ applying
def test_strength_zero_is_source_and_one_is_adapted_bit_for_bit(pair, style):
    source, adapted = pair
    before = _snapshot(source)
    _assert_sd_equal(apply_style(source, style, 0.0).state_dict(), before)
    full = apply_style(source, style, 1.0)
    _assert_sd_equal(full.state_dict(), adapted.state_dict())
    assert torch.equal(_images(full), _images(adapted))
    assert torch.equal(_images(apply_style(source, style, 0)), _images(source))
    _assert_sd_equal(source.state_dict(), before)  # the source is never modified
    assert full is not source and full.convs[2].conv.weight.data_ptr() != source.convs[2].conv.weight.data_ptr()


def test_halfway_interpolates(pair, style):
    source, adapted = pair
    half = apply_style(source, style, 0.5).state_dict()
    src, adp = source.state_dict(), adapted.state_dict()
    for k in src:
        if k in CHANGED:
            assert torch.allclose(half[k], (src[k] + adp[k]) / 2, atol=1e-6, rtol=0), k
            assert not torch.equal(half[k], src[k]) and not torch.equal(half[k], adp[k])
        else:
            assert torch.equal(half[k], src[k]), k
    quarter = apply_style(source, style, 0.25).state_dict()
    k = CHANGED[0]
    assert torch.allclose(quarter[k], src[k] + 0.25 * (adp[k] - src[k]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("strength", [-0.1, 1.01, float("nan"), "1"])
def test_strength_outside_unit_interval_is_refused(pair, style, strength):
    with pytest.raises(ValueError, match="between 0"):
        apply_style(pair[0], style, strength)


def test_style_from_another_source_is_refused_naming_both(style):
    other = make_tiny_generator(seed=1)  # same architecture, other weights
    with pytest.raises(StyleMismatchError) as err:
        apply_style(other, style, source_name="my-faces.pt")
    msg = str(err.value)
    assert "'ffhq'" in msg and "'my-faces.pt'" in msg and "other weights" in msg
    assert style.meta["source_fingerprint"][:12] in msg and generator_fingerprint(other)[:12] in msg
    assert isinstance(err.value, ValueError)
    # On purpose, a user may apply it anyway.
    forced = apply_style(other, style, 1.0, check_source=False)
    assert torch.equal(forced.state_dict()[CHANGED[0]], style.tensors[CHANGED[0]])


def test_style_on_another_architecture_is_refused(style):
    # Wider channels: the same keys with other shapes, refused even without the fingerprint check.
    wide = make_tiny_generator(channel_max=32)
    with pytest.raises(StyleMismatchError, match="other shapes"):
        apply_style(wide, style, check_source=False)
    # Same layer shapes, more layers: the architecture check names the sizes.
    bigger = make_tiny_generator(size=64)
    with pytest.raises(StyleMismatchError, match="64px") as err:
        apply_style(bigger, style)
    assert "32px" in str(err.value) and "another architecture" in str(err.value)


# ------------------------------------------------------------------------------------------ .pt files
def test_export_then_import_round_trip(tmp_path, pair, style):
    source, adapted = pair
    source.latent_avg = torch.randn(1, source.style_dim)
    before = _snapshot(source)
    path = export_style_pt(source, style, tmp_path / "witcher.pt")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert set(ckpt) == {"g_ema", "latent_avg"}
    _assert_sd_equal(ckpt["g_ema"], adapted.state_dict())
    loaded = load_generator(path)  # other tools read it as an ordinary generator
    assert torch.equal(_images(loaded), _images(adapted))
    assert torch.equal(loaded.latent_avg, source.latent_avg)
    back = import_style_pt(path, source, {"target_text": "Witcher"})
    _assert_sd_equal(back.tensors, style.tensors)
    assert back.meta["source_fingerprint"] == style.meta["source_fingerprint"]
    assert back.meta["target_text"] == "Witcher" and back.meta["imported_from"] == str(path)
    _assert_sd_equal(source.state_dict(), before)


def test_import_refuses_another_architecture(tmp_path, tiny_generator):
    path = tmp_path / "big.pt"
    torch.save({"g_ema": make_tiny_generator(size=64).state_dict()}, path)
    with pytest.raises(StyleMismatchError, match="64px generator") as err:
        import_style_pt(path, tiny_generator)
    assert "32px" in str(err.value)


def test_published_style_through_a_fake_hub_cache(hub_cache, pair):
    source, adapted = pair
    asset = weights.REGISTRY["nada-pixar"]
    buf = io.BytesIO()
    torch.save({"g_ema": adapted.state_dict()}, buf)
    put_in_hub_cache(hub_cache, asset.repo_id, asset.filename, buf.getvalue())

    style = load_any_style("nada-pixar", source, "ffhq")
    assert set(style.tensors) == set(CHANGED)
    assert style.meta["source"] == "ffhq" and style.meta["published"] == f"{asset.repo_id}/{asset.filename}"
    styled = apply_style_file(source, "nada-pixar", strength=1.0, source_name="ffhq")
    _assert_sd_equal(styled.state_dict(), adapted.state_dict())
    _assert_sd_equal(apply_style_file(source, "nada-pixar", strength=0.0).state_dict(), source.state_dict())

    with pytest.raises(StyleMismatchError, match="trained from the 'ffhq' generator.*'church'"):
        load_any_style("nada-pixar", source, "church")
    with pytest.raises(WeightsUnavailableError, match="not cached"):
        load_any_style("nada-joker", source, "ffhq")  # not in the fake cache, and offline
    with pytest.raises(StyleFileError, match="generator in the weights registry, not a style"):
        load_any_style("ffhq", source, "ffhq")


def test_load_any_style_by_path_and_saved_name(hub_cache, pair, style, tmp_path):
    source, adapted = pair
    path = save_style(style, tmp_path / "mine.safetensors")
    _assert_sd_equal(load_any_style(path, source, "ffhq").tensors, style.tensors)
    save_style(style, style_path("My Witcher!"))
    assert list_saved_styles() == ["my-witcher"]
    by_name = apply_style_file(source, "my-witcher", strength=1.0)
    _assert_sd_equal(by_name.state_dict(), adapted.state_dict())
    pt = export_style_pt(source, style, tmp_path / "mine.pt")
    _assert_sd_equal(load_any_style(pt, source, "ffhq").tensors, style.tensors)
    with pytest.raises(StyleMismatchError):
        load_any_style(path, make_tiny_generator(seed=3), "ffhq")
    with pytest.raises(StyleFileError, match="not found.*my-witcher.*nada-pixar"):
        load_any_style("no-such-style", source, "ffhq")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(StyleFileError, match="neither a nada style"):
        load_any_style(tmp_path / "notes.txt", source, "ffhq")
    with pytest.raises(ValueError, match="between 0"):
        apply_style_file(source, path, strength=2.0)


def test_generate_command_with_a_style(tmp_path, pair, style):
    from nada.cli import main

    source, adapted = pair
    src_pt = tmp_path / "src.pt"
    torch.save({"g_ema": source.state_dict()}, src_pt)
    style_file = save_style(style, tmp_path / "s.safetensors")
    torch.save({"g_ema": adapted.state_dict()}, tmp_path / "adapted.pt")
    outs = {}
    for name, args in {"styled": ["--source", str(src_pt), "--style", str(style_file)],
                       "adapted": ["--source", str(tmp_path / "adapted.pt")],
                       "zero": ["--source", str(src_pt), "--style", str(style_file), "--strength", "0"],
                       "plain": ["--source", str(src_pt)]}.items():
        assert main(["generate", *args, "--seed", "3", "--device", "cpu", "-o", str(tmp_path / f"{name}.png")]) == 0
        outs[name] = (tmp_path / f"{name}.png").read_bytes()
    assert outs["styled"] == outs["adapted"] and outs["zero"] == outs["plain"] and outs["styled"] != outs["plain"]


# ------------------------------------------------------------------------------------------ bad files
def test_corrupt_and_foreign_files_give_clear_errors(tmp_path, style, tiny_generator):
    from safetensors.torch import save_file

    good = save_style(style, tmp_path / "good.safetensors").read_bytes()
    (tmp_path / "garbage.safetensors").write_bytes(os.urandom(300))
    (tmp_path / "truncated.safetensors").write_bytes(good[: len(good) // 2])
    save_file({k: v.contiguous() for k, v in tiny_generator.state_dict().items()},
              str(tmp_path / "generator.safetensors"))
    for name, pattern in [("garbage", "could not be read as a safetensors file"),
                          ("truncated", "could not be read as a safetensors file"),
                          ("generator", "not a nada style"),
                          ("missing", "does not exist")]:
        with pytest.raises(StyleFileError, match=pattern):
            load_style(tmp_path / f"{name}.safetensors")
    torch.save({"g_ema": tiny_generator.state_dict()}, tmp_path / "full.pt")
    with pytest.raises(StyleFileError, match="import_style_pt"):
        load_style(tmp_path / "full.pt")
    # Metadata tampering: a future format, broken JSON, missing source fields.
    tensors = {k: v.contiguous() for k, v in style.tensors.items()}
    meta = {k: json.dumps(v) for k, v in style.meta.items()}
    for name, header, pattern in [
            ("future", {**meta, styles.FORMAT_KEY: "99"}, "format '99'"),
            ("badjson", {**meta, "layers": "[oops", styles.FORMAT_KEY: "1"}, "corrupt style metadata"),
            ("nosource", {styles.FORMAT_KEY: "1"}, "lacks the style metadata")]:
        save_file(tensors, str(tmp_path / f"{name}.safetensors"), metadata=header)
        with pytest.raises(StyleFileError, match=pattern):
            load_style(tmp_path / f"{name}.safetensors")
    assert issubclass(StyleFileError, CheckpointError) and issubclass(StyleFileError, ValueError)
    # Corrupt or foreign .pt files go through the weights loader's safe path.
    (tmp_path / "bad.pt").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="bad.pt"):
        import_style_pt(tmp_path / "bad.pt", tiny_generator)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no StyleGAN2 generator"):
        import_style_pt(tmp_path / "other.pt", tiny_generator)


# ------------------------------------------------------------------------------------------ names
@pytest.mark.parametrize("text, expected", [
    ("Witcher", "witcher"), ("My Witcher!", "my-witcher"), ("pixar_v2", "pixar_v2"),
    ("../../etc/passwd", "etc-passwd"), ("a/b", "a-b"), ("a\\b", "a-b"), ("/abs/path", "abs-path"),
    ("CON", "con-style"), ("lpt1", "lpt1-style"), ("Ukiyo-e  Édition", "ukiyo-e-edition"), ("-rf", "rf"),
    ("x" * 300, "x" * 64),
])
def test_safe_style_name(text, expected):
    name = safe_style_name(text)
    assert name == expected and 1 <= len(name) <= 64


@pytest.mark.parametrize("text", ["", "   ", "../..", "/", "日本", "..\\..", "\x00"])
def test_unusable_names_are_refused(text):
    with pytest.raises(ValueError, match="no usable characters"):
        safe_style_name(text)


@pytest.mark.parametrize("text", ["../../etc/passwd", "a/b", "/etc/passwd", "..", "C:\\Windows\\x", "CON", "y" * 500])
def test_style_path_never_leaves_the_styles_folder(hub_cache, text):
    if text == "..":
        with pytest.raises(ValueError):
            style_path(text)
        return
    path = style_path(text)
    assert path.parent == styles_dir().resolve() == (hub_cache / "styles").resolve()
    assert path.suffix == ".safetensors" and len(path.stem) <= 64
    assert os.sep not in path.name and not path.name.startswith(".")


def test_list_saved_styles(hub_cache, style):
    assert list_saved_styles() == []
    for name in ("Zombie", "anime", "../evil"):
        save_style(style, style_path(name))
    (styles_dir() / "notes.txt").write_text("not a style")
    (styles_dir() / "Bad Name.safetensors").write_bytes(b"")
    assert list_saved_styles() == ["anime", "evil", "zombie"]
    assert not (hub_cache / "evil.safetensors").exists()


# ----------------------------------------------------------------------------------------------- refusing wrong answers
def test_import_refuses_an_unrelated_generator_of_the_same_architecture(tmp_path, tiny_generator):
    """A separately trained generator has its own mapping network, which adaptation never changes: refused."""
    path = tmp_path / "unrelated.pt"
    torch.save({"g_ema": make_tiny_generator(seed=5).state_dict()}, path)
    with pytest.raises(StyleMismatchError, match=r"mapping network \(\d+ of \d+ style\.\* tensors\) differs") as err:
        import_style_pt(path, tiny_generator)
    assert "separately trained StyleGAN2 generator" in str(err.value) and "--source" not in str(err.value)
    # One mapping weight changed by one float step is enough; ToRGB and convolution changes alone are a style.
    nudged = _adapt(tiny_generator)
    with torch.no_grad():
        w = nudged.state_dict()["style.1.weight"]
        w.view(-1)[0] = torch.nextafter(w.view(-1)[0], torch.tensor(1e9))
    torch.save({"g_ema": nudged.state_dict()}, path)
    with pytest.raises(StyleMismatchError, match="mapping network"):
        import_style_pt(path, tiny_generator)
    rgb = _adapt(tiny_generator, keys=("to_rgbs.1.conv.weight", "to_rgb1.conv.weight", "convs.0.conv.weight"))
    torch.save({"g_ema": rgb.state_dict()}, path)
    assert set(import_style_pt(path, tiny_generator).tensors) == {"to_rgbs.1.conv.weight", "to_rgb1.conv.weight",
                                                                 "convs.0.conv.weight"}


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_style_files_follow_the_umask(tmp_path, style, tiny_generator, umask):
    old = os.umask(umask)
    try:
        saved = save_style(style, tmp_path / "s.safetensors")
        exported = export_style_pt(tiny_generator, style, tmp_path / "s.pt")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")  # what any other output gets
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    assert plain.stat().st_mode & 0o777 == expected
    assert saved.stat().st_mode & 0o777 == expected and exported.stat().st_mode & 0o777 == expected


def test_verify_source_advice_replaces_the_command_line_hint(style):
    other = make_tiny_generator(seed=9)
    with pytest.raises(StyleMismatchError, match=r"--source ffhq"):
        styles.verify_source(style, other, "tiny")
    with pytest.raises(StyleMismatchError) as err:
        styles.verify_source(style, other, "tiny", advice="Pick another style in the list.")
    assert str(err.value).endswith("Pick another style in the list.") and "--source" not in str(err.value)
