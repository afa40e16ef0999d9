"""StyleDomain's compact form and its published recipe: "style_delta" offsets (s + delta on each synthesis
convolution's style vector), the coarse W+ rows frozen, the exact fold into the affine bias for ``.pt`` export, blends
of the two compact forms, frozen row groups for every parametrisation, and which layers the paper's command trains
(``to_rgb1`` with every row; no ToRGB layer when the probe chooses)."""

from __future__ import annotations

import copy

import pytest
import torch

from nada.nets.rows import ROW_GROUPS, resolve_rows
from nada.nets.stylegan2 import Generator
from nada.render import render_seeds
from nada.styles import apply_style, blend, export_style_pt, load_style, save_style, style_from_generators
from nada.train import LAZY_REG_RATIO, AdaptConfig, adapt

from .helpers import ColourClip, make_tiny_generator

SEEDS = [0, 1, 2, 3, 4, 5]


def _images(g: Generator) -> torch.Tensor:
    with torch.no_grad():
        return render_seeds(g, SEEDS, 0.7)  # [N, 3, H, W]


def _run(source: Generator, colour: str, recipe: str = "compact", **overrides):
    """The last record of a short run from "photo" towards ``colour`` with the colour CLIP stand-in."""
    settings = {"iterations": 12, "preview_every": 0, "clip_models": ("colour",), **overrides}
    cfg = AdaptConfig.from_recipe(recipe, source_text="photo", target_text=colour, **settings)
    return list(adapt(source, [(ColourClip(), 1.0)], cfg))[-1]


def _style(source: Generator, record, colour: str, params: str = "style_delta"):
    meta = {"source": "tiny64", "source_text": "photo", "target_text": colour, "config": {"params": params},
            "layers": record.layers}
    return style_from_generators(source, record.generator, meta)


@pytest.fixture(scope="module")
def source64() -> Generator:
    return make_tiny_generator(size=64)  # 10 W+ rows: coarse 0-5, medium 6-9


@pytest.fixture(scope="module")
def red64(source64):
    record = _run(source64, "red")
    return record, _style(source64, record, "red")


# --------------------------------------------------------------------------------------------- the generator
def test_a_style_delta_adds_to_the_style_vector_and_both_forms_compose(source64):
    g = copy.deepcopy(source64)
    keys = list(g.state_dict())
    conv = g.convs[2].conv
    gen = torch.Generator().manual_seed(1)
    delta, offset = 0.3 * torch.randn(conv.in_ch, generator=gen), 0.2 * torch.randn(conv.in_ch, generator=gen)
    w = torch.randn(3, g.style_dim, generator=gen)
    g.set_style_offsets({"convs.2.conv.style_delta": delta})
    torch.testing.assert_close(conv.styles(w), conv.modulation(w) + delta, rtol=0, atol=0)
    g.set_style_offsets({"convs.2.conv.style_delta": delta, "convs.2.conv.style_offset": offset})
    torch.testing.assert_close(conv.styles(w), conv.modulation(w) * (1 + offset) + delta, rtol=0, atol=0)
    assert list(g.state_dict()) == keys  # offsets never enter rosinality's state dict
    assert set(g.style_offsets()) == {"convs.2.conv.style_delta", "convs.2.conv.style_offset"}
    with pytest.raises(ValueError, match="not a style offset"):
        g.set_style_offsets({"convs.2.conv.style_shift": delta})
    g.set_style_offsets({"conv1.conv.style_delta": torch.zeros(g.conv1.conv.in_ch)})
    assert torch.equal(_images(g), _images(source64))  # a zero delta is the source itself


def test_folding_both_forms_into_the_affine_layer_keeps_the_images(source64):
    g = copy.deepcopy(source64)
    gen = torch.Generator().manual_seed(2)
    offsets = {}
    for name, m in g.modulated_convs().items():
        offsets[f"{name}.style_delta"] = 0.4 * torch.randn(m.in_ch, generator=gen)
        if name.startswith("convs"):
            offsets[f"{name}.style_offset"] = 0.3 * torch.randn(m.in_ch, generator=gen)
    g.set_style_offsets(offsets)
    styled = _images(g)
    assert (styled - _images(source64)).abs().max() > 0.05
    folded = copy.deepcopy(g).fold_style_offsets()
    assert folded.style_offsets() == {}
    torch.testing.assert_close(_images(folded), styled, rtol=1e-5, atol=1e-5)


# -------------------------------------------------------------------------------------- the compact recipe
def test_the_compact_recipe_leaves_the_coarse_rows_and_every_weight_untouched(source64, red64, tmp_path):
    record, style = red64
    assert record.error is None and record.step == 12
    coarse = {"conv1"} | {f"convs.{i}" for i in range(5)}  # the readers of rows 0-5 (StyleDomain's conv_0..conv_5)
    assert set(record.layers) == {f"convs.{i}" for i in range(5, len(source64.convs))}  # every other convolution
    for key, value in record.generator.style_offsets().items():
        if key.removesuffix(".conv.style_delta") in coarse:
            assert torch.equal(value, torch.zeros_like(value)), key  # exactly zero
    sd0 = source64.state_dict()
    assert all(torch.equal(v, sd0[k]) for k, v in record.generator.state_dict().items())
    assert style.kind == style.meta["kind"] == "style_delta" and style.weights == {}
    assert {k.removesuffix(".conv.style_delta") for k in style.tensors} == set(record.layers)  # no coarse key at all
    src, out = _images(source64), _images(record.generator)
    red_gain = (out[:, 0] - src[:, 0]).mean()
    assert red_gain > 0.05 and red_gain > (out[:, 1:] - src[:, 1:]).mean() + 0.05  # towards red
    path = save_style(style, tmp_path / "red.safetensors")
    assert path.stat().st_size < 64 * 1024
    loaded = load_style(path)
    assert loaded.kind == "style_delta"
    assert torch.equal(_images(apply_style(source64, loaded)), out)  # the file renders the trained images exactly
    half = apply_style(source64, loaded, 0.5)  # strength scales the delta: StyleDomain's s + alpha * delta
    key = next(iter(style.tensors))
    torch.testing.assert_close(half.style_offsets()[key], 0.5 * style.tensors[key])


def test_the_pt_export_of_a_style_delta_style_renders_the_applied_style(source64, red64, tmp_path):
    _, style = red64
    path = export_style_pt(source64, style, tmp_path / "red.pt")
    fresh = Generator(**source64.config())
    fresh.load_state_dict(torch.load(path, weights_only=True)["g_ema"], strict=True)
    torch.testing.assert_close(_images(fresh.eval()), _images(apply_style(source64, style)), rtol=1e-5, atol=1e-5)


def test_a_modulation_style_and_a_style_delta_style_blend(source64, red64):
    _, delta_style = red64
    record = _run(source64, "blue", params="modulation")
    mod_style = _style(source64, record, "blue", params="modulation")
    assert mod_style.kind == "modulation"
    first = blend([(delta_style, 1.0), (mod_style, 0.0)])
    assert first.kind == "style_delta" and all(torch.equal(first.tensors[k], v) for k, v in delta_style.tensors.items())
    mixed = blend([(delta_style, 0.5), (mod_style, 0.5)])
    assert mixed.kind == "mixed" and mixed.offsets.keys() == delta_style.tensors.keys() | mod_style.tensors.keys()
    by_hand = copy.deepcopy(source64).set_style_offsets(  # s * (1 + 0.5 o) + 0.5 d, layer by layer
        {k: 0.5 * v for k, v in {**delta_style.tensors, **mod_style.tensors}.items()})
    torch.testing.assert_close(_images(apply_style(source64, mixed)), _images(by_hand), rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------------ frozen rows
def _changed_modules(source: Generator, trained: Generator) -> set[str]:
    sd0, sd1 = source.state_dict(), trained.state_dict()
    names = set()
    for key in sd0:
        if not torch.equal(sd0[key], sd1[key]):
            parts = key.split(".")
            names.add(".".join(parts[:2]) if parts[0] in ("convs", "to_rgbs") else parts[0])
    return names


def test_row_groups_are_named_as_styledomain_names_them():
    assert list(ROW_GROUPS["coarse"]) == [0, 1, 2, 3, 4, 5] and list(ROW_GROUPS["medium"]) == [6, 7, 8, 9, 10]
    assert resolve_rows("fine", 18) == list(range(11, 18)) and resolve_rows("coarse+medium", 10) == list(range(10))
    assert resolve_rows([0, "medium"], 18) == [0, 6, 7, 8, 9, 10]
    for bad, words in (("fine", "names no W"), ("rough", "Unknown row group"), ([12], "does not exist")):
        with pytest.raises(ValueError, match=words):
            resolve_rows(bad, 10)
    with pytest.raises(ValueError, match="Every W\\+ row is frozen"):
        AdaptConfig(frozen_rows="coarse+medium").validate(10)
    with pytest.raises(ValueError, match="Unknown row group"):
        AdaptConfig(frozen_rows="rough").validate()


def test_frozen_rows_hold_every_layer_that_reads_them_in_a_weights_run(source64):
    record = _run(source64, "red", recipe="paper", frozen_rows="coarse", iterations=3)
    readers = {m for i in range(6) for m in source64.latent_consumers()[i]} | {"input"}
    assert readers == {"conv1", "convs.0", "convs.1", "convs.2", "convs.3", "convs.4", "to_rgb1", "to_rgbs.0",
                       "to_rgbs.1", "input"}
    changed = _changed_modules(source64, record.generator)
    assert changed == {f"convs.{i}" for i in range(5, len(source64.convs))}  # the rest trains, readers never


def test_the_probe_never_chooses_a_frozen_row(source64):
    record = _run(source64, "red", recipe="shape", frozen_rows="coarse", iterations=1, layers_k=2)
    assert record.rows is not None and len(record.rows) == 2 and min(record.rows) >= 6


# ------------------------------------------------------------------------- the layers the paper's command trains
def test_a_paper_run_trains_to_rgb1_as_the_official_command_does(source64):
    record = _run(source64, "red", recipe="paper", iterations=2)
    changed = _changed_modules(source64, record.generator)
    assert "to_rgb1" in changed and "conv1" in changed
    assert changed == {"conv1", "to_rgb1"} | {f"convs.{i}" for i in range(len(source64.convs))}
    assert "to_rgb1" in record.layers


def test_a_probed_run_changes_no_torgb_and_no_unchosen_row(source64):
    record = _run(source64, "red", recipe="shape", iterations=1, layers_k=3)
    chosen = set(record.rows)
    readers = {m for i in chosen for m in source64.latent_consumers()[i] if not m.startswith("to_rgb")}
    changed = _changed_modules(source64, record.generator)
    assert changed == readers and not any(m.startswith("to_rgb") for m in changed)


# ------------------------------------------------------------------------------------------------- Adam
def test_full_weight_runs_scale_lr_and_betas_and_compact_runs_take_them_as_given():
    weights = AdaptConfig.from_recipe("diverse").adam([torch.zeros(1, requires_grad=True)]).param_groups[0]
    assert weights["lr"] == pytest.approx(0.002 * LAZY_REG_RATIO)
    assert weights["betas"] == pytest.approx((0.0, 0.999 ** LAZY_REG_RATIO))
    compact = AdaptConfig.from_recipe("compact").adam([torch.zeros(1, requires_grad=True)]).param_groups[0]
    assert compact["lr"] == 0.05 and compact["betas"] == (0.9, 0.999)
    with pytest.raises(ValueError, match="Betas must be two numbers"):
        AdaptConfig(betas=(0.9, 1.5)).validate()
