"""Compact styles of the "modulation" form (StyleDomain's s_mod): per-channel offsets on the style vectors,
s * (1 + delta), trained with every generator weight untouched; files under 64 KB; folding into the affine layers for
--export-pt; style arithmetic (nada.styles.blend); videos through several styles. The "compact" recipe now trains the
"style_delta" form (tests/test_style_delta.py); these tests ask for the "modulation" form by name, every layer."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from nada.nets.stylegan2 import Generator, seeded_z
from nada.render import render_seeds, to_pil
from nada.styles import (
    Style,
    StyleMismatchError,
    apply_style,
    blend,
    export_style_pt,
    load_style,
    save_style,
    style_from_generators,
)
from nada.train import RECIPES, AdaptConfig, adapt
from nada.video import VideoPlan, grid_shape, video_frames

from .helpers import PROJECT_ROOT, ColourClip, make_tiny_generator

SEEDS = [0, 1, 2, 3, 4, 5, 6, 7]


def _images(g: Generator, seeds=SEEDS) -> torch.Tensor:
    with torch.no_grad():
        return render_seeds(g, seeds, 0.7)  # [N, 3, H, W]


def _train(source: Generator, colour: str, **overrides):
    """A compact style trained from "photo" towards ``colour`` with the colour CLIP stand-in (the last record)."""
    settings = {"iterations": 20, "preview_every": 0, "clip_models": ("colour",), "params": "modulation",
                "frozen_rows": (), **overrides}
    cfg = AdaptConfig.from_recipe("compact", source_text="photo", target_text=colour, **settings)
    return list(adapt(source, [(ColourClip(), 1.0)], cfg))[-1]


def _style(source: Generator, record, colour: str) -> Style:
    meta = {"source": "tiny", "source_text": "photo", "target_text": colour, "config": {"params": "modulation"},
            "layers": record.layers}
    return style_from_generators(source, record.generator, meta)


@pytest.fixture(scope="module")
def source() -> Generator:
    return make_tiny_generator()


@pytest.fixture(scope="module")
def trained(source):
    """Two compact styles of the tiny generator: towards red and towards blue."""
    red, blue = _train(source, "red"), _train(source, "blue")
    return {"red": (red, _style(source, red, "red")), "blue": (blue, _style(source, blue, "blue"))}


def _weight_style(source: Generator) -> Style:
    adapted = copy.deepcopy(source)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for key in ("convs.0.conv.weight", "convs.3.conv.weight"):
            w = adapted.get_parameter(key)
            w.add_(0.3 * torch.randn(w.shape, generator=gen))
    return style_from_generators(source, adapted, {"source": "tiny", "target_text": "weights"})


# ------------------------------------------------------------------------------------------- the generator
def test_offsets_never_enter_the_state_dict_and_zero_offsets_change_nothing(source):
    g = copy.deepcopy(source)
    keys = list(g.state_dict())
    before = _images(g)
    convs = g.modulated_convs(to_rgb=True)
    g.set_style_offsets({f"{n}.style_offset": torch.zeros(m.in_ch) for n, m in convs.items()})
    assert list(g.state_dict()) == keys and len(g.style_offsets()) == len(convs)
    assert torch.equal(_images(g), before)  # s * (1 + 0) == s exactly
    fresh = Generator(**source.config())
    fresh.load_state_dict(g.state_dict(), strict=True)  # still rosinality's g_ema keys
    with pytest.raises(ValueError, match="not a style offset"):
        g.set_style_offsets({"convs.0.conv.weight": torch.zeros(16)})
    with pytest.raises(ValueError, match="shape"):
        g.set_style_offsets({"conv1.conv.style_offset": torch.zeros(3)})
    assert len(g.style_offsets()) == len(convs)  # a refused call changed nothing


def test_offsets_scale_the_style_vector_in_every_formulation(source):
    g = copy.deepcopy(source)
    gen = torch.Generator().manual_seed(0)
    offsets = {f"{n}.style_offset": 0.3 * torch.randn(m.in_ch, generator=gen) for n, m in g.modulated_convs().items()}
    g.set_style_offsets(offsets)
    w = g.mapping(seeded_z([1, 2], g.style_dim))  # [2, 32]
    s = g.convs[2].conv.styles(w)
    expected = g.convs[2].conv.modulation(w) * (1 + offsets["convs.2.conv.style_offset"])
    assert torch.equal(s, expected)
    with torch.no_grad():
        ref = g.set_conv_impl("grouped").synthesis(w)  # the reference path
        fast = g.set_conv_impl("batched").synthesis(w)  # fused StyledConv and ToRGB paths
        plain = source.synthesis(w)
    assert torch.allclose(fast, ref, atol=1e-5) and (fast - plain).abs().mean() > 1e-2


def test_folding_offsets_into_the_affine_layers_matches_to_float_precision(source):
    g = copy.deepcopy(source)
    gen = torch.Generator().manual_seed(1)
    g.set_style_offsets({f"{n}.style_offset": 0.5 * torch.randn(m.in_ch, generator=gen)
                         for n, m in g.modulated_convs().items()})
    styled = _images(g)
    folded = copy.deepcopy(g).fold_style_offsets()
    assert folded.style_offsets() == {}
    assert (styled - _images(source)).abs().max() > 0.05
    torch.testing.assert_close(_images(folded), styled, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------- training
def test_config_params_recipe_and_the_command_line_flag():
    cfg = AdaptConfig.from_recipe("compact")
    assert cfg.params == "style_delta" and AdaptConfig().params == "weights"
    assert AdaptConfig.from_recipe("compact", params="modulation").params == "modulation"  # the older form, by name
    assert "compact" in RECIPES and RECIPES["compact"].settings["lr"] <= 0.1  # within the app's lr limit
    with pytest.raises(ValueError, match="Params must be one of weights, style_delta, modulation"):
        AdaptConfig(params="lora").validate()
    from nada.cli import build_parser

    for form in ("modulation", "style_delta"):
        args = build_parser().parse_args(["adapt", "--from", "photo", "--to", "red", "--params", form])
        assert args.params == form


def test_a_compact_style_moves_the_images_and_leaves_every_weight_untouched(source, trained, tmp_path):
    record, style = trained["red"]
    assert record.error is None and record.step == 20
    sd0 = source.state_dict()
    for key, value in record.generator.state_dict().items():
        assert torch.equal(value, sd0[key]), key  # every weight, buffer and noise map exactly as it was
    src, out = _images(source), _images(record.generator)
    red_gain = (out[:, 0] - src[:, 0]).mean()
    assert red_gain > 0.1 and red_gain > (out[:, 1:] - src[:, 1:]).mean() + 0.1  # towards red, not just brighter
    assert style.kind == style.meta["kind"] == "modulation" and style.weights == {}
    n = sum(v.numel() for v in style.tensors.values())
    assert n == sum(m.in_ch for m in source.modulated_convs(to_rgb=False).values())  # 7 convs x 16 channels
    path = save_style(style, tmp_path / "red.safetensors")
    assert path.stat().st_size < 64 * 1024
    loaded = load_style(path)
    assert loaded.kind == "modulation" and loaded.tensors.keys() == style.tensors.keys()
    applied = apply_style(source, loaded)
    assert torch.equal(_images(applied), out)  # the file gives the trained generator's images exactly
    assert torch.equal(_images(apply_style(source, loaded, 0.0)), src)
    half = apply_style(source, loaded, 0.5)
    torch.testing.assert_close(half.style_offsets()["convs.1.conv.style_offset"],
                               0.5 * style.tensors["convs.1.conv.style_offset"])
    assert source.style_offsets() == {}  # the source never changes


def test_with_a_probe_only_the_chosen_rows_offsets_train(source):
    record = _train(source, "red", layers_k=2, iterations=1, probe_iters=1)
    assert record.rows is not None and len(record.rows) == 2
    changed = {k.removesuffix(".conv.style_offset") for k, v in record.generator.style_offsets().items()
               if v.abs().sum() > 0}
    assert changed == set(record.layers) and len(changed) == 2
    assert all(not v.requires_grad for v in record.generator.style_offsets().values())


def test_the_exported_pt_is_a_plain_generator_matching_the_applied_style(source, trained, tmp_path):
    _, style = trained["red"]
    path = export_style_pt(source, style, tmp_path / "red.pt")
    ckpt = torch.load(path, weights_only=True)
    fresh = Generator(**source.config())
    fresh.load_state_dict(ckpt["g_ema"], strict=True)
    torch.testing.assert_close(_images(fresh.eval()), _images(apply_style(source, style)), rtol=1e-5, atol=1e-5)


def test_a_weight_style_file_without_a_kind_still_loads_as_weights(source, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = save_style(_weight_style(source), tmp_path / "w.safetensors")
    with safe_open(str(path), framework="pt") as f:
        header = {k: v for k, v in f.metadata().items() if k != "kind"}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, str(path), metadata=header)  # as today's code wrote it
    loaded = load_style(path)
    assert loaded.kind == loaded.meta["kind"] == "weights"
    assert torch.equal(_images(apply_style(source, loaded)), _images(apply_style(source, _weight_style(source))))


# ---------------------------------------------------------------------------------------------- blending
def test_blend_one_and_zero_gives_the_first_style_exactly(source, trained):
    red, blue = trained["red"][1], trained["blue"][1]
    first = blend([(red, 1.0), (blue, 0.0)])
    assert first.tensors.keys() == red.tensors.keys()
    assert all(torch.equal(first.tensors[k], red.tensors[k]) for k in red.tensors)
    assert torch.equal(_images(apply_style(source, first)), _images(apply_style(source, red)))
    w = _weight_style(source)
    both = blend([(w, 1), (red, 0)])
    assert both.kind == "weights" and all(torch.equal(both.tensors[k], w.tensors[k]) for k in w.tensors)


def test_blend_between_two_compact_styles(source, trained):
    red, blue = trained["red"][1], trained["blue"][1]
    mid = blend([(red, 0.5), (blue, 0.5)])
    assert mid.kind == "modulation" and mid.meta["target_text"] == "0.5*red + 0.5*blue"
    key = "convs.4.conv.style_offset"
    torch.testing.assert_close(mid.tensors[key], 0.5 * (red.tensors[key] + blue.tensors[key]))
    imgs = {n: _images(apply_style(source, s)) for n, s in (("red", red), ("blue", blue), ("mid", mid))}
    redness = {n: (v[:, 0] - v[:, 2]).mean().item() for n, v in imgs.items()}
    assert redness["blue"] < redness["mid"] < redness["red"]
    away = blend([(red, 1.0), (blue, -0.5)])  # negative: away from blue
    torch.testing.assert_close(away.tensors[key], red.tensors[key] - 0.5 * blue.tensors[key])
    assert away.meta["target_text"] == "1*red - 0.5*blue"


def test_a_weight_style_and_a_compact_style_blend_into_a_mixed_style(source, trained, tmp_path):
    red, w = trained["red"][1], _weight_style(source)
    mixed = blend([(w, 0.5), (red, 0.5)], source=source)
    assert mixed.kind == "mixed" and mixed.weights.keys() == w.weights.keys()
    assert mixed.offsets.keys() == red.offsets.keys()
    src_w = source.state_dict()["convs.0.conv.weight"]
    torch.testing.assert_close(mixed.tensors["convs.0.conv.weight"], (src_w + w.tensors["convs.0.conv.weight"]) / 2)
    loaded = load_style(save_style(mixed, tmp_path / "mixed.safetensors"))
    assert loaded.kind == "mixed"
    g = apply_style(source, loaded)
    assert g.style_offsets() and not torch.equal(g.state_dict()["convs.0.conv.weight"], src_w)
    full = blend([(w, 1.0), (red, 1.0)], source=source)  # both at full weight: the weights and the offsets
    expected = apply_style(apply_style(source, w), red, check_source=False)
    assert torch.equal(_images(apply_style(source, full)), _images(expected))


def test_blend_refuses_bad_weights_other_sources_and_needs_the_source_only_when_it_must(source, trained):
    red, blue = trained["red"][1], trained["blue"][1]
    for bad in (math.nan, math.inf, "0.5", None):
        with pytest.raises(ValueError, match="finite numbers"):
            blend([(red, 0.5), (blue, bad)])
    with pytest.raises(ValueError, match="at least one"):
        blend([])
    with pytest.raises(ValueError, match="pairs"):
        blend(red)
    other = make_tiny_generator(seed=7)
    foreign = style_from_generators(other, apply_style(other, red, check_source=False), {"source": "other"})
    with pytest.raises(StyleMismatchError, match="same source generator"):
        blend([(red, 0.5), (foreign, 0.5)])
    w = _weight_style(source)
    with pytest.raises(ValueError, match="pass source="):
        blend([(w, 0.5)])  # the source's share of the tensor is needed
    half = blend([(w, 0.5)], source=source)
    torch.testing.assert_close(_images(apply_style(source, half)), _images(apply_style(source, w, 0.5)))
    with pytest.raises(StyleMismatchError):
        blend([(red, 1.0)], source=other)


# ------------------------------------------------------------------------------------------------ videos
def _frame(g: Generator, seed: int) -> np.ndarray:
    return np.asarray(to_pil(_images(g, [seed]))[0], dtype=np.int16)


def test_a_two_style_video_starts_in_its_first_style_and_ends_in_the_second(source, trained):
    red, blue = trained["red"][1], trained["blue"][1]
    plan = VideoPlan(seeds=(5,), seconds_per_seed=1.0, fps=6)
    frames = [f.astype(np.int16) for f in video_frames(source, [red, blue], plan)]
    assert len(frames) == 6
    assert np.abs(frames[0] - _frame(apply_style(source, red), 5)).max() <= 1
    assert np.abs(frames[-1] - _frame(apply_style(source, blue), 5)).max() <= 1
    assert np.abs(frames[0] - frames[-1]).mean() > 5  # it morphs
    w = _weight_style(source)
    mixed = [f.astype(np.int16) for f in video_frames(source, [w, red], plan)]  # a weight style to a compact one
    assert np.abs(mixed[0] - _frame(apply_style(source, w), 5)).max() <= 1
    assert np.abs(mixed[-1] - _frame(apply_style(source, red), 5)).max() <= 1


def test_the_grid_shows_each_style_on_the_same_walk(source, trained):
    red, blue = trained["red"][1], trained["blue"][1]
    plan = VideoPlan(seeds=(2, 3), seconds_per_seed=0.5, fps=4, ramp=False, grid=True)
    frames = list(video_frames(source, [None, red, blue], plan))
    assert frames[0].shape == (32, 96, 3) and grid_shape(4) == (2, 2) and grid_shape(3) == (1, 3)
    tiles = [frames[0][:, 32 * i:32 * (i + 1)].astype(np.int16) for i in range(3)]
    for tile, g in zip(tiles, (source, apply_style(source, red), apply_style(source, blue))):
        assert np.abs(tile - _frame(g, 2)).max() <= 1


def test_the_command_lines_blend_and_morph(source, trained, tmp_path):
    paths = {}
    for colour in ("red", "blue"):
        style = copy.deepcopy(trained[colour][1])
        paths[colour] = save_style(style, tmp_path / f"{colour}.safetensors")
    env_run = [sys.executable, "-m", "nada"]
    out = tmp_path / "mix.png"
    run = subprocess.run([*env_run, "generate", "--source", "tiny", "--style",
                          f"{paths['red']}:1,{paths['blue']}:0", "--seed", "5", "--device", "cpu", "-o", str(out)],
                         capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300)
    assert run.returncode == 0, run.stderr
    from PIL import Image

    got = np.asarray(Image.open(out), dtype=np.int16)
    assert np.abs(got - _frame(apply_style(source, trained["red"][1]), 5)).max() <= 1
    bad = subprocess.run([*env_run, "generate", "--source", "tiny", "--style", f"{paths['red']},{paths['blue']}:0.5",
                          "--device", "cpu", "-o", str(out)], capture_output=True, text=True, cwd=PROJECT_ROOT,
                         timeout=300)
    assert bad.returncode == 1 and "give every blended style a weight" in bad.stderr
    video = tmp_path / "grid.mp4"
    run = subprocess.run([*env_run, "video", "--tiny", "--style", f"{paths['red']},{paths['blue']}", "--grid",
                          "--seed", "0-1", "--seconds", "0.5", "--fps", "4", "-o", str(video)],
                         capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300)
    assert run.returncode == 0, run.stderr
    import av

    with av.open(str(video)) as container:
        first = next(container.decode(container.streams.video[0])).to_ndarray(format="rgb24")
    assert first.shape == (32, 64, 3)
    assert json.loads(json.dumps(trained["red"][1].meta))["kind"] == "modulation"
