"""The adaptation loop with tiny generators and tiny CLIPs: what trains, what stays, stopping, losses."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import threading
import types
import weakref

import pytest
import torch

from nada import train
from nada.clip_loss import ClipGuide
from nada.probe import conv_modules, probe_layers
from nada.train import AdaptConfig, adapt

from .helpers import make_tiny_clip


def _config(**kw) -> AdaptConfig:
    base = dict(source_text="photo", target_text="sketch", iterations=3, batch_size=2, probe_batch=2,
                preview_every=2, preview_seeds=(0, 1), seed=0)
    return AdaptConfig(**{**base, **kw})


def _snapshot(g: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in g.state_dict().items()}


def test_only_probed_layers_change_and_inputs_stay_identical(tiny_generator, tiny_clip):
    before = _snapshot(tiny_generator)
    records = list(adapt(tiny_generator, [(tiny_clip, 1.0)], _config(iterations=1, layers_k=2)))
    assert len(records) == 1 and records[-1].done
    rec = records[-1]
    assert len(rec.layers) == 2 and all(name.startswith(("conv1", "convs.")) for name in rec.layers)
    assert rec.scores is not None and len(rec.scores) == tiny_generator.n_latent
    trained = rec.generator.state_dict()
    changed = {k for k, v in trained.items() if not torch.equal(v, before[k])}
    assert changed, "nothing trained"
    assert all(any(k.startswith(layer + ".") for layer in rec.layers) for k in changed), changed
    for k, v in tiny_generator.state_dict().items():  # the caller's generator is bit-identical
        assert torch.equal(v, before[k]), k
    assert not any(p.requires_grad for p in rec.generator.parameters())  # handed back frozen, in eval mode
    assert not rec.generator.training


def test_without_probing_every_conv_trains_but_mapping_and_torgb_do_not(tiny_generator, tiny_clip):
    rec = list(adapt(tiny_generator, [(tiny_clip, 1.0)], _config(iterations=2, layers_k=0)))[-1]
    assert rec.layers == ["input"] + conv_modules(tiny_generator)
    before = tiny_generator.state_dict()
    after = rec.generator.state_dict()
    for k in before:
        same = torch.equal(before[k], after[k])
        if k.startswith(("style.", "to_rgb", "noises.")) or k.endswith("kernel"):
            assert same, k
    assert not torch.equal(before["convs.0.conv.weight"], after["convs.0.conv.weight"])


def test_directional_loss_falls(tiny_generator, tiny_clip):
    cfg = _config(iterations=12, layers_k=0, batch_size=2, lr=0.01, preview_every=0)
    losses = [r.losses["direction"] for r in adapt(tiny_generator, [(tiny_clip, 1.0)], cfg)]
    assert len(losses) == 12
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 0.05, (first, last)


def test_reproducible_for_a_seed(tiny_generator, tiny_clip):
    a = list(adapt(tiny_generator, [(tiny_clip, 1.0)], _config(iterations=2)))[-1]
    b = list(adapt(tiny_generator, [(tiny_clip, 1.0)], _config(iterations=2)))[-1]
    assert a.losses == b.losses and a.layers == b.layers
    for k, v in a.generator.state_dict().items():
        assert torch.equal(v, b.generator.state_dict()[k]), k


def test_previews_and_records(tiny_generator, tiny_clip):
    records = list(adapt(tiny_generator, [(tiny_clip, 1.0)], _config(iterations=3, preview_every=2, lambda_l2=1.0,
                                                                   lambda_global=0.5)))
    assert [r.step for r in records] == [1, 2, 3] and all(r.total == 3 for r in records)
    assert [r.preview is not None for r in records] == [False, True, True]  # every 2 steps, and the last
    grid = records[1].preview
    assert grid.size == (2 * 32, 2 * 32)  # two seeds; source row over adapted row
    assert set(records[0].losses) == {"direction", "global", "l2", "total"}
    r = records[0].losses
    assert r["total"] == pytest.approx(r["direction"] + r["global"] + r["l2"], rel=1e-5)


def test_closing_the_iterator_keeps_the_work(tiny_generator, tiny_clip):
    it = adapt(tiny_generator, [(tiny_clip, 1.0)], _config(iterations=50, layers_k=0, lr=0.01))
    last = None
    for rec in it:
        last = rec
        if rec.step == 2:
            break
    it.close()
    assert last.step == 2
    g = last.generator
    assert not torch.equal(g.state_dict()["convs.0.conv.weight"], tiny_generator.state_dict()["convs.0.conv.weight"])
    assert not g.training and not any(p.requires_grad for p in g.parameters())


def test_stop_event_ends_after_the_current_step(tiny_generator, tiny_clip):
    stop = threading.Event()
    cfg = _config(iterations=50, preview_every=0)
    records = []
    for rec in adapt(tiny_generator, [(tiny_clip, 1.0)], cfg, stop=stop):
        records.append(rec)
        if rec.step == 3:
            stop.set()
    assert records[-1].step == 3 and records[-1].done and records[-1].preview is not None


def test_non_finite_loss_stops_with_last_good_weights(tiny_generator, tiny_clip):
    cfg = _config(iterations=5, layers_k=0, lr=1e30, preview_every=0)
    records = list(adapt(tiny_generator, [(tiny_clip, 1.0)], cfg))
    last = records[-1]
    assert last.done and last.error and "learning rate" in last.error
    assert all(torch.isfinite(v).all() for v in last.generator.state_dict().values() if v.is_floating_point())


@pytest.mark.parametrize("kw, msg", [
    (dict(source_text=" "), "empty"),
    (dict(target_text="photo"), "same"),
    (dict(target_text="word " * 80), "too long"),
    (dict(iterations=0), "Iterations"),
    (dict(layers_k=99), "at most"),
    (dict(lambda_direction=0.0, lambda_global=0.0), "CLIP loss"),
    (dict(truncation=1.5), "Truncation"),
])
def test_bad_settings_raise_clear_errors(tiny_generator, tiny_clip, kw, msg):
    with pytest.raises(ValueError, match=msg):
        next(adapt(tiny_generator, [(tiny_clip, 1.0)], _config(**kw)))


def test_identity_loss_needs_weights(tiny_generator, tiny_clip):
    with pytest.raises(ValueError, match="ArcFace"):
        next(adapt(tiny_generator, [(tiny_clip, 1.0)], _config(lambda_id=0.1)))


def test_probe_picks_the_rows_that_move_most(tiny_generator, tiny_clip):
    guide = ClipGuide([(tiny_clip, 1.0)], "photo", "sketch")
    w = tiny_generator.mapping(torch.randn(4, tiny_generator.style_dim))
    before = _snapshot(tiny_generator)
    res = probe_layers(tiny_generator, w, guide, k=3, iters=2)
    scores = torch.tensor(res.scores)
    candidates = list(range(tiny_generator.n_latent - 1))  # the last row only feeds a ToRGB
    expected = sorted(candidates, key=lambda i: -scores[i].item())[:3]
    assert res.rows == expected and scores.max() > 0
    assert res.layers == [tiny_generator.latent_consumers()[i][0] for i in expected]
    assert all(torch.equal(v, before[k]) for k, v in tiny_generator.state_dict().items())
    assert not any(p.grad is not None for p in tiny_generator.parameters())
    # micro-batching computes the same thing (gradients accumulate over chunks)
    noise = tiny_generator.make_noise(4, torch.Generator().manual_seed(1))
    full = probe_layers(tiny_generator, w, guide, k=3, iters=2, noise=noise)
    micro = probe_layers(tiny_generator, w, guide, k=3, iters=2, micro_batch=1, noise=noise)
    assert micro.rows == full.rows
    assert torch.allclose(torch.tensor(micro.scores), torch.tensor(full.scores), rtol=1e-4, atol=1e-9)


def test_two_clip_models_with_weights(tiny_generator):
    a, b = make_tiny_clip(1), make_tiny_clip(2, image_resolution=16)
    rec = list(adapt(tiny_generator, [(a, 1.0), (b, 0.5)], _config(iterations=1)))[-1]
    assert rec.losses["direction"] > 0


def test_gradient_checkpointing_gives_the_same_training(tiny_generator, tiny_clip):
    a = list(adapt(tiny_generator, [(tiny_clip, 1.0)], _config(iterations=2, layers_k=0)))[-1]
    b = list(adapt(tiny_generator, [(tiny_clip, 1.0)], _config(iterations=2, layers_k=0, grad_checkpointing=True)))[-1]
    assert a.losses == pytest.approx(b.losses, rel=1e-5)
    for k, v in a.generator.state_dict().items():
        assert torch.allclose(v, b.generator.state_dict()[k], atol=1e-6), k


def test_probe_every_k_steps_keeps_layers_in_between(tiny_generator, tiny_clip):
    records = list(adapt(tiny_generator, [(tiny_clip, 1.0)], _config(iterations=4, probe_every=2, layers_k=2)))
    assert [r.scores is not None for r in records] == [True, False, True, False]
    assert records[1].layers == records[0].layers and records[3].layers == records[2].layers


def test_profile_reports_phase_timings(tiny_generator, tiny_clip):
    rec = list(adapt(tiny_generator, [(tiny_clip, 1.0)], _config(iterations=1, layers_k=2, profile=True)))[-1]
    assert set(rec.timings) == {"probe", "frozen", "forward", "clip", "backward", "optimizer"}
    assert all(v >= 0 for v in rec.timings.values())


def test_config_is_plain_data():
    cfg = _config()
    d = cfg.to_dict()
    assert d == {**dataclasses.asdict(cfg), "target_images": []}  # pictures would be recorded by their hashes
    assert d["target_text"] == "sketch" and list(d["preview_seeds"]) == [0, 1]
    assert json.loads(json.dumps(d))["preview_seeds"] == [0, 1]  # style metadata is JSON
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lambda_id = 1.0  # derive changed configs with dataclasses.replace
    assert dataclasses.replace(cfg, lambda_id=1.0).lambda_id == 1.0 and cfg.lambda_id == 0.0


def test_bf16_autocast_keeps_float32_weights_and_losses(tiny_generator, tiny_clip):
    records = list(adapt(tiny_generator, [(tiny_clip, 1.0)], _config(iterations=2, layers_k=0, bf16=True)))
    assert records[0].losses["direction"] == pytest.approx(1.0)  # step 1: both copies identical, as in float32
    assert all(math.isfinite(v) for r in records for v in r.losses.values())
    g = records[-1].generator
    assert all(v.dtype == torch.float32 for v in g.state_dict().values() if v.is_floating_point())
    assert not torch.equal(g.state_dict()["convs.0.conv.weight"], tiny_generator.state_dict()["convs.0.conv.weight"])


def test_bf16_probe_runs(tiny_generator, tiny_clip):
    rec = list(adapt(tiny_generator, [(tiny_clip, 1.0)], _config(iterations=1, layers_k=2, bf16=True)))[-1]
    assert len(rec.layers) == 2 and all(math.isfinite(s) for s in rec.scores)


class _OutOfMemoryOnCall(torch.nn.Module):
    """An identity loss that runs out of memory on its n-th call (as a GPU would)."""

    def __init__(self, n: int):
        super().__init__()
        self.calls, self.n = 0, n

    def forward(self, x, y):
        self.calls += 1
        if self.calls >= self.n:
            self.failed_input = weakref.ref(x)  # the failing step's image, with its autograd graph
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return (x - y).abs().mean() * 0


def test_out_of_memory_keeps_the_steps_trained_so_far(tiny_generator, tiny_clip):
    records = list(adapt(tiny_generator, [(tiny_clip, 1.0)], _config(iterations=10, layers_k=0, lambda_id=0.1),
                         id_loss=_OutOfMemoryOnCall(3)))
    last = records[-1]
    assert [r.step for r in records] == [1, 2, 2] and last.done
    assert "Out of memory at step 3" in last.error and "smaller batch" in last.error
    assert last.preview is not None
    assert not torch.equal(last.generator.state_dict()["convs.0.conv.weight"],
                           tiny_generator.state_dict()["convs.0.conv.weight"])


def test_out_of_memory_frees_the_failed_step_before_the_last_preview(tiny_generator, tiny_clip):
    oom = _OutOfMemoryOnCall(2)
    it = adapt(tiny_generator, [(tiny_clip, 1.0)], _config(iterations=10, layers_k=0, lambda_id=0.1), id_loss=oom)
    records = list(it)
    assert records[-1].error and oom.failed_input() is None  # nothing holds the failed step's tensors any more
    assert all(p.grad is None for p in records[-1].generator.parameters())


def test_time_limit_stops_cleanly_and_keeps_the_work(tiny_generator, tiny_clip, monkeypatch):
    clock = [0.0]  # a fake clock: setup takes no time, each step exactly one second
    losses = train.step_losses

    def one_second_step(*args, **kwargs):
        clock[0] += 1.0
        return losses(*args, **kwargs)

    monkeypatch.setattr(train, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    monkeypatch.setattr(train, "step_losses", one_second_step)
    cfg = _config(iterations=1000, layers_k=0, preview_every=0, time_limit_s=5.5)
    last = list(adapt(tiny_generator, [(tiny_clip, 1.0)], cfg))[-1]
    assert last.step == 5 and last.elapsed_s == 5.0  # a 6th step would have ended at 6 s, past the 5.5 s budget
    assert last.done and last.error is None and last.preview is not None
    assert not torch.equal(last.generator.state_dict()["convs.0.conv.weight"],
                           tiny_generator.state_dict()["convs.0.conv.weight"])
    with pytest.raises(ValueError, match="time limit .* must be a positive"):
        list(adapt(tiny_generator, [(tiny_clip, 1.0)], _config(time_limit_s=0)))


def test_adaptation_runs_wide_convs_by_winograd_with_the_same_result(tiny_clip, monkeypatch):
    """With the tuner's fixed choices (NADA_AUTOTUNE=0), both copies use Winograd on the CPU for wide layers;
    training matches the reference formulation, and the caller's generator and the returned one compute with the
    default convolutions afterwards."""
    import nada.nets.ops as ops
    from nada.tiny import tiny_generator

    monkeypatch.setenv("NADA_AUTOTUNE", "0")
    calls = []
    real = ops.winograd_conv3x3
    monkeypatch.setattr(ops, "winograd_conv3x3", lambda x, w: calls.append(x.shape) or real(x, w))
    wide = tiny_generator(0, size=32, channel_max=256)
    cfg = _config(iterations=2, layers_k=0, preview_every=0)
    fast = list(adapt(wide, [(tiny_clip, 1.0)], cfg))[-1]
    assert calls and wide.conv_impl == "batched" and fast.generator.conv_impl == "batched"
    n_calls = len(calls)
    ref = list(adapt(copy.deepcopy(wide).set_conv_impl("grouped"), [(tiny_clip, 1.0)], cfg))[-1]
    assert len(calls) == n_calls  # the reference formulation never takes the fast path
    assert fast.losses["direction"] == pytest.approx(ref.losses["direction"], abs=1e-4)
    a, b, w0 = fast.generator.state_dict(), ref.generator.state_dict(), wide.state_dict()
    for k in ("conv1.conv.weight", "convs.0.conv.weight", "convs.5.conv.weight", "convs.5.activate.bias"):
        moved = (a[k] - w0[k]).abs().mean()
        assert moved > 1e-4 and (a[k] - b[k]).abs().mean() < 1e-3 * moved  # it trained, and the same way


def test_closing_the_iterator_hands_the_trained_copy_back_frozen(tiny_generator, tiny_clip):
    it = adapt(tiny_generator, [(tiny_clip, 1.0)], _config(iterations=10, layers_k=0, preview_every=0))
    rec = next(it)
    assert rec.step == 1 and rec.generator.training  # mid-run: the copy trains
    it.close()  # the caller walks away (a closed page, Ctrl-C)
    g = rec.generator
    assert not g.training and not any(p.requires_grad for p in g.parameters())
    assert g.conv_impl == tiny_generator.conv_impl


def test_the_default_is_the_papers_command_and_costs_no_probe(tiny_generator, tiny_clip, monkeypatch):
    """AdaptConfig() is the official README command: every row trains, so the probe (which could only choose all
    of them) is skipped, with the same layers it would choose."""
    assert AdaptConfig() == AdaptConfig.from_recipe("paper") and AdaptConfig().clip_models == (
        "clip-vit-b32", "clip-vit-b16")
    calls = []
    monkeypatch.setattr(train, "probe_layers", lambda *a, **k: calls.append(1))
    rec = list(adapt(tiny_generator, [(tiny_clip, 1.0)], _config(iterations=2)))[-1]
    assert calls == [] and rec.scores is None and rec.rows is None
    # every convolution and to_rgb1, as the official code's index-to-layer list trains with every row chosen
    expected = conv_modules(tiny_generator)
    assert rec.layers == expected[:2] + ["to_rgb1"] + expected[2:]


def test_the_shape_recipe_probes_two_thirds_of_the_rows_and_mixes(tiny_generator, tiny_clip):
    cfg = AdaptConfig.from_recipe("shape", source_text="photo", target_text="sketch", iterations=1, probe_batch=2,
                                  preview_seeds=(0,))
    assert cfg.mixing == 0.9 and cfg.resolved_layers_k(18) == 12 and cfg.clip_models == ("clip-vit-b32", "clip-vit-b16")
    rec = list(adapt(tiny_generator, [(tiny_clip, 1.0)], cfg))[-1]
    k = cfg.resolved_layers_k(tiny_generator.n_latent)
    assert len(rec.rows) == k == 5 and len(rec.layers) == k  # 2/3 of the tiny generator's 8 rows
    assert rec.scores is not None and set(rec.rows) <= set(range(tiny_generator.n_latent - 1))  # last row: ToRGB only
    with pytest.raises(ValueError, match="Unknown recipe"):
        AdaptConfig.from_recipe("fast")


def test_style_mixing_feeds_both_copies_the_same_mixed_latents(tiny_generator, tiny_clip, monkeypatch):
    from nada.nets.stylegan2 import Generator

    seen = []
    synthesis = Generator.synthesis

    def recording(self, w, *args, **kwargs):
        seen.append((self.training, w.detach().clone()))
        return synthesis(self, w, *args, **kwargs)

    monkeypatch.setattr(Generator, "synthesis", recording)
    list(adapt(tiny_generator, [(tiny_clip, 1.0)], _config(iterations=1, layers_k=0, mixing=1.0, preview_every=0)))
    frozen = [w for training, w in seen if not training and w.ndim == 3]
    trained = [w for training, w in seen if training]
    assert len(trained) == 1 and trained[0].shape == (2, tiny_generator.n_latent, tiny_generator.style_dim)
    assert any(torch.equal(trained[0], w) for w in frozen)  # the frozen copy saw exactly the same mixed W+
    w = trained[0]
    assert not torch.equal(w[:, 0], w[:, -1])  # two latents, crossed


def test_mixing_off_leaves_runs_unchanged(tiny_generator, tiny_clip, monkeypatch):
    """mixing=0 draws nothing extra from the run's random stream: results equal those of a run that cannot mix."""
    plain = list(adapt(tiny_generator, [(tiny_clip, 1.0)], _config(iterations=2, layers_k=0, preview_every=0)))[-1]
    monkeypatch.setattr(train.AdaptRun, "mix", lambda self, w: pytest.fail("mixing ran with mixing=0"))
    again = list(adapt(tiny_generator, [(tiny_clip, 1.0)], _config(iterations=2, layers_k=0, preview_every=0)))[-1]
    assert plain.losses == again.losses
    a, b = plain.generator.state_dict(), again.generator.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="Mixing must be a probability"):
        list(adapt(tiny_generator, [(tiny_clip, 1.0)], _config(mixing=1.5)))
