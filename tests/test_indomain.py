"""The in-domain angle consistency loss (HyperDomainNet's "indomain") and the "diverse" recipe.

The held-out check trains the tiny generator towards "red" on the colour stand-in (:class:`tests.helpers.ColourClip`)
with the "paper" and the "diverse" recipe, same steps and batch, and compares them on images no step trained on.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from nada.clip_loss import ClipGuide, indomain_loss
from nada.metrics import evaluate
from nada.nets.stylegan2 import Generator
from nada.train import RECIPES, AdaptConfig, adapt

from .helpers import ColourClip, adapt_args

FAST = dict(preview_every=0, preview_seeds=(0,))


def reference_indomain(train: torch.Tensor, frozen: torch.Tensor) -> float:
    """The formula written out: mean over pairs i < j of (cos(f_i, f_j) - cos(t_i, t_j))^2, in float64 loops."""
    t, f = train.double(), frozen.double()
    terms = []
    for i, j in itertools.combinations(range(t.shape[0]), 2):
        cos_t = float(t[i] @ t[j] / (t[i].norm() * t[j].norm()))
        cos_f = float(f[i] @ f[j] / (f[i].norm() * f[j].norm()))
        terms.append((cos_f - cos_t) ** 2)
    return sum(terms) / len(terms)


def test_zero_when_the_trainable_batch_equals_the_frozen_one():
    feats = F.normalize(torch.randn(5, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    assert float(indomain_loss(feats, feats.clone())) == 0.0
    # angles, not positions: rotating every feature by one orthogonal map keeps every pairwise cosine
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(1)))
    assert float(indomain_loss(feats @ q, feats)) < 1e-12


def test_matches_a_plain_double_loop_and_is_differentiable():
    gen = torch.Generator().manual_seed(2)
    frozen = torch.randn(6, 8, generator=gen)
    train = (frozen + 0.5 * torch.randn(6, 8, generator=gen)).requires_grad_(True)
    frozen.requires_grad_(True)
    loss = indomain_loss(train, frozen)
    expected = reference_indomain(train.detach(), frozen.detach())
    assert expected > 1e-3 and float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert train.grad is not None and float(train.grad.abs().sum()) > 0
    assert frozen.grad is None  # the frozen copy is the reference: nothing flows to it
    # a small step against the gradient lowers the loss
    with torch.no_grad():
        assert float(indomain_loss(train - 1e-2 * train.grad, frozen)) < float(loss)


def test_refuses_a_batch_of_one_and_mismatched_shapes():
    with pytest.raises(ValueError, match="at least 2"):
        indomain_loss(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(ValueError, match="shapes"):
        indomain_loss(torch.randn(3, 4), torch.randn(2, 4))


def test_the_guide_weights_each_model():
    m1, m2 = ColourClip(k=10.0), ColourClip(k=2.0, channels=(2, 0, 1))
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    guide = ClipGuide([(m1, 0.25), (m2, 2.0)], "photo", "red")
    train, frozen = guide.image_features(images + 0.3 * images.flip(0)), guide.image_features(images)
    expected = 0.25 * indomain_loss(train[0], frozen[0]) + 2.0 * indomain_loss(train[1], frozen[1])
    assert float(guide.indomain(train, frozen)) == pytest.approx(float(expected), rel=1e-6)


def test_a_batch_of_one_is_refused_before_training(tiny_generator):
    cfg = AdaptConfig.from_recipe("diverse", source_text="photo", target_text="red", batch_size=1, **FAST)
    with pytest.raises(ValueError, match=r"lambda_indomain.*batch of at least 2.*got 1"):
        cfg.validate()
    with pytest.raises(ValueError, match="batch of at least 2"):
        next(adapt(tiny_generator, [(ColourClip(), 1.0)], cfg))
    AdaptConfig.from_recipe("paper", batch_size=1).validate()  # without the loss a batch of one is fine
    with pytest.raises(ValueError, match=">= 0"):
        AdaptConfig(lambda_indomain=-1.0).validate()


def test_the_diverse_recipe():
    cfg = AdaptConfig.from_recipe("diverse")
    paper = AdaptConfig.from_recipe("paper")
    assert cfg.lambda_indomain > 0 and cfg.batch_size >= 2 and paper.lambda_indomain == 0
    changed = {k for k, v in cfg.to_dict().items() if v != paper.to_dict()[k]}
    # StyleDomain's td_nada_ffhq.yaml (its values are quoted in tests/test_recipes.py); otherwise the paper's settings
    assert changed == {"lambda_indomain", "batch_size", "betas", "iterations", "mixing", "probe_iters", "train_to_rgb"}
    assert "Keep variety" in RECIPES["diverse"].description
    compact = AdaptConfig.from_recipe("diverse", params="modulation")
    compact.validate()
    assert compact.params == "modulation" and compact.lambda_indomain == cfg.lambda_indomain


@pytest.mark.parametrize("params", ["weights", "modulation"])
def test_no_extra_generator_or_clip_passes(tiny_generator, monkeypatch, params):
    """The loss reuses the features the directional loss computes: per step the same synthesis and CLIP calls."""
    calls = {"synthesis": 0}
    original = Generator.synthesis

    def counted(self, *args, **kwargs):
        calls["synthesis"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Generator, "synthesis", counted)
    counts = {}
    for lam in (0.0, 3.0):
        clip = ColourClip()
        cfg = AdaptConfig(source_text="photo", target_text="red", iterations=3, batch_size=3, lambda_indomain=lam,
                          params=params, **FAST)
        it = adapt(tiny_generator, [(clip, 1.0)], cfg)
        next(it)  # setup (the preview's source row) and step 1
        calls["synthesis"], clip.calls = 0, 0
        rec = next(it)  # step 2 only
        counts[lam] = (calls["synthesis"], clip.calls)
        assert ("indomain" in rec.losses) == (lam > 0)
        list(it)
    assert counts[0.0] == counts[3.0] == (2, 2)  # frozen + trainable, once each


def test_the_term_is_reported_and_trains(tiny_generator):
    cfg = AdaptConfig(source_text="photo", target_text="red", iterations=4, batch_size=3, lambda_indomain=2.0,
                      lr=0.01, **FAST)
    records = list(adapt(tiny_generator, [(ColourClip(), 1.0)], cfg))
    last = records[-1]
    assert last.error is None and last.step == 4
    first = records[0].losses
    assert first["indomain"] == 0.0  # step 1: both copies are still equal
    assert first["total"] == pytest.approx(first["direction"] + first["indomain"])
    assert any(r.losses.get("indomain", 0.0) > 0 for r in records[1:])


def angle_drift(source: Generator, adapted: Generator, clip: ColourClip, n: int = 32) -> float:
    """The in-domain loss over ``n`` held-out images (seed 123, untruncated): how far the pairwise angles moved."""
    guide = ClipGuide([(clip, 1.0)], "photo", "red")
    z = torch.randn(n, source.style_dim, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        w = source.mapping(z)  # [n, 512]
        noise = source.make_noise(n, generator=torch.Generator().manual_seed(124))
        feats = [guide.image_features(g.synthesis(w, noise=noise))[0] for g in (source, adapted)]  # [n, D] each
    return float(indomain_loss(feats[1], feats[0]))


def paper_and_diverse(source: Generator, clip, target: str, lr: float, n: int) -> dict:
    """recipe -> (adapted generator, its figures): the paper and diverse recipes, 25 steps at batch 4 from "photo"
    to ``target``, judged by ``clip`` on ``n`` samples at truncation 1."""
    out = {}
    for recipe in ("paper", "diverse"):
        cfg = AdaptConfig.from_recipe(recipe, source_text="photo", target_text=target, iterations=25, batch_size=4,
                                      lr=lr, **FAST)
        g = list(adapt(source, [(clip, 1.0)], cfg))[-1].generator
        out[recipe] = (g, evaluate(source, g, [(clip, 1.0)], "photo", target, n=n, truncation=1.0))
    return out


def test_held_out_diverse_keeps_the_angles_and_most_of_the_gain(tiny_generator):
    """Held-out check (towards "red" on the colour stand-in, same steps and batch): the recipe's weight was measured
    on "green" and "blue". Here (k=10) the paper recipe does not collapse (its diversity rises, 0.14 -> 0.24),
    so "1.5x the paper's diversity" cannot be asked; asked instead: the pairwise angles of held-out samples move less
    (measured 0.0100 vs 0.0161) at >= half the target-score gain (measured 0.95x)."""
    clip = ColourClip()
    runs = {}
    for recipe, (g, r) in paper_and_diverse(tiny_generator, clip, "red", lr=0.01, n=32).items():
        runs[recipe] = (r["clip_target_adapted"] - r["clip_target_source"], angle_drift(tiny_generator, g, clip))
    (gain_p, drift_p), (gain_d, drift_d) = runs["paper"], runs["diverse"]
    assert gain_p > 0.2 and gain_d >= 0.5 * gain_p  # at least half the paper recipe's target-score gain
    assert drift_d * 1.25 <= drift_p  # the pairwise angles of held-out samples move less


def test_where_the_paper_recipe_collapses_diverse_keeps_the_variety(tiny_generator):
    """The recipe's aim where its premise holds: with colours weighing more (k=1) the paper recipe collapses
    (diversity 0.80 -> 0.32 towards "blue"); "diverse" keeps >= 1.5x that (measured 1.82x) at >= half the target-score
    gain (0.75x). Not held out: "blue" is one of the targets the weight was measured on (a regression check)."""
    runs = {recipe: (r["clip_target_adapted"] - r["clip_target_source"], r["diversity_adapted"])
            for recipe, (_, r) in paper_and_diverse(tiny_generator, ColourClip(k=1.0), "blue", lr=0.05, n=64).items()}
    (gain_p, div_p), (gain_d, div_d) = runs["paper"], runs["diverse"]
    assert gain_p > 0.5 and div_p < 0.5  # the paper recipe reaches blue and collapses
    assert div_d >= 1.5 * div_p and gain_d >= 0.5 * gain_p


# ------------------------------------------------------------------------------------------------------- the app
def test_the_app_offers_keep_variety(store):
    from nada.app import adapt_tab
    from nada.app.errors import InputError

    settings = adapt_tab.recipe_settings("diverse")  # picking the recipe sets its weight and its batch
    diverse = AdaptConfig.from_recipe("diverse")
    assert (settings.lambda_indomain, settings.batch_size) == (diverse.lambda_indomain, diverse.batch_size)
    assert adapt_tab.recipe_settings("paper").lambda_indomain == 0.0
    config = adapt_tab.check_adapt(store, None, **adapt_args(iterations=3, recipe="diverse", batch_size=4))
    assert config.lambda_indomain == diverse.lambda_indomain  # the slider untouched (None): the recipe's weight
    assert adapt_tab.check_adapt(store, None, **adapt_args(iterations=3, lambda_indomain=1.5)).lambda_indomain == 1.5
    with pytest.raises(InputError, match="pairs of samples") as err:
        adapt_tab.check_adapt(store, None, **adapt_args(iterations=3, recipe="diverse", batch_size=1))
    assert err.value.field == "batch_size"
    with pytest.raises(InputError, match="from 0 to 10") as err:
        adapt_tab.check_adapt(store, None, **adapt_args(iterations=3, lambda_indomain=-1))
    assert err.value.field == "lambda_indomain"
    rows = adapt_tab.loss_rows(2, {"direction": 0.5, "indomain": 0.01, "total": 0.51})
    assert {r["term"] for r in rows} == {"directional CLIP", "keep variety (in-domain)", "total"}


def test_the_app_streams_the_term_as_its_own_line(store, session):
    from nada.app import adapt_tab
    from nada.app.training_queue import TrainingRuns
    from nada.app.wiring import KEEP

    args = adapt_args(iterations=3, recipe="diverse", batch_size=3)
    outs = list(adapt_tab.adapt_stream(store, TrainingRuns(), session, **args, min_interval_s=0.0))
    losses = [o.losses for o in outs if o.losses is not KEEP][-1]
    lines = set(losses["term"])
    assert lines == {"directional CLIP", "keep variety (in-domain)", "total"}
    assert losses[losses["term"] == "keep variety (in-domain)"]["step"].max() == 3


# ------------------------------------------------------------------------------------------------ the command line
def test_the_command_line_takes_the_recipe_and_the_flag(tmp_path, capsys):
    from nada.cli import main
    from nada.styles import load_style

    style = tmp_path / "varied.safetensors"
    assert main(["adapt", "--tiny", "--from", "photo", "--to", "sketch", "--recipe", "diverse", "--iterations", "2",
                 "--lambda-indomain", "1.5", "-o", str(style), "--device", "cpu"]) == 0
    config = load_style(style).meta["config"]
    assert config["lambda_indomain"] == 1.5 and config["batch_size"] == AdaptConfig.from_recipe("diverse").batch_size
    capsys.readouterr()
    assert main(["adapt", "--tiny", "--from", "photo", "--to", "sketch", "--recipe", "diverse", "--batch-size", "1",
                 "--iterations", "2", "-o", str(tmp_path / "no.safetensors"), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "batch of at least 2" in err and "Traceback" not in err
    assert not (tmp_path / "no.safetensors").exists()
