"""Adapting a StyleGAN3 with every recipe, through the same loop, probe, styles and export as a StyleGAN2: layer
probing over its W+ rows (row 0: the input's affine, row i: layer i-1), compact styles on its affine outputs, the
in-domain loss and mixing; a style applies only to the generator it was trained on."""

from __future__ import annotations

import copy

import pytest
import torch

from nada.metrics import evaluate
from nada.probe import row_modules
from nada.styles import StyleMismatchError, apply_style, load_style, save_style, style_from_generators
from nada.tiny import tiny_stylegan3
from nada.train import AdaptConfig, adapt

from .helpers import ColourClip


@pytest.fixture(scope="module")
def sg3():
    return tiny_stylegan3()


K = 1.0  # the colour stand-in's constant feature: small, so that colours weigh and a few steps show


def _run(g, recipe: str, **overrides):
    settings = {"iterations": 6, "preview_every": 0, "clip_models": ("colour",), "preview_seeds": (0, 1), **overrides}
    cfg = AdaptConfig.from_recipe(recipe, source_text="photo", target_text="red", **settings)
    return cfg, list(adapt(g, [(ColourClip(k=K), 1.0)], cfg))


def _red_gain(source, adapted) -> float:
    """The rise of the stand-in's target score ("red") from the source to the adapted generator (8 samples)."""
    figures = evaluate(source, adapted, [(ColourClip(k=K), 1.0)], "photo", "red", n=8, seed=0)
    return figures["clip_target_adapted"] - figures["clip_target_source"]


def test_rows_name_the_layers_that_read_them(sg3):
    consumers = sg3.latent_consumers()
    assert len(consumers) == sg3.n_latent == 16
    assert consumers[0] == ["synthesis.input"] and consumers[-1] == sg3.rgb_layers()
    assert [c[0] for c in consumers[1:-1]] == sg3.conv_layers()  # row i >= 1: layer i - 1
    assert row_modules(sg3, 15) == [] and row_modules(sg3, 15, train_to_rgb=True) == sg3.rgb_layers()


def test_a_probed_stylegan3_run_trains_only_the_chosen_rows_and_moves_towards_the_target(sg3):
    cfg, records = _run(sg3, "shape", layers_k=3, iterations=8, probe_batch=2, lr=0.02)
    last = records[-1]
    assert last.error is None and all(r.rows is not None and len(r.rows) == 3 for r in records)
    chosen = {m for i in last.rows for m in row_modules(sg3, i)}
    sd0, sd1 = sg3.state_dict(), last.generator.state_dict()
    changed = {k for k in sd0 if not torch.equal(sd0[k], sd1[k])}
    assert changed and chosen, "nothing trained"
    ever_chosen = {m for r in records for i in r.rows for m in row_modules(sg3, i)}
    assert all(any(k.startswith(m + ".") for m in ever_chosen) for k in changed)  # only rows some step chose
    assert not any(k.startswith(sg3.rgb_layers()[0] + ".") for k in changed)
    assert records[-1].losses["direction"] < records[0].losses["direction"]
    assert _red_gain(sg3, last.generator) > 0.01


def test_a_compact_style_trains_on_a_stylegan3_and_applies_only_to_it(sg3, tmp_path):
    cfg, records = _run(sg3, "compact", iterations=8)
    last = records[-1]
    assert last.error is None and cfg.lambda_indomain > 0 and cfg.mixing > 0
    sd0 = sg3.state_dict()
    assert all(torch.equal(v, sd0[k]) for k, v in last.generator.state_dict().items())  # no weight moved
    style = style_from_generators(sg3, last.generator, {"source": "tiny-sg3", "config": cfg})
    assert style.kind == "style_delta" and style.weights == {}
    coarse = set(sg3.conv_layers()[:5])  # rows 1-5; row 0 (the input) has no offsets
    assert not {k.rsplit(".", 1)[0] for k in style.tensors} & coarse
    assert records[-1].losses["direction"] < records[0].losses["direction"]
    assert _red_gain(sg3, last.generator) > 0.001  # the published compact setting moves slowly (bench/README.md)
    loaded = load_style(save_style(style, tmp_path / "red.safetensors"))
    with torch.no_grad():
        z = torch.randn(2, sg3.z_dim, generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(apply_style(sg3, loaded)(z, truncation=0.7), last.generator(z, truncation=0.7))
    other = tiny_stylegan3(seed=1)
    with pytest.raises(StyleMismatchError, match="other weights"):
        apply_style(other, loaded)
    folded = copy.deepcopy(last.generator).fold_style_offsets()  # what export writes
    with torch.no_grad():
        torch.testing.assert_close(folded(z, truncation=0.7), last.generator(z, truncation=0.7), rtol=1e-4, atol=1e-4)


def test_a_stylegan3_weights_run_with_the_paper_recipe(sg3):
    _, records = _run(sg3, "paper", iterations=3)
    last = records[-1]
    assert last.error is None and set(last.layers) == {m for i in range(15) for m in row_modules(sg3, i)}
    assert "to_rgb1" not in last.layers  # the official index quirk is StyleGAN2's only
