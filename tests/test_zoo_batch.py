"""Several compact styles in one batch: per-sample style offsets ([K, in] and an index per sample) on both generators,
and :func:`nada.zoo.adapt_many`, whose every style ends where training it alone ends."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import torch

from nada.render import seed_latents
from nada.tiny import tiny_stylegan3
from nada.train import AdaptConfig, adapt, step_losses
from nada.zoo import adapt_many, batch

from .helpers import ColourClip, make_tiny_generator

SEEDS = [0, 1, 2, 3]


@pytest.fixture(scope="module")
def sg2():
    return make_tiny_generator(size=64)  # 10 W+ rows


def _random_offsets(g, k: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Offsets of both forms on every modulated layer, [k, in] each."""
    gen = torch.Generator().manual_seed(seed)
    return {f"{name}.{form}": 0.3 * torch.randn(k, m.in_ch, generator=gen)
            for name, m in g.modulated_convs().items() for form in ("style_offset", "style_delta")}


@pytest.mark.parametrize("make", [lambda: make_tiny_generator(size=64), tiny_stylegan3], ids=["stylegan2", "stylegan3"])
def test_each_sample_renders_with_its_own_style(make):
    g = make()
    offsets = _random_offsets(g, 3)  # [3, in] per layer
    index = torch.tensor([2, 0, 1, 1, 0])
    with torch.no_grad():
        w = seed_latents(g, [0, 1, 2, 3, 4], 0.7)  # [5, 512]
        together = g.shared_copy().set_style_offsets(offsets, index).synthesis(w, noise_mode="const")
        for i, k in enumerate(index.tolist()):
            alone = g.shared_copy().set_style_offsets({n: v[k] for n, v in offsets.items()})
            torch.testing.assert_close(together[i], alone.synthesis(w[i:i + 1], noise_mode="const")[0],
                                       rtol=1e-5, atol=1e-5)
        assert not torch.allclose(together[1], together[2], atol=1e-3)  # the styles differ


def test_a_style_row_gets_gradient_only_from_its_own_samples(sg2):
    offsets = {k: v.requires_grad_(True) for k, v in _random_offsets(sg2, 3).items()}
    g = sg2.shared_copy().set_style_offsets(offsets, torch.tensor([0, 0, 2, 2]))  # style 1 has no sample
    w = seed_latents(g, SEEDS, 0.7)
    g.synthesis(w, noise_mode="const").square().mean().backward()
    grads = [v.grad for v in offsets.values()]
    assert all(gr[1].abs().max() == 0 for gr in grads)
    assert all(gr[0].abs().max() > 0 and gr[2].abs().max() > 0 for gr in grads)


def test_offsets_for_several_styles_are_checked_before_anything_changes(sg2):
    g = sg2.shared_copy()
    one = {k: v[0] for k, v in _random_offsets(g, 1).items()}
    g.set_style_offsets(one)
    three = _random_offsets(g, 3)
    for bad_index, words in [(None, "need an index"), (torch.tensor([0, 3]), r"in \[0, 3\)"),
                             (torch.tensor([0.0, 1.0]), "need an index")]:
        with pytest.raises(ValueError, match=words):
            g.set_style_offsets(three, bad_index)
        assert all(torch.equal(g.style_offsets()[k], one[k]) for k in one)  # unchanged
    with pytest.raises(ValueError, match="same number of rows"):
        g.set_style_offsets({**three, next(iter(three)): torch.zeros(2, 16)}, torch.tensor([0]))
    with pytest.raises(ValueError, match="one row per style"):
        g.set_style_offsets(one, torch.tensor([0]))
    g.set_style_offsets(three, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="style index of 4 entries"):
        g.synthesis(seed_latents(g, SEEDS, 0.7), noise_mode="const")
    with pytest.raises(ValueError, match="cannot be folded"):
        g.fold_style_offsets()


# --------------------------------------------------------------------------------------------------- adapt_many


def _configs(**shared) -> list[AdaptConfig]:
    """Three compact styles that differ in prompts, seeds, loss weights, mixing and probing."""
    base = AdaptConfig.from_recipe("compact", source_text="photo", target_text="red", iterations=5, batch_size=2,
                                   preview_every=2, preview_seeds=(0, 1), clip_models=("colour",), lr=0.05, **shared)
    return [base,
            dataclasses.replace(base, target_text="green", seed=3, lambda_global=0.5, mixing=0.9),
            dataclasses.replace(base, target_text="blue", seed=7, lambda_l2=2.0, layers_k=3, probe_iters=1,
                                probe_batch=2, frozen_rows=())]


def _final_offsets(record) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in record.generator.style_offsets().items()}


def _images(record) -> torch.Tensor:
    g = record.generator
    with torch.no_grad():
        return g.synthesis(seed_latents(g, SEEDS, 0.7), noise_mode="const")


def _run_many(g, clip, configs, **kw) -> list[list]:
    return list(adapt_many(g, [(clip, 1.0)], configs, **kw))


def test_three_styles_trained_together_end_where_each_ends_alone_with_sgd(sg2, monkeypatch):
    # Plain SGD: an update is proportional to its gradient, so the batch's rounding cannot flip a step (Adam's first
    # steps move every offset by about the learning rate, whatever the size of its gradient).
    monkeypatch.setattr(AdaptConfig, "adam", lambda self, params: torch.optim.SGD(params, lr=self.lr * 50))
    clip, configs = ColourClip(k=1.0), _configs()
    steps = _run_many(sg2, clip, configs)
    assert len(steps) == 5 and all(len(s) == 3 and all(r is not None for r in s) for s in steps)
    assert [r.step for r in steps[-1]] == [5, 5, 5] and all(r.done and r.error is None for r in steps[-1])
    for k, config in enumerate(configs):
        alone = list(adapt(sg2, [(clip, 1.0)], config))
        assert [r.step for r in alone] == [s[k].step for s in steps]
        for a, b in zip(alone, (s[k] for s in steps)):  # the same losses, layers and probe choices at every step
            assert a.losses.keys() == b.losses.keys() and a.layers == b.layers and a.rows == b.rows
            assert all(abs(a.losses[t] - b.losses[t]) <= 1e-4 * (1 + abs(a.losses[t])) for t in a.losses)
            assert (a.preview is None) == (b.preview is None)
        mine, theirs = _final_offsets(alone[-1]), _final_offsets(steps[-1][k])
        assert mine.keys() == theirs.keys()
        moved = max(v.abs().max().item() for v in mine.values())
        assert moved > 1e-3, "nothing trained"
        for n in mine:
            torch.testing.assert_close(theirs[n], mine[n], rtol=1e-4, atol=1e-5 * (1 + moved))
    assert steps[0][2].rows is not None and steps[0][0].rows is None  # only the third style probes
    assert not torch.allclose(_images(steps[-1][0]), _images(steps[-1][1]), atol=1e-3)  # three different styles


def test_three_styles_trained_together_render_as_each_alone_with_adam(sg2):
    clip, configs = ColourClip(k=1.0), _configs()
    last = _run_many(sg2, clip, configs)[-1]
    for k, config in enumerate(configs):
        alone = list(adapt(sg2, [(clip, 1.0)], config))[-1]
        torch.testing.assert_close(_images(last[k]), _images(alone), rtol=0, atol=2e-3)
        with torch.no_grad():
            source = sg2.synthesis(seed_latents(sg2, SEEDS, 0.7), noise_mode="const")
        assert (_images(alone) - source).abs().max() > 0.02  # it did train


def test_a_style_whose_loss_blows_up_stops_alone_and_the_others_go_on(sg2, monkeypatch):
    calls = []

    def blows_up_at_step_3(guide, config, *args):
        """The losses, with the "green" style's total NaN from its third step on."""
        terms = step_losses(guide, config, *args)
        calls.append(config.target_text)
        if config.target_text == "green" and calls.count("green") >= 3:
            terms["total"] = terms["total"] * float("nan")
        return terms

    monkeypatch.setattr(batch, "step_losses", blows_up_at_step_3)
    clip, configs = ColourClip(k=1.0), _configs()
    steps = _run_many(sg2, clip, configs)
    finals = {k: next(s[k] for s in steps if s[k] is not None and s[k].done) for k in range(3)}
    assert finals[1].error and "became nan at step 3" in finals[1].error and finals[1].step == 2
    assert steps[2][1] is finals[1]  # reported with step 3's records
    assert all(s[1] is None for s in steps[finals[1].step + 1:])  # nothing more from it once it ended
    assert torch.isfinite(torch.cat([v.flatten() for v in _final_offsets(finals[1]).values()])).all()
    for k in (0, 2):
        assert finals[k].error is None and finals[k].step == 5
        alone = list(adapt(sg2, [(clip, 1.0)], configs[k]))[-1]
        torch.testing.assert_close(_images(finals[k]), _images(alone), rtol=0, atol=2e-3)


def test_a_stop_ends_every_style_after_the_current_step_with_its_weights(sg2):
    clip, configs, stop = ColourClip(k=1.0), _configs(), threading.Event()
    records = []
    for step in adapt_many(sg2, [(clip, 1.0)], configs, stop=stop):
        records.append(step)
        if step[0].step == 2:
            stop.set()
    assert [r.step for r in records[-1]] == [2, 2, 2] and all(r.done and r.generator is not None for r in records[-1])


def test_weight_styles_train_one_after_another_through_the_same_interface(sg2):
    clip = ColourClip(k=1.0)
    compact = _configs()[0]
    weights = AdaptConfig.from_recipe("paper", source_text="photo", target_text="blue", iterations=3, batch_size=2,
                                      preview_every=0, clip_models=("colour",), seed=2)
    compact3 = dataclasses.replace(compact, iterations=3)
    steps = _run_many(sg2, clip, [weights, compact3])
    assert [[r is not None for r in s] for s in steps] == [[False, True]] * 3 + [[True, False]] * 3
    alone = list(adapt(sg2, [(clip, 1.0)], weights))[-1]
    mine = steps[-1][0].generator.state_dict()
    assert all(torch.equal(v, mine[k]) for k, v in alone.generator.state_dict().items())


def test_settings_that_cannot_share_a_batch_are_refused_before_anything_trains(sg2):
    a, b = _configs()[:2]
    with pytest.raises(ValueError, match="must share iterations"):
        next(adapt_many(sg2, [(ColourClip(), 1.0)], [a, dataclasses.replace(b, iterations=9)]))
    with pytest.raises(ValueError, match="Style 2: Lr must be"):
        next(adapt_many(sg2, [(ColourClip(), 1.0)], [a, dataclasses.replace(b, lr=-1.0)]))
    with pytest.raises(ValueError, match="at least one style"):
        next(adapt_many(sg2, [(ColourClip(), 1.0)], []))


def test_recomputing_activations_in_backward_trains_the_same_styles(sg2):
    clip, configs = ColourClip(k=1.0), _configs()[:2]
    plain = _run_many(sg2, clip, configs)[-1]
    ckpt = _run_many(sg2, clip, [dataclasses.replace(c, grad_checkpointing=True) for c in configs])[-1]
    for a, b in zip(plain, ckpt):
        torch.testing.assert_close(_images(b), _images(a), rtol=0, atol=1e-4)


def test_stylegan3_styles_train_together_as_each_alone():
    g = tiny_stylegan3()
    clip = ColourClip(k=1.0)
    configs = [dataclasses.replace(c, iterations=3) for c in _configs()[:2]]
    last = _run_many(g, clip, configs)[-1]
    for k, config in enumerate(configs):
        alone = list(adapt(g, [(clip, 1.0)], config))[-1]
        torch.testing.assert_close(_images(last[k]), _images(alone), rtol=0, atol=2e-3)
    assert (_images(last[0]) - _images(last[1])).abs().max() > 1e-3
